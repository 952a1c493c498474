"""Argument types shared by the commands."""
from __future__ import annotations

import argparse
import os


def number_between(low: float, high: float, unit: str = ""):
    """An argparse ``type``: a number in ``[low, high]``, else a message naming the range."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}{unit}, "
                                             f"got {text}")
        return value
    return parse


#: A score threshold in [0, 1].
probability = number_between(0, 1)


def user_path(text: str) -> str:
    """An argparse ``type`` for a path option: ``~`` expanded as the shell would have done,
    had the option not been written ``--option=~/dir`` (where the shell leaves it)."""
    return os.path.expanduser(text)
