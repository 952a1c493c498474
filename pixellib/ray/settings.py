"""The settings a result folder's rows were made with, recorded beside them.

A job writes :data:`SETTINGS_FILE` into its output folder before its first shard: the model
(a released model's name, or a file's name and sha256, compared by the digest alone), the
speed mode, the confidence threshold it ran at, the classes kept and whether polygons were
added. Completing the folder later (``skip_existing=True``, ``--skip-existing``) checks the
new run's settings against it, so that rows made with another model or threshold are never
mixed into one table: a difference is refused, naming each setting and both values. Folders
written before the record existed are completed with a warning that they could not be
checked.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from pixellib.errors import RayJobError
from pixellib.media.files import parse_json, write_text

logger = logging.getLogger(__name__)

SETTINGS_FILE = "pixellib-job.json"
#: The recorded keys a completing run must match, as the messages name them.
COMPARED = ("model", "speed", "confidence", "classes", "polygons")


def job_settings(model: str, speed: str | None, confidence: float | None,
                 classes: Sequence[int] | None, polygons: bool) -> dict:
    """The settings that shape a job's rows, as :data:`SETTINGS_FILE` records them.
    ``model`` as :func:`pixellib.ray.job._checked_model` returns it (a released name or an
    absolute file path); ``confidence`` is recorded as the threshold the mode runs at."""
    from pixellib import __version__
    from pixellib.config import inference_config

    return {
        "model": _model_identity(model),
        "speed": speed or "default",
        "confidence": inference_config(speed, confidence).score_thresh,
        "classes": None if classes is None else sorted({int(c) for c in classes}),
        "polygons": bool(polygons),
        "pixellib": __version__,  # for the reader; not compared
    }


def _model_identity(model: str) -> dict:
    path = Path(model)
    if not path.is_file():  # a released model's name: every node fetches the same file
        return {"released": str(model).strip().lower()}
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"file": path.name, "sha256": digest.hexdigest()}


def record(folder: Path, settings: dict) -> None:
    """Write ``settings`` as ``folder``'s :data:`SETTINGS_FILE` (atomically)."""
    write_text(folder / SETTINGS_FILE, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def check_same(folder: Path, settings: dict) -> None:
    """Raise :class:`RayJobError` when ``folder``'s recorded settings differ from
    ``settings``; warn when the folder has no record to compare with."""
    path = folder / SETTINGS_FILE
    if not path.exists():
        logger.warning("%s holds results but no record of the settings they were made with "
                       "(written by an earlier pixellib, or the file was removed): completing "
                       "it without checking that the settings match", folder)
        return
    try:
        recorded = parse_json(path.read_text(encoding="utf-8"))
        if not isinstance(recorded, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RayJobError(f"{path}: not a settings record pixellib can read ({exc}); restore "
                          "it, or remove it to complete the folder unchecked") from None
    differ = [key for key in COMPARED if _key(key, recorded.get(key)) != _key(key, settings[key])]
    if differ:
        said = "; ".join(f"{key} {_said(key, recorded.get(key))} there, "
                         f"{_said(key, settings[key])} now" for key in differ)
        raise RayJobError(
            f"output folder {str(folder)!r} holds results made with other settings ({said}); "
            "complete it with the settings it was made with, or write to another folder")


def _key(key: str, value):
    """What is compared: a model file by its content (its digest), not its name or place."""
    if key == "model" and isinstance(value, dict) and "sha256" in value:
        return value["sha256"]
    return value


def _said(key: str, value) -> str:
    if key == "model" and isinstance(value, dict):
        if "released" in value:
            return f"the released {value['released']!r}"
        return f"{value.get('file')!r} (sha256 {str(value.get('sha256'))[:12]}...)"
    if key == "classes":
        return "all classes" if value is None else f"class ids {value}"
    return repr(value)
