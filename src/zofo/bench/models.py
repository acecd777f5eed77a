"""The models the bench times, their batches and losses.

Loss: for causal LMs the model's own next-token cross-entropy with ``labels = input_ids``; for encoders
the mean of the last hidden state (they have no LM head). Batches are random token ids with full
attention masks. Models with random weights (``tiny-llama``, ``rand-llama-h*``, ``opt-*``) are used for
timing and memory only: their losses mean nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from zofo.bench.options import OPT_SIZES, RAND_LLAMA, RAND_LLAMA_HEAD_DIM, format_shape
from zofo.core.errors import ConfigError
from zofo.core.seeds import derive, torch_rng
from zofo.core.zo import trainable_parameters

# rand-llama-h<hidden> (zofo.bench.options): a Llama built here with random weights. 4 layers, MLP
# 8/3 x hidden as Llama's, tied embeddings, a vocabulary of 8192 so the embedding does not swamp the
# small widths.
RAND_LLAMA_LAYERS = 4
RAND_LLAMA_VOCAB = 8192
RAND_LLAMA_MAX_TOKENS = 2048
OPT_VOCAB = 50272  # OPT's GPT-2 vocabulary, padded to a multiple of 8
OPT_MAX_TOKENS = 2048
LOSS_TEXT = (
    "causal LMs: the model's next-token cross-entropy with labels = input_ids; "
    "encoders: mean of the last hidden state (no LM head)"
)


@dataclass
class BenchModel:
    name: str
    model: torch.nn.Module
    kind: str  # "causal-lm" or "encoder"
    random_init: bool
    params: list[torch.nn.Parameter] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.params = trainable_parameters(self.model)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.params)

    @property
    def vocab(self) -> int:
        return int(self.model.config.vocab_size)

    @property
    def max_tokens(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", RAND_LLAMA_MAX_TOKENS))

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.params[0].dtype


def _fork_devices(device: torch.device) -> list[int]:
    # fork_rng saves and restores the CPU generator and the CUDA generators listed here.
    return [device.index or 0] if device.type == "cuda" else []


def rand_llama(hidden: int, seed: int) -> torch.nn.Module:
    """A random-init Llama of width ``hidden`` (timing only)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    heads = hidden // RAND_LLAMA_HEAD_DIM
    cfg = LlamaConfig(
        vocab_size=RAND_LLAMA_VOCAB,
        hidden_size=hidden,
        intermediate_size=RAND_LLAMA_HEAD_DIM * math.ceil(8 * hidden / 3 / RAND_LLAMA_HEAD_DIM),
        num_hidden_layers=RAND_LLAMA_LAYERS,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=RAND_LLAMA_MAX_TOKENS,
        tie_word_embeddings=True,
    )
    # transformers initialises from the global generator: fork it so building a model changes nothing
    # outside, and seed it from our own seed so the weights are reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive(seed, "bench", "rand-llama", hidden))
        return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)


def opt_config(size: str):  # -> transformers.OPTConfig
    from transformers import OPTConfig

    hidden, layers, heads, ffn = OPT_SIZES[size]
    # OPT-350m alone projects a 512-wide embedding and puts the layer norm after each block.
    extra = {"word_embed_proj_dim": 512, "do_layer_norm_before": False} if size == "350m" else {}
    return OPTConfig(
        vocab_size=OPT_VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        ffn_dim=ffn,
        max_position_embeddings=OPT_MAX_TOKENS,
        **extra,
    )


def opt_parameters(size: str) -> int:
    """Trainable parameters of an OPT size, counted on the meta device (nothing allocated)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(opt_config(size), dtype=torch.bfloat16)
    return sum(p.numel() for p in trainable_parameters(model))


def opt_model(size: str, seed: int, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """An OPT-shaped decoder with weights initialised from its config, built on ``device`` directly (a
    30B model initialised on the CPU first would take minutes and its whole size in host memory)."""
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=_fork_devices(device)):
        torch.manual_seed(derive(seed, "bench", "opt", size))
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(opt_config(size), dtype=dtype)
    return model


def load_bench_model(
    name: str,
    seed: int,
    assets_dir: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> BenchModel:
    device = torch.device(device)
    if name.startswith("opt-"):
        model = opt_model(name.removeprefix("opt-"), seed, device, dtype)
        return BenchModel(name, model.eval(), "causal-lm", random_init=True)
    m = RAND_LLAMA.fullmatch(name)
    if m is not None:
        model = rand_llama(int(m.group(1)), seed).to(device=device, dtype=dtype)
        return BenchModel(name, model.eval(), "causal-lm", random_init=True)
    from zofo.assets.models import load_model
    from zofo.core.config import ModelConfig

    loaded = load_model(ModelConfig(name=name), assets_dir=assets_dir, seed=seed, device=device, dtype=dtype)
    return BenchModel(name, loaded.model.eval(), loaded.kind, random_init=not loaded.pretrained)


def make_batch(bm: BenchModel, shape: tuple[int, int], seed: int, index: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids of exactly ``shape`` with a full attention mask, on the model's device."""
    batch, tokens = shape
    if tokens > bm.max_tokens:
        raise ConfigError("--shapes", format_shape(shape), f"at most {bm.max_tokens} tokens for {bm.name}")
    g = torch_rng(seed, "bench", "batch", bm.name, batch, tokens, index)
    ids = torch.randint(0, bm.vocab, (batch, tokens), generator=g).to(bm.device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def batch_loss(bm: BenchModel, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The task-free loss of the module docstring on one batch (callers choose grad or no_grad)."""
    if bm.kind == "causal-lm":
        return bm.model(**batch, labels=batch["input_ids"]).loss
    return bm.model(**batch).last_hidden_state.float().mean()


def make_loss(bm: BenchModel, batch: Mapping[str, torch.Tensor]) -> Callable[[], torch.Tensor]:
    return lambda: batch_loss(bm, batch)


@torch.no_grad()
def restore(params: Sequence[torch.Tensor], saved: Sequence[torch.Tensor]) -> None:
    for p, s in zip(params, saved, strict=True):
        p.copy_(s)
