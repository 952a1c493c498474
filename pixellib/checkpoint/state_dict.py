"""PointRend checkpoints: converting legacy key names, sniffing the architecture, checking
keys and shapes, converting files (reading them safely is :mod:`pixellib.checkpoint.files`).

docs/design.md, "Checkpoint files" and "Key names". This mirrors detectron2's
``DetectionCheckpointer._load_file`` / ``_load_model``
(``detectron2/checkpoint/detection_checkpoint.py``) with three deliberate differences:

* nothing in a file is ever executed: ``.pkl`` goes through a restricted unpickler
  (:mod:`pixellib.checkpoint.unpickler`), torch files through ``torch.load(weights_only=True)``, and
  ``.safetensors`` has no pickle at all. The format is read from the content, not the extension;
* legacy (pre-Nov-2020) PointRend names are translated by one pure function,
  :func:`convert_state_dict`, instead of module load hooks;
* a missing, unexpected or misshapen key is an error that lists the keys, never a warning
  followed by randomly initialised layers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pixellib.checkpoint.files import PathLike, read_checkpoint, to_tensor
from pixellib.errors import ModelFileError
from pixellib.media.files import write_bytes

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointInfo", "ConversionReport", "convert_checkpoint", "convert_state_dict",
    "detect_architecture", "expected_shapes", "inspect_checkpoint", "load_into",
    "read_checkpoint", "save_safetensors",
]


# Pre-Nov-2020 PointRend names -> current ones (docs/design.md, "Key names"). First matching
# prefix wins.
LEGACY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("roi_heads.mask_coarse_head.coarse_mask_fc", "roi_heads.mask_head.coarse_head.fc"),
    ("roi_heads.mask_coarse_head.", "roi_heads.mask_head.coarse_head."),
    ("roi_heads.mask_point_head.", "roi_heads.mask_head.point_head."),
    # ConvFCHead before version 2 (its detectron2 load hook renames these), under the current
    # parent name.
    ("roi_heads.mask_head.coarse_head.coarse_mask_fc", "roi_heads.mask_head.coarse_head.fc"),
)
# Saved by the 2020-era training code but non-persistent (or unused) now (docs/design.md,
# "Checkpoint files").
_IGNORED_PREFIXES = ("proposal_generator.anchor_generator.cell_anchors.",)
_IGNORED_KEYS = frozenset({"pixel_mean", "pixel_std"})
_IGNORED_SUFFIXES = ("num_batches_tracked",)

_PROBE_KEY = "backbone.bottom_up.res2.0.conv2.weight"
_POINT_HEAD = "roi_heads.mask_head.point_head."


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert_state_dict` changed: legacy renames (old -> new) and dropped keys."""

    renamed: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CheckpointInfo:
    """A validated checkpoint: its architecture (a key of ``config.ARCHITECTURES``) and size."""

    path: Path
    arch: str
    num_parameters: int  # elements in the converted state dict, FrozenBN statistics included
    report: ConversionReport


# ---------------------------------------------------------------------------------------------
# Key names and architecture


def _is_ignored(key: str) -> bool:
    return (
        key in _IGNORED_KEYS or key.startswith(_IGNORED_PREFIXES) or key.endswith(_IGNORED_SUFFIXES)
    )


def _current_name(key: str) -> str:
    for old, new in LEGACY_PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def convert_state_dict(raw: Mapping[str, Any]) -> tuple[dict[str, Any], ConversionReport]:
    """Translate legacy PointRend names (docs/design.md, "Key names") and drop known-unused keys.

    Pure: ``raw`` is not modified and values are passed through untouched. Raises
    ModelFileError if a legacy and a current name would give the same key.
    """
    converted: dict[str, Any] = {}
    source: dict[str, str] = {}
    renamed: dict[str, str] = {}
    ignored: list[str] = []
    for key, value in raw.items():
        if _is_ignored(key):
            ignored.append(key)
            continue
        name = _current_name(key)
        if name in converted:
            raise ModelFileError(
                f"checkpoint has both '{source[name]}' and '{key}' for the tensor '{name}' "
                f"(legacy and current PointRend names mixed)"
            )
        if name != key:
            renamed[key] = name
        converted[name] = value
        source[name] = key
    if renamed:
        logger.info("renamed %d legacy PointRend keys", len(renamed))
    if ignored:
        logger.debug("ignored %d unused checkpoint keys: %s", len(ignored), ignored)
    return converted, ConversionReport(renamed=renamed, ignored=ignored)


def detect_architecture(state_dict: Mapping[str, Any]) -> str:
    """The ``config.ARCHITECTURES`` key a converted state dict belongs to (docs/design.md,
    "Architecture from the tensors")."""
    probe = state_dict.get(_PROBE_KEY)
    if probe is None:
        raise ModelFileError(f"not a PointRend/R-CNN checkpoint: it has no '{_PROBE_KEY}'")
    if not any(key.startswith(_POINT_HEAD) for key in state_dict):
        plain = any(key.startswith("roi_heads.mask_head.mask_fcn") for key in state_dict)
        kind = "a plain Mask R-CNN checkpoint" if plain else "an R-CNN checkpoint"
        raise ModelFileError(
            f"{kind}, not a PointRend model: it has no '{_POINT_HEAD}*' weights. PixelLib's "
            f"instance segmentation needs pointrend_resnet50.pkl or pointrend_resnet101.pkl"
        )
    shape = tuple(probe.shape)
    if shape == (64, 64, 3, 3):
        deep = any(key.startswith("backbone.bottom_up.res4.22.") for key in state_dict)
        return "resnet101" if deep else "resnet50"
    if shape == (256, 8, 3, 3):
        return "resnext101_32x8d"
    raise ModelFileError(
        f"unsupported backbone: '{_PROBE_KEY}' has shape {shape}; expected (64, 64, 3, 3) "
        f"(ResNet-50/101) or (256, 8, 3, 3) (ResNeXt-101 32x8d)"
    )


# The stem convolution has a bias only once its batch norm is folded in (the checkpoints
# hold "...conv1.norm.*" and no bias): that marks a state dict saved from a loaded model.
_STEM_CONV = "backbone.bottom_up.stem.conv1"
_CLASS_SCORES = "roi_heads.box_predictor.cls_score.weight"


def is_folded(state_dict: Mapping[str, Any]) -> bool:
    """Whether a converted state dict was saved from a loaded model (norms folded in)."""
    return f"{_STEM_CONV}.bias" in state_dict and f"{_STEM_CONV}.norm.weight" not in state_dict


def _mismatch(expected: Mapping[str, tuple[int, ...]], state_dict: Mapping[str, Any]) -> str:
    """Missing, unexpected and misshapen keys of ``state_dict``, one line per kind, or ''.
    A model trained for another number of classes is said first, in words."""
    groups = {
        "missing": [key for key in expected if key not in state_dict],
        "unexpected": [key for key in state_dict if key not in expected],
        "wrong shape": [
            f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(shape)}"
            for key, shape in expected.items()
            if key in state_dict and tuple(state_dict[key].shape) != tuple(shape)
        ],
    }
    lines = []
    scores = state_dict.get(_CLASS_SCORES)
    if (scores is not None and _CLASS_SCORES in expected and len(scores.shape) == 2
            and scores.shape[0] != expected[_CLASS_SCORES][0]):
        lines.append(f"it was trained for {scores.shape[0] - 1} classes, and pixellib runs "
                     f"the {expected[_CLASS_SCORES][0] - 1}-class COCO PointRend models "
                     "(PixelLib's pointrend_resnet50.pkl / pointrend_resnet101.pkl)")
    for title, items in groups.items():
        if items:
            more = f", ... and {len(items) - 10} more" if len(items) > 10 else ""
            lines.append(f"{title} ({len(items)}): {', '.join(items[:10])}{more}")
    # one line each, ending in ';': still read apart when a command puts it on one line
    return ";".join(f"\n  {line}" for line in lines)


def load_into(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, path: PathLike | None = None
) -> None:
    """Load a converted state dict with ``strict=True`` after checking every key and shape.

    Raises ModelFileError listing the missing, unexpected and misshapen keys instead of
    leaving any layer randomly initialised.
    """
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    problem = _mismatch(expected, state_dict)
    if problem:
        where = path if path is not None else "checkpoint"
        raise ModelFileError(f"{where}: does not match {type(model).__name__}:{problem}")
    model.load_state_dict(state_dict, strict=True)


def expected_shapes(arch: str, *, folded: bool = False) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of the real model for ``arch`` (a hook tests may replace); with
    ``folded``, of a loaded model's own state dict."""
    from pixellib.model.detector import state_dict_shapes

    return state_dict_shapes(arch, folded=folded)


def _checked(raw: Mapping[str, Any]) -> tuple[dict[str, Any], ConversionReport, str]:
    """Convert names, detect the architecture and check every key and shape against it
    (a loaded model's folded state dict against the folded model)."""
    state_dict, report = convert_state_dict(raw)
    arch = detect_architecture(state_dict)
    expected = (expected_shapes(arch, folded=True) if is_folded(state_dict)
                else expected_shapes(arch))
    problem = _mismatch(expected, state_dict)
    if problem:
        raise ModelFileError(f"does not match the {arch} PointRend model:{problem}")
    return state_dict, report, arch


@contextmanager
def about_file(path: PathLike) -> Iterator[None]:
    """Prefix ModelFileErrors raised inside with the file they are about."""
    try:
        yield
    except ModelFileError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def inspect_checkpoint(path: PathLike) -> CheckpointInfo:
    """Read, convert and validate a checkpoint against the expected keys and shapes."""
    raw = read_checkpoint(path)
    with about_file(path):
        state_dict, report, arch = _checked(raw)
    num_parameters = sum(value.numel() for value in state_dict.values())
    return CheckpointInfo(Path(os.fspath(path)), arch, num_parameters, report)


# ---------------------------------------------------------------------------------------------
# Writing


def save_safetensors(state_dict: Mapping[str, Any], path: PathLike) -> None:
    """Write ``state_dict`` as float32 safetensors, atomically (:mod:`pixellib.media.files`),
    with the permissions the umask gives any new file (safetensors' own writer makes it
    readable by its owner only)."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for key, value in state_dict.items():
        tensor = to_tensor(value, key, Path(os.fspath(path)))
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in storages:  # safetensors refuses tensors that share memory
            tensor = tensor.clone()
        storages.add(tensor.untyped_storage().data_ptr())
        tensors[key] = tensor
    write_bytes(path, save(tensors, metadata={"format": "pt"}))


def convert_checkpoint(src: PathLike, dst: PathLike) -> CheckpointInfo:
    """Convert any supported checkpoint to a current-names ``.safetensors`` file at ``dst``.

    The source must be a PointRend checkpoint whose every key and shape the model takes;
    nothing is written if it cannot be read or would not load.
    """
    raw = read_checkpoint(src)
    with about_file(src):
        state_dict, report, arch = _checked(raw)
    save_safetensors(state_dict, dst)
    num_parameters = sum(value.numel() for value in state_dict.values())
    return CheckpointInfo(Path(os.fspath(dst)), arch, num_parameters, report)
