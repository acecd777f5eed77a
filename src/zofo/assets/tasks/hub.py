"""Any labelled text-classification dataset by hub id or local folder, through ``datasets``.

For users with a hub (the paper-scale configs name e.g. SST-2 by its hub id); tested here with a
local folder, which goes through the same ``datasets.load_dataset`` call.
"""

from __future__ import annotations

import numpy as np

from zofo.assets.tasks.base import TaskData, check_label_ids, split_dataset
from zofo.core.config import TaskConfig
from zofo.core.errors import ConfigError
from zofo.core.registry import TASKS


@TASKS.register("hub-classification")
def hub_classification(cfg: TaskConfig) -> TaskData:
    import datasets  # where a task is built, not where its name is checked

    if not cfg.dataset:
        raise ConfigError("task.dataset", cfg.dataset, "a hub dataset id or a local dataset folder")
    try:
        loaded = datasets.load_dataset(cfg.dataset)
    except Exception as e:  # datasets raises many types for "not reachable" / "not found"
        raise ConfigError(
            "task.dataset", cfg.dataset, f"a dataset reachable from this machine; loading failed: {e}"
        ) from None
    ds = (
        datasets.concatenate_datasets(list(loaded.values()))
        if isinstance(loaded, datasets.DatasetDict)
        else loaded
    )
    for key, col in (("task.text_column", cfg.text_column), ("task.label_column", cfg.label_column)):
        if col not in ds.column_names:
            raise ConfigError(key, col, f"a column of {cfg.dataset}: {ds.column_names}")
    if len(ds) == 0:
        raise ConfigError("task.dataset", cfg.dataset, "a dataset with labelled rows; this one has no rows")
    labels = ds[cfg.label_column]
    if all(isinstance(v, str) for v in labels):
        names = tuple(sorted(set(labels)))
        index = {name: i for i, name in enumerate(names)}
        labels = [index[v] for v in labels]
    else:
        feat = ds.features[cfg.label_column]
        if hasattr(feat, "names"):
            names = tuple(feat.names)
        else:
            ids = [
                v for v in labels if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0
            ]
            names = tuple(str(i) for i in range(int(max(ids)) + 1)) if ids else ()
        # Checked before a label indexes anything: -1 (an unlabelled row) would wrap to the last name.
        check_label_ids(labels, names, "task.label_column", f"column {cfg.label_column!r} of {cfg.dataset}")
    words = cfg.label_words or names
    if len(words) != len(names):
        raise ConfigError(
            "task.label_words", list(cfg.label_words), f"{len(names)} words, one per label {names}"
        )
    ds = datasets.Dataset.from_dict(
        {"text": ds[cfg.text_column], "label": labels, "category": [names[i] for i in labels]}
    )
    return TaskData(
        kind="classification",
        splits=split_dataset(ds),
        label_names=names,
        label_words=tuple(words),
        prompt="{text}\nTopic:",
        source=f"datasets.load_dataset({cfg.dataset!r})",
    )
