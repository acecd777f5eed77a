"""Metrics: accuracy as a plain function, Rouge-L as an ``evaluate`` module shipped inside the package
(hub metrics fail offline).

``load_metric(name, config_name)`` returns what a run scores with: an object whose
``compute(predictions=..., references=...)`` returns a dict, as ``evaluate``'s modules do. Both metrics
are also ``evaluate`` modules in the folders beside this file, so ``evaluate.load(str(METRICS_DIR /
"accuracy"))`` works in a user's own code; the accuracy module computes with ``accuracy`` below.

Accuracy is computed here rather than through ``evaluate``: importing ``evaluate`` imports
``transformers.pipelines``, scipy.stats and requests (some 280 modules a classification run otherwise
never loads), and before any model is loaded, for a mean of equalities. Its definition is scikit-learn's
``accuracy_score`` (what ``evaluate``'s own hub "accuracy" metric computes); tests/unit/test_metrics.py
checks the two agree on random and edge inputs. ``evaluate`` is imported for Rouge-L only, when a
generation run first scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import evaluate

METRICS_DIR = Path(__file__).parent
AVAILABLE = ("accuracy", "rouge_l")


def accuracy(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """The fraction of predictions equal to their reference. Zero predictions, or lengths that differ,
    raise ValueError (accuracy is undefined there; scikit-learn refuses both too)."""
    if len(predictions) != len(references):
        raise ValueError(
            f"accuracy: {len(predictions)} predictions but {len(references)} references; one each"
        )
    if len(predictions) == 0:
        raise ValueError("accuracy of zero predictions is undefined")
    correct = sum(int(p == r) for p, r in zip(predictions, references, strict=True))
    return correct / len(predictions)


class Accuracy:
    """``accuracy`` behind ``evaluate``'s ``compute`` interface, without importing ``evaluate``."""

    name = "accuracy"

    def compute(self, *, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        return {"accuracy": accuracy(predictions, references)}


@cache
def load_metric(name: str, config_name: str | None = None) -> Accuracy | evaluate.EvaluationModule:
    if name not in AVAILABLE:
        raise ValueError(f"metric: got {name!r}; allowed: {list(AVAILABLE)}")
    if name == "accuracy":
        if config_name is not None:
            raise ValueError(f"accuracy config_name: got {config_name!r}; it has none")
        return Accuracy()
    import evaluate

    return evaluate.load(str(METRICS_DIR / name), config_name=config_name)
