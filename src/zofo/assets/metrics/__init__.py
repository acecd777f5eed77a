"""Metrics as ``evaluate`` modules shipped inside the package (hub metrics fail offline).

``load_metric("accuracy")`` or ``load_metric("rouge_l", "rouge")`` returns an
``evaluate.EvaluationModule`` loaded from the folder beside this file, so the same modules work with
``evaluate.load(path)`` in a user's own code.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import evaluate

METRICS_DIR = Path(__file__).parent
AVAILABLE = ("accuracy", "rouge_l")


@cache
def load_metric(name: str, config_name: str | None = None) -> evaluate.EvaluationModule:
    if name not in AVAILABLE:
        raise ValueError(f"metric: got {name!r}; allowed: {list(AVAILABLE)}")
    return evaluate.load(str(METRICS_DIR / name), config_name=config_name)
