"""Exception types raised at pixellib's boundary, and what a batch skips.

Every error a user can cause (a bad model file, an unreadable image, a wrong argument, a failed
download) is a :class:`PixellibError`. Each concrete type also derives from the builtin a
Python user would catch, so ``except ValueError`` / ``except OSError`` keep working:

====================== ==================== ============================================
class                  builtin base         raised for
====================== ==================== ============================================
InvalidArgumentError   ``ValueError``       a wrong argument or setting value
ModelFileError         ``ValueError``       a model file that exists but cannot be used
UnsafeModelFileError   ``ValueError``       (a ModelFileError) a pickle that would run code
ImageReadError         ``ValueError``       an image or video that cannot be decoded
ImageTooLargeError     ``ValueError``       (an ImageReadError) an image over the pixel limit
EffectError            ``ValueError``       a wrong effect name or argument
AnnotationFileError    ``ValueError``       a COCO annotation file evaluation cannot use
ServeOptionError       ``ValueError``       (an InvalidArgumentError) a bad server option
RayJobError            ``ValueError``       (an InvalidArgumentError) a Ray job that cannot start
ModelNotFoundError     ``FileNotFoundError`` a missing model path or unknown model name
InputNotFoundError     ``FileNotFoundError`` a missing image, video or folder
ModelDownloadError     ``OSError``          a download that failed or gave an unusable file
OutputCheckError       ``RuntimeError``     results that are not one row per input image
UsageError             ``RuntimeError``     a call made before what it needs: no model
                                            loaded, or a window without OpenCV's GUI
====================== ==================== ============================================

An argument of the wrong type (a list where a path goes) raises ``TypeError``, as Python's
own functions do.

``tests/test_errors.py`` checks this table.
"""
from __future__ import annotations


class PixellibError(Exception):
    """Base class of every error pixellib raises on purpose."""


class InvalidArgumentError(PixellibError, ValueError):
    """An argument or setting has a value pixellib cannot use; the message names it."""


class ModelFileError(PixellibError, ValueError):
    """A model file exists but cannot be used: corrupt, unsafe, wrong keys or shapes."""


class UnsafeModelFileError(ModelFileError):
    """A pickle asked to import or call something that is not plain array data."""


class ModelNotFoundError(PixellibError, FileNotFoundError):
    """A model path does not exist. The message says where to get the model."""


class ModelDownloadError(PixellibError, OSError):
    """A model could not be downloaded, or what was downloaded is not a usable checkpoint."""


class ImageReadError(PixellibError, ValueError):
    """An image or video exists but cannot be decoded, or is refused (too large, bad shape)."""


class ImageTooLargeError(ImageReadError):
    """An image whose size (read from its header when possible) is over the pixel limit."""


class InputNotFoundError(PixellibError, FileNotFoundError):
    """An image, video or folder path does not exist."""


class EffectError(PixellibError, ValueError):
    """An effect name or argument is not valid, or an effect cannot be applied to an output."""


class AnnotationFileError(PixellibError, ValueError):
    """A COCO annotation file is unreadable or lacks what evaluation needs."""


class ServeOptionError(InvalidArgumentError):
    """A server option out of range, or a public address without authentication."""


class RayJobError(InvalidArgumentError):
    """A Ray job that cannot start: unsupported inputs, an output folder that is a file or
    already holds results (without ``skip_existing``), an unknown format."""


class OutputCheckError(PixellibError, RuntimeError):
    """A results folder that does not hold exactly one row per input image."""


class UsageError(PixellibError, RuntimeError):
    """A call that cannot run as things stand: ``segmentImage`` before ``load_model``, or
    ``show_frames=True`` with an OpenCV that cannot open windows. The message says what to do."""


# What a batch (``segmentBatch``, the ``pixellib segment`` command) skips: our errors about one
# input, and file-system errors (unreadable, unwritable, disk full). Anything else is a bug and
# stops the batch with its traceback.
BATCH_SKIPPED = (PixellibError, OSError)

__all__ = [
    "AnnotationFileError", "BATCH_SKIPPED", "EffectError", "ImageReadError", "ImageTooLargeError",
    "InputNotFoundError", "InvalidArgumentError", "ModelDownloadError", "ModelFileError",
    "ModelNotFoundError",
    "OutputCheckError", "PixellibError", "RayJobError", "ServeOptionError", "UnsafeModelFileError",
    "UsageError",
]
