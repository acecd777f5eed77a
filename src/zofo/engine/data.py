"""Encoded splits, built once per (task, tokenizer, token budget) and reused by every run.

Tokenising BBC News' 1,603 training articles took most of a second of every run's start; the grid's
hundreds of runs encode the same few splits. ``encoded_split`` keeps each encoded split in
``<assets_dir>/encoded/<key>.pt``, where the key is a hash of everything the encoding depends on: the
objective's class and what it adds to every prompt, the task config, the tokenizer's full definition
and the split's content fingerprint (the one ``datasets`` itself derives from the data). A change to
any of them is another key, so a stale file is never read; a file is written whole (temporary file,
then rename), so a killed run leaves none half-written.

An ``EncodedSplit`` holds the columns as plain lists: a batch is ``collate`` of the same rows as
before, so batches are the same tensors, without ``datasets``' per-row formatting at every step.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

# Raised when what an encoded split holds changes meaning (a new column rule), so older files are
# never read as the new kind.
FORMAT = 1
# The raw input: encoded into the objective's columns, read by nothing after that.
DROPPED = ("text",)


class EncodedSplit:
    """Columns of equal length as lists; the part of ``datasets.Dataset`` the engine and the objectives
    use (``len``, a column by name, ``select``, rows by iteration, ``column_names``)."""

    def __init__(self, columns: Mapping[str, Sequence[Any]]):
        self._columns = {k: list(v) for k, v in columns.items()}
        lengths = {len(v) for v in self._columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of unequal length: { {k: len(v) for k, v in self._columns.items()} }")
        self._len = lengths.pop() if lengths else 0

    def __len__(self) -> int:
        return self._len

    @property
    def column_names(self) -> list[str]:
        return list(self._columns)

    def __getitem__(self, column: str) -> list[Any]:
        return self._columns[column]

    def row(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self._columns.items()}

    def rows(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [self.row(int(i)) for i in indices]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self.row(i) for i in range(self._len))

    def select(self, indices: Sequence[int] | range) -> EncodedSplit:
        idx = [int(i) for i in indices]
        return EncodedSplit({k: [v[i] for i in idx] for k, v in self._columns.items()})

    def to_dict(self) -> dict[str, list[Any]]:
        return self._columns


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's whole definition (vocabulary, merges, normalisation, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # From the added tokens on: the serialisation's header holds the truncation and padding state,
        # which each call of the tokenizer sets for itself (and encoding's calls change), then the
        # definition proper: added tokens, normaliser, pre-tokeniser, post-processor, decoder, model.
        # Cut as text, since parsing the half-megabyte JSON took a third of a second.
        text = backend.to_str()
        start = text.find('"added_tokens"')
        text = text[start:] if start > 0 else text
    else:  # a slow tokenizer: its vocabulary and special tokens
        text = json.dumps([sorted(tokenizer.get_vocab().items()), tokenizer.all_special_tokens])
    text += json.dumps([type(tokenizer).__name__, tokenizer.pad_token_id, tokenizer.padding_side])
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(objective: Any, split: Any) -> str:
    """The key of ``split`` encoded by ``objective``: changes with anything the encoding depends on."""
    parts = {
        "format": FORMAT,
        "objective": f"{type(objective).__module__}.{type(objective).__qualname__}",
        "encoding": objective.encoding_key(),
        "tokenizer": tokenizer_fingerprint(objective.tokenizer),
        "split": split._fingerprint,
        "rows": len(split),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def encoded_split(objective: Any, split: Any, cache_dir: str | Path | None) -> EncodedSplit:
    """``objective.encode_split(split)`` as an ``EncodedSplit``, read from ``cache_dir`` when an earlier
    run encoded the same thing (and written there when not). ``cache_dir`` None: no cache."""
    path = Path(cache_dir) / f"{cache_key(objective, split)}.pt" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            return EncodedSplit(torch.load(path, weights_only=True))
        except Exception:  # unreadable (a foreign or damaged file): encode again and replace it
            pass
    encoded = objective.encode_split(split)
    columns = {c: encoded[c] for c in encoded.column_names if c not in DROPPED}
    out = EncodedSplit(columns)
    if path is not None:
        _write(path, out.to_dict())
    return out


def _write(path: Path, columns: dict[str, list[Any]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(columns, tmp)
        os.replace(tmp, path)  # whole or not at all; two runs writing one key write the same bytes
    except OSError:
        # A read-only or full assets folder costs the next run the encoding, never this run's result.
        tmp.unlink(missing_ok=True)
