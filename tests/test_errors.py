"""The error hierarchy the README and pixellib.errors state, and who raises what."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import pixellib.errors as errors
from pixellib.errors import BATCH_SKIPPED, InvalidArgumentError, PixellibError

README = Path(__file__).parents[1] / "README.md"

# Every exported error class and the builtin it must also be, as the README table says.
BUILTIN_BASE = {
    "InvalidArgumentError": ValueError,
    "ModelFileError": ValueError,
    "UnsafeModelFileError": ValueError,
    "ImageReadError": ValueError,
    "ModelNotFoundError": FileNotFoundError,
    "InputNotFoundError": FileNotFoundError,
    "ModelDownloadError": OSError,
    "ImageTooLargeError": ValueError,
    "EffectError": ValueError,
    "AnnotationFileError": ValueError,
    "ServeOptionError": ValueError,
    "RayJobError": ValueError,
    "OutputCheckError": RuntimeError,
    "UsageError": RuntimeError,
}
EXPORTED = sorted(name for name in errors.__all__
                  if inspect.isclass(getattr(errors, name))
                  and issubclass(getattr(errors, name), Exception))


def test_every_exported_class_is_listed():
    assert set(EXPORTED) == set(BUILTIN_BASE) | {"PixellibError"}


@pytest.mark.parametrize("name", sorted(BUILTIN_BASE))
def test_each_error_is_a_pixellib_error_and_its_builtin(name):
    cls = getattr(errors, name)
    assert issubclass(cls, PixellibError)
    assert issubclass(cls, BUILTIN_BASE[name])
    # ValueErrors are not OSErrors and the other way round: `except ValueError` means
    # "bad value", `except OSError` "the file system or the network".
    other = OSError if BUILTIN_BASE[name] in (ValueError, RuntimeError) else ValueError
    assert not issubclass(cls, other)
    with pytest.raises(BUILTIN_BASE[name]):
        raise cls("message")


@pytest.mark.parametrize("name", sorted(BUILTIN_BASE))
def test_readme_names_each_error_with_its_base(name):
    text = README.read_text(encoding="utf-8")
    row = re.search(rf"^\| `{name}` \| `(\w+)` \|", text, re.M)
    assert row, f"README has no row for {name}"
    assert row.group(1) == BUILTIN_BASE[name].__name__


def test_re_exported_where_they_used_to_live():
    from pixellib.checkpoint import hub

    assert hub.ModelDownloadError is errors.ModelDownloadError


def test_batches_skip_our_errors_and_file_system_errors_only():
    assert issubclass(InvalidArgumentError, BATCH_SKIPPED)
    assert issubclass(PermissionError, BATCH_SKIPPED)
    assert not issubclass(ValueError, BATCH_SKIPPED)  # a plain ValueError is a bug: not skipped
    assert not issubclass(KeyError, BATCH_SKIPPED)


@pytest.mark.parametrize("call", [
    lambda: __import__("pixellib.config").config.inference_config("slow"),
    lambda: __import__("pixellib.config").config.inference_config(None, 1.5),
    lambda: __import__("pixellib.classes").classes.class_id("unicorn"),
])
def test_settings_raise_invalid_argument(call):
    with pytest.raises(InvalidArgumentError):
        call()


def test_predictor_arguments_raise_invalid_argument(r50_model):
    from pixellib.predictor import Predictor, load_model

    with pytest.raises(InvalidArgumentError, match="precision"):
        Predictor(r50_model, precision="int3")
    with pytest.raises(InvalidArgumentError, match="network_backbone"):
        load_model({}, backbone="vgg")


@pytest.mark.parametrize("field, value", [
    ("boxes", np.zeros((2, 4), np.float64)),
    ("scores", np.zeros((3,), np.float32)),
    ("class_ids", [0, 1]),
    ("masks", np.zeros((2, 5, 6), bool)),
])
def test_detections_validate_with_raises(field, value):
    from pixellib.structures import Detections

    fields = dict(boxes=np.zeros((2, 4), np.float32), scores=np.zeros((2,), np.float32),
                  class_ids=np.zeros((2,), np.int64), masks=np.zeros((2, 4, 6), bool),
                  image_size=(4, 6))
    Detections(**fields)  # valid
    fields[field] = value
    with pytest.raises(InvalidArgumentError, match=f"Detections.{field}"):
        Detections(**fields)


@pytest.mark.parametrize("text, limit, expected", [
    ("short", 10, "short"),
    ("  two\n lines\tand  tabs ", 40, "two lines and tabs"),
    ("x" * 20, 10, "xxxxxxx..."),
    ("a b c d e f", 11, "a b c d e f"),
])
def test_quoted_messages_are_one_line_and_bounded(text, limit, expected):
    from pixellib.wording import shortened

    assert shortened(text, limit) == expected
    assert len(shortened(text, limit)) <= limit


def test_a_long_bad_rle_is_quoted_shortened():
    from pixellib.export import rle_to_mask

    with pytest.raises(InvalidArgumentError) as err:
        rle_to_mask({"size": [2, 2], "extra": "y" * 500})
    assert len(str(err.value)) < 300 and "..." in str(err.value)
