"""Counts in messages: "1 image", "2 images"."""
from __future__ import annotations


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """``"1 image"``, ``"0 images"``; ``plural`` when it is not ``singular + "s"``."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"
