"""The task contract and the fixed split every run shares.

A task yields a ``datasets.DatasetDict`` with ``train``, ``validation`` and ``test`` splits and the
columns ``text`` (the input), ``label`` (int class id; for generation tasks the category id),
``category`` (a string key for natural partitions) and, for generation tasks, ``target``.

The split is a property of the task, not of the run: it uses a fixed seed, so every method, seed and
partition is evaluated on the same test examples. ``validation`` is carved from the training part and
is the only split hyperparameters may be tuned on.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from zofo.core.errors import ConfigError

if TYPE_CHECKING:
    # Imported where a task is built: listing and checking task names (`zofo list`, the workflow's
    # config check) never loads datasets and the pandas and pyarrow beneath it.
    import datasets

SPLIT_SEED = 20_241_121  # fixed for every run: the test split never changes with the run seed


@dataclass(frozen=True)
class TaskData:
    kind: Literal["classification", "generation"]
    splits: datasets.DatasetDict
    label_names: tuple[str, ...]
    # Classification with a causal LM: one word per label, scored at the end of the prompt.
    label_words: tuple[str, ...] = ()
    # Prompt around the (truncated) input text; "{text}" is replaced.
    prompt: str = "{text}"
    metric: str = "accuracy"
    source: str = ""
    notes: dict = field(default_factory=dict)


def check_label_ids(labels: Sequence[object], label_names: Sequence[str], key: str, where: str) -> None:
    """Raise ConfigError unless every label is an integer class id in [0, len(label_names)). ``key``
    names the setting to blame, ``where`` the data (both go into the message)."""
    n = len(label_names)
    bad = [v for v in labels if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < n]
    if not bad:
        return
    first = bad[0]
    hint = (
        "; -1 marks an unlabelled row (as in GLUE's test splits): drop those rows from the data"
        if first == -1 and not isinstance(first, bool)
        else ""
    )
    names = list(label_names) if n <= 20 else f"{n} labels"
    raise ConfigError(
        key,
        first,
        f"class ids 0..{n - 1} (the labels {names}); {where} has {len(bad)} row(s) with other labels, "
        f"the first {first!r}{hint}",
    )


def package_dir(module: str, requirement: str) -> Path:
    """The folder of an installed package, found without importing it (data packages here print or
    fail on import; only their files are needed)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {module} package is not installed (pip install {requirement})")
    return Path(spec.submodule_search_locations[0])


def stratified_split(
    labels: Sequence[int], test_frac: float = 0.2, val_frac: float = 0.1, seed: int = SPLIT_SEED
) -> dict[str, list[int]]:
    """Per-class shuffled split into train / validation / test index lists (sorted)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_test = int(round(test_frac * len(idx)))
        n_val = int(round(val_frac * (len(idx) - n_test)))
        out["test"] += idx[:n_test].tolist()
        out["validation"] += idx[n_test : n_test + n_val].tolist()
        out["train"] += idx[n_test + n_val :].tolist()
    return {k: sorted(v) for k, v in out.items()}


def split_dataset(
    ds: datasets.Dataset, test_frac: float = 0.2, val_frac: float = 0.1
) -> datasets.DatasetDict:
    import datasets

    parts = stratified_split(ds["label"], test_frac, val_frac)
    return datasets.DatasetDict({k: ds.select(v) for k, v in parts.items()})
