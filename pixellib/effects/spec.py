"""Effect names and their arguments: ``"blur-bg=moderate"`` -> :class:`Effect`.

The text form is ``NAME`` or ``NAME=ARG``, the same on the command line, in the server and in
Python. Names and arguments:

====================  ======================================================================
``blur-bg[=K]``       box-blur the background; ``K`` is ``low`` (21), ``moderate`` (39,
                      the default) or ``extreme`` (81), PixelLib's three levels, or any
                      odd kernel size in pixels
``pixelate-bg[=B]``   pixelate the background in ``B`` x ``B`` blocks (default 16)
``gray-bg``           greyscale background (``grey-bg`` also accepted)
``color-bg[=C]``      solid background colour: ``#rrggbb``, ``#rgb``, ``R,G,B`` (RGB order,
                      as PixelLib's ``colors``) or a name such as ``green``; default black
``replace-bg=PATH``   a picture behind the objects, scaled and cropped to cover the image
                      (bare ``replace-bg``: the picture is given to ``apply_effect``)
``remove-bg``         transparent background: a BGRA result
``blur-objects[=K]``  blur only the selected objects (levels as ``blur-bg``)
``pixelate-objects[=B]``  pixelate only the selected objects
====================  ======================================================================
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import EffectError

#: Every effect name, background effects first.
EFFECTS: tuple[str, ...] = (
    "blur-bg", "pixelate-bg", "gray-bg", "color-bg", "replace-bg", "remove-bg",
    "blur-objects", "pixelate-objects",
)

#: PixelLib's ``low`` / ``moderate`` / ``extreme`` blur: ``cv2.blur`` kernel sizes.
BLUR_LEVELS: dict[str, int] = {"low": 21, "moderate": 39, "extreme": 81}
DEFAULT_BLUR = BLUR_LEVELS["moderate"]
DEFAULT_BLOCK = 16
MAX_KERNEL = 1001
MAX_BLOCK = 1024

#: Colour names accepted by ``color-bg`` (RGB).
COLOR_NAMES: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0), "white": (255, 255, 255), "red": (255, 0, 0), "green": (0, 255, 0),
    "blue": (0, 0, 255), "yellow": (255, 255, 0), "cyan": (0, 255, 255),
    "magenta": (255, 0, 255), "gray": (128, 128, 128), "grey": (128, 128, 128),
}

_ALIASES = {"grey-bg": "gray-bg", "colour-bg": "color-bg"}
_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")


@dataclass(frozen=True)
class Effect:
    """One parsed effect. Only the field its ``name`` uses is set.

    * ``kernel``: odd box-blur size (``blur-*``);
    * ``block``: pixel block size (``pixelate-*``);
    * ``color``: RGB triple (``color-bg``);
    * ``background``: the picture's path as given (``replace-bg``).
    """

    name: str
    kernel: int | None = None
    block: int | None = None
    color: tuple[int, int, int] | None = None
    background: str | None = None

    @property
    def on_objects(self) -> bool:
        """True when the effect changes the selected objects, False when the background."""
        return self.name.endswith("-objects")

    @property
    def transparent(self) -> bool:
        """True when the result has an alpha channel (``remove-bg``)."""
        return self.name == "remove-bg"

    def __str__(self) -> str:
        if self.kernel is not None:
            return f"{self.name}={self.kernel}"
        if self.block is not None:
            return f"{self.name}={self.block}"
        if self.color is not None:
            return f"{self.name}=#{self.color[0]:02x}{self.color[1]:02x}{self.color[2]:02x}"
        if self.background is not None:
            return f"{self.name}={self.background}"
        return self.name


def parse_effect(text: str | Effect) -> Effect:
    """The :class:`Effect` written as ``NAME`` or ``NAME=ARG`` (see the module doc).

    Raises :class:`~pixellib.errors.EffectError` (a ``ValueError``) naming the text and the
    valid choices for an unknown name or a bad argument.
    """
    if isinstance(text, Effect):  # one made by hand: checked, its unset field defaulted
        if text.name == "replace-bg" and text.background is not None:
            return text  # (its path as given, spaces and all)
        if text.color is not None and text.kernel is None and text.block is None:
            named = parse_effect(text.name)  # a colour as numbers (floats too), not as text
            if named.name == "color-bg":
                return Effect(named.name, color=parse_color(text.color, text.name))
        return parse_effect(str(text))
    if not isinstance(text, str):
        raise EffectError(f"an effect is a string such as 'blur-bg', got {type(text).__name__}")
    name, sep, arg = text.strip().partition("=")
    name = _ALIASES.get(name.strip().lower(), name.strip().lower())
    arg = arg.strip()
    if name not in EFFECTS:
        raise EffectError(f"unknown effect {text!r}; valid effects: {', '.join(EFFECTS)}")
    if sep and not arg:
        raise EffectError(f"effect {text!r} has an empty argument after '='")
    if name.startswith("blur-"):
        return Effect(name, kernel=_kernel(text, arg) if arg else DEFAULT_BLUR)
    if name.startswith("pixelate-"):
        return Effect(name, block=_block(text, arg) if arg else DEFAULT_BLOCK)
    if name == "color-bg":
        return Effect(name, color=parse_color(arg, text) if arg else (0, 0, 0))
    if name == "replace-bg":  # without PATH, the caller passes the picture to apply_effect
        return Effect(name, background=arg or None)
    if arg:
        raise EffectError(f"effect {name!r} takes no argument, got {text!r}")
    return Effect(name)


def _kernel(text: str, arg: str) -> int:
    level = BLUR_LEVELS.get(arg.lower())
    if level is not None:
        return level
    try:
        k = int(arg)
    except ValueError:
        k = None
    if k is None or k < 1 or k % 2 == 0 or k > MAX_KERNEL:
        raise EffectError(
            f"bad blur in {text!r}: expected {', '.join(BLUR_LEVELS)} or an odd kernel size "
            f"from 1 to {MAX_KERNEL}"
        )
    return k


def _block(text: str, arg: str) -> int:
    try:
        b = int(arg)
    except ValueError:
        b = None
    if b is None or not 1 <= b <= MAX_BLOCK:
        raise EffectError(f"bad block size in {text!r}: expected an integer from 1 to {MAX_BLOCK}")
    return b


def _color_values(arg) -> tuple[int, int, int] | None:
    """Three whole numbers 0-255 from an ordered sequence (not a set, no bools, no 0.5)."""
    if isinstance(arg, (set, frozenset, dict)) or not hasattr(arg, "__iter__"):
        return None
    values = []
    for v in arg:
        if isinstance(v, (bool, np.bool_)):
            return None
        if isinstance(v, (float, np.floating)) and not float(v).is_integer():
            return None
        try:
            number = int(v)
        except (TypeError, ValueError, OverflowError):
            return None
        values.append(number)
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        return None
    return tuple(values)


def parse_color(arg, text: str | None = None) -> tuple[int, int, int]:
    """An RGB triple from ``#rrggbb``, ``#rgb``, ``R,G,B``, a colour name, or a 3-sequence."""
    where = f" in {text!r}" if text else ""
    if not isinstance(arg, str):
        values = _color_values(arg)
        if values is None:
            hint = ""
            try:
                if len(arg) != 3:
                    hint = f" ({len(arg)} numbers)"
                elif all(0 <= float(v) <= 1 for v in arg):
                    hint = " (0-1 values? multiply them by 255)"
            except (TypeError, ValueError):
                pass
            raise EffectError(f"a colour is three whole numbers from 0 to 255 (R, G, B), "
                              f"got {arg!r}{where}{hint}")
        return values
    key = arg.strip().lower()
    if key in COLOR_NAMES:
        return COLOR_NAMES[key]
    if "," in key:
        parts = key.split(",")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if len(values) == 3 and all(0 <= v <= 255 for v in values):
            return tuple(values)
    elif _HEX.fullmatch(key):
        digits = key.lstrip("#")
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))
    raise EffectError(
        f"bad colour {arg!r}{where}: expected #rrggbb, #rgb, R,G,B (0-255) or one of "
        f"{', '.join(COLOR_NAMES)}"
    )
