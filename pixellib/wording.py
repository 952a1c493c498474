"""Counts in messages: "1 image", "2 images"."""
from __future__ import annotations

import reprlib


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """``"1 image"``, ``"0 images"``; ``plural`` when it is not ``singular + "s"``."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def shortened(text: str, limit: int) -> str:
    """``text`` on one line (runs of whitespace made one space), cut to at most ``limit``
    characters with ``...`` where it was longer: for quoting a value or another library's
    message inside ours."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _BoundedRepr(reprlib.Repr):
    """reprlib's bounds (few items, short strings, shallow nesting), bytes included: their
    full ``repr`` is never built (a key of 9,000 references to 1 MB of bytes asked 36 GB)."""

    def __init__(self, limit: int):
        super().__init__()
        self.maxstring = self.maxother = self.maxlong = limit
        self.maxlevel, self.maxtuple, self.maxlist, self.maxdict = 3, 4, 4, 4
        self.maxset = self.maxfrozenset = self.maxdeque = self.maxarray = 4

    def repr_bytes(self, x, level):
        return repr(x[: self.maxstring]) + ("..." if len(x) > self.maxstring else "")

    repr_bytearray = repr_bytes

    def repr_int(self, x, level):  # past 4,300 digits Python refuses the text form
        if x.bit_length() > 4 * self.maxlong:
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


def short_repr(value, limit: int = 80) -> str:
    """``repr(value)`` on one line and at most ``limit`` characters, built within bounds
    whatever the value holds: for quoting untrusted data (a model file's keys) in a message."""
    return shortened(_BoundedRepr(limit).repr(value), limit)


def shown_name(path) -> str:
    """A file name for a message line: as it is, or quoted with its escapes (``repr``) when
    it holds a newline or another character that cannot be shown, which would otherwise
    break the line or forge another."""
    text = str(path)
    return text if text.isprintable() else repr(text)
