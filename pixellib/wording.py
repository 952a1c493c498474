"""Counts in messages: "1 image", "2 images"."""
from __future__ import annotations


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """``"1 image"``, ``"0 images"``; ``plural`` when it is not ``singular + "s"``."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def shortened(text: str, limit: int) -> str:
    """``text`` on one line (runs of whitespace made one space), cut to at most ``limit``
    characters with ``...`` where it was longer: for quoting a value or another library's
    message inside ours."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown_name(path) -> str:
    """A file name for a message line: as it is, or quoted with its escapes (``repr``) when
    it holds a newline or another character that cannot be shown, which would otherwise
    break the line or forge another."""
    text = str(path)
    return text if text.isprintable() else repr(text)
