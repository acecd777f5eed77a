"""The papers' reported numbers (``baselines/<paper>/reported.csv``), placed beside the measured ones
where method, model, task and metric match."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

REPORTED_COLUMNS: tuple[str, ...] = (
    "paper",
    "table",
    "method",
    "model",
    "task",
    "metric",
    "value",
    "source_note",
)
# The papers' method labels (baselines/*/reported.csv) -> zofo method names. FedIT is FedAvg of LoRA
# adapters. Labels absent here (FedZO, "FeedSign minus ZO-FedSGD", ...) name no zofo method.
REPORTED_METHOD_ALIASES: dict[str, str] = {
    "FedKSeed": "fedkseed",
    "FedKSeed-Pro": "fedkseed-pro",
    "FeedSign": "feedsign",
    "ZO-FedSGD": "zo-fedsgd",
    "Ferret": "ferret",
    "FedIT": "fedavg-lora",
    "FedAvg": "fedavg",
    "one-shot FL": "oneshot",
}
# The papers' model labels -> the hub ids that the paper-scale configs (baselines/*/config*.yaml) put in
# model.name, which is what a run's ``model`` column holds. LLaMA-3B, 7B and 13B have no config.
REPORTED_MODEL_ALIASES: dict[str, str] = {
    "DataJuicer-1.3B": "datajuicer/LLaMA-1B-dj-refine-150B",  # fedkseed/, ferret/config.yaml
    "RoBERTa-large": "FacebookAI/roberta-large",  # feedsign/config.yaml
    "OPT-13B": "facebook/opt-13b",  # feedsign/config-opt13b.yaml
}
# The papers' task labels -> a run's ``task`` column (task.name in the configs). ``hub-classification``
# names no dataset, so this mapping alone would be ambiguous; the metric is part of the match and keeps
# it sound: the papers score Dolly-15K by Rouge-L of generated answers, the configs' Dolly stand-in by
# accuracy, so today no Dolly number attaches to a stand-in row (the READMEs: not comparable).
REPORTED_TASK_ALIASES: dict[str, str] = {
    "Dolly-15K": "hub-classification",  # fedkseed/, ferret/, oneshot/config.yaml (dataset dolly-15k)
}


def load_reported(baselines_dir: str | Path) -> pd.DataFrame:
    """Every ``<baselines_dir>/*/reported.csv`` in one frame (folders in name order): ``read_reported``."""
    return read_reported(sorted(Path(baselines_dir).glob("*/reported.csv")))


def read_reported(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The given ``reported.csv`` files in one frame, in the order given, columns ``REPORTED_COLUMNS``;
    raises ValueError naming a file that lacks one of them."""
    frames = []
    for csv in paths:
        df = pd.read_csv(csv)
        missing = [c for c in REPORTED_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"{csv}: no column(s) {missing}")
        frames.append(df[list(REPORTED_COLUMNS)])
    if not frames:
        return pd.DataFrame(columns=list(REPORTED_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def attach_reported(
    final: pd.DataFrame,
    reported: pd.DataFrame,
    aliases: Mapping[str, str] | None = None,
    *,
    model_aliases: Mapping[str, str] | None = None,
    task_aliases: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """A copy of ``final`` with a column ``reported``: the papers' numbers for the same experiment.

    A reported row matches a row of ``final`` when its method, model, task and metric, translated by
    ``aliases`` (method labels, default ``REPORTED_METHOD_ALIASES``), ``model_aliases`` and
    ``task_aliases`` (defaults ``REPORTED_MODEL_ALIASES`` / ``REPORTED_TASK_ALIASES``; a label absent
    from a map stands for itself), equal the row's ``method``, ``model``, ``task`` and
    ``metric_name``. So a reported quantity that zofo does not measure (a communication bound, an
    accuracy gap) never matches. Each match reads ``"30.91 (ferret, Table 2)"``: the value as the
    paper gives it (Rouge-L in points where zofo's is in [0, 1]) and its source; several matches
    (one number quoted by two papers) are joined by ``"; "``; rows without one get ``""``.
    """
    methods = REPORTED_METHOD_ALIASES if aliases is None else aliases
    models = REPORTED_MODEL_ALIASES if model_aliases is None else model_aliases
    tasks = REPORTED_TASK_ALIASES if task_aliases is None else task_aliases
    texts: dict[tuple[str, str, str, str], list[str]] = {}
    for r in reported.to_dict("records"):
        key = (
            methods.get(r["method"], r["method"]),
            models.get(r["model"], r["model"]),
            tasks.get(r["task"], r["task"]),
            r["metric"],
        )
        text = f"{float(r['value']):g} ({r['paper']}, {r['table']})"
        if text not in texts.setdefault(key, []):
            texts[key].append(text)
    out = final.copy()
    out["reported"] = [
        "; ".join(texts.get((str(m), str(mo), str(t), str(n)), []))
        for m, mo, t, n in zip(
            final["method"], final["model"], final["task"], final["metric_name"], strict=True
        )
    ]
    return out
