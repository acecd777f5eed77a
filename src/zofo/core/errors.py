"""User-facing errors: one message naming the key, the value and what is allowed."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ZofoError(Exception):
    """Base class of the errors zofo raises for bad input; the CLI turns them into exit code 2."""


class ConfigError(ZofoError, ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""

    def __init__(self, key: str, value: object, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}: got {shown(value)}; allowed: {allowed}")


def shown(value: object, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters: a hostile value (a 5,000-digit integer, whose repr
    Python refuses, or a pasted file) must not hide the message or make it unreadable."""
    try:
        text = repr(value)
    except ValueError:  # int -> str conversion beyond sys.get_int_max_str_digits
        return f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"  # type: ignore[attr-defined]
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} characters)"


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A short hint with the closest known names, or an empty string."""
    close = difflib.get_close_matches(str(name), list(choices), n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
