"""Paths for PixelLib's API: what identifies a loaded checkpoint, where extracts go, and
whether an output folder is the input folder."""
from __future__ import annotations

import collections
import os
from pathlib import Path

from ...errors import InvalidArgumentError
from ...media.files import output_path_problem, real_path, user_path


def file_key(model_path, backbone):
    """What identifies a loaded checkpoint file, or None when it cannot be stat'ed."""
    try:
        path = real_path(model_path)
        st = path.stat()
    except (OSError, TypeError, ValueError, RuntimeError):  # RuntimeError: a symlink loop
        return None
    return (str(path), st.st_mtime_ns, st.st_size, backbone)


def extract_folder(save: bool, folder) -> Path | None:
    """Where saved extracts go: ``folder`` (``~`` expanded), else the current directory; None
    when not saving. A folder that cannot be made (a file there or above it) raises
    :class:`InvalidArgumentError` now, before any image is segmented."""
    if not save:
        return None
    path = user_path(folder) if folder is not None else Path(os.curdir)
    problem = output_path_problem(path, folder=True)
    if problem:
        raise InvalidArgumentError(f"extracted_objects_folder {problem}")
    return path


def extract_dirs(files: list[Path], out_dir: Path | None) -> dict[Path, Path]:
    """``<folder>/<stem>_extracts`` per image, as PixelLib names them; images that share a
    stem (``a.jpg``, ``a.png``) get ``<stem>_<ext>_extracts`` so that neither overwrites
    the other's extracts."""
    stems = collections.Counter(p.stem for p in files)
    return {
        p: (out_dir or p.parent) / (f"{p.stem}_extracts" if stems[p.stem] == 1
                                    else f"{p.stem}_{p.suffix.lstrip('.')}_extracts")
        for p in files
    }


def same_folder(a: Path, b: Path) -> bool:
    if real_path(a) == real_path(b):
        return True
    try:
        return a.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_links_into(out_dir: Path | None, files: list[Path]) -> None:
    """Refuse an output folder where an input image really is, through a link listed in the
    input folder under the same name: its output, written there, would replace it."""
    if out_dir is None:
        return
    for path in files:
        if path.is_symlink() and real_path(out_dir / path.name) == real_path(path):
            raise InvalidArgumentError(
                f"output_folder_name {str(out_dir)!r} holds the input image {str(path)!r} "
                f"(a link to {str(real_path(path))!r}): its output would replace it; choose "
                "another folder")
