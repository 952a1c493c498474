"""Exception types raised at pixellib's boundary.

Every error a user can cause (a bad model file, an unreadable image, a wrong argument) is a
:class:`PixellibError`. Each concrete type also derives from the builtin a Python user would
catch (``ValueError``, ``FileNotFoundError``), so ``except ValueError`` keeps working.
"""
from __future__ import annotations


class PixellibError(Exception):
    """Base class of every error pixellib raises on purpose."""


class ModelFileError(PixellibError, ValueError):
    """A model file exists but cannot be used: corrupt, unsafe, wrong keys or shapes."""


class UnsafeModelFileError(ModelFileError):
    """A pickle asked to import or call something that is not plain array data."""


class ModelNotFoundError(PixellibError, FileNotFoundError):
    """A model path does not exist. The message says where to get the model."""


class ImageReadError(PixellibError, ValueError):
    """An image or video exists but cannot be decoded, or is refused (too large, bad shape)."""


class InputNotFoundError(PixellibError, FileNotFoundError):
    """An image, video or folder path does not exist."""


class AnnotationFileError(PixellibError, ValueError):
    """A COCO annotation file is unreadable or lacks what evaluation needs."""
