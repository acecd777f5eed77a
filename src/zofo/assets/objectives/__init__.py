"""How a model is trained and scored on a task; ``build_objective`` picks the objective for a model
and a task (the shared interface is in ``base``, the objectives in ``classification`` and
``generation``)."""

from __future__ import annotations

from zofo.assets.models import LoadedModel
from zofo.assets.objectives.base import Batch, Objective, clip, encode_rows, left_pad
from zofo.assets.objectives.classification import (
    EncoderClassifier,
    EncoderHeadObjective,
    LabelWordObjective,
)
from zofo.assets.tasks.base import TaskData
from zofo.core.config import TaskConfig
from zofo.core.errors import ConfigError

__all__ = [
    "Batch",
    "EncoderClassifier",
    "EncoderHeadObjective",
    "LabelWordObjective",
    "Objective",
    "build_objective",
    "clip",
    "encode_rows",
    "left_pad",
]


def build_objective(loaded: LoadedModel, task: TaskData, cfg: TaskConfig) -> Objective:
    if task.kind == "classification":
        cls = LabelWordObjective if loaded.kind == "causal-lm" else EncoderHeadObjective
        return cls(loaded.model, loaded.tokenizer, task, cfg)
    if loaded.kind != "causal-lm":
        raise ConfigError("model.name", loaded.source, "a causal LM for a generation task")
    # Imported when asked for: generation needs the Rouge-L scorers.
    from zofo.assets.objectives.generation import GenerationObjective

    return GenerationObjective(loaded.model, loaded.tokenizer, task, cfg)
