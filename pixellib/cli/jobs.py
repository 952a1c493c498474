"""Which files ``pixellib segment`` reads and where it writes each result.

Output naming for ``segment`` (never overwrites an input):

* one image file, no ``-o``: ``<stem>_segmented<ext>`` beside it; one video:
  ``<stem>_segmented.mp4`` beside it. With ``-o FILE`` that file (``-o`` naming an existing
  folder, or ending in ``/``, puts the output inside it).
* anything else (several inputs, a folder, a glob): a folder, ``-o DIR`` or ``./segmented``,
  holding ``<stem><ext>`` per image and ``<stem>.mp4`` per video (``<stem>_2...`` when two
  inputs share a stem, such as ``a.jpg`` and ``a.png``: the extras below are named after
  the output's stem). An output folder that holds inputs is refused. The folder's
  :data:`RECORD_NAME` says which input and settings made each output, so that
  ``--skip-existing`` skips an input only when its output came from it.
* ``--extract``: cut-outs in ``<output stem>_extracts/`` beside each output image.
"""
from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputNotFoundError, InvalidArgumentError
from ..media.files import VIDEO_EXTENSIONS, extension_problem, link_problem, real_path
from ..wording import counted

logger = logging.getLogger(__name__)

# Inputs read as videos (by FFmpeg through PyAV): the containers phones, cameras and the web
# produce. Outputs are written to VIDEO_CODECS' extensions.
DEFAULT_BATCH_FOLDER = "segmented"
_GLOB_CHARS = frozenset("*?[")


#: In a batch output folder: one JSON line per finished output (its name, the input it was
#: made from, the settings), which ``--skip-existing`` checks before skipping an input.
RECORD_NAME = ".pixellib-done.jsonl"


@dataclass(frozen=True)
class Job:
    """One input and the output it gets; ``record``: the batch folder's :data:`RECORD_NAME`
    (None for a single input's output)."""

    source: Path
    output: Path
    video: bool
    record: Path | None = None


def expand_glob(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, except that ``**`` enters each folder once:
    glob follows every linked folder, so a link to a folder above lists the same files again
    at every depth, and two such links make it run for ever. A linked folder elsewhere is
    still searched (once, under the first path that reaches it); hidden folders are left
    out, as glob leaves them."""
    if os.altsep:  # Windows: "photos/**/*.jpg" as "photos\\**\\*.jpg"
        pattern = pattern.replace(os.altsep, os.sep)
    parts = pattern.split(os.sep)
    if "**" not in parts:
        return glob.glob(pattern)  # "**" inside a name is glob's "*"
    at = parts.index("**")
    head, rest = os.sep.join(parts[:at]), os.sep.join(parts[at + 1:])
    if at and not head:
        head = os.sep  # "/**/..."
    folders_only = parts[at + 1:] == [""]  # "dir/**/": the folders, as "dir/sub/"
    bases = ([head] if not glob.has_magic(head) else glob.glob(head)) if head else [""]
    found: list[str] = []
    for base in bases:
        for root in _folders_once(base):
            if folders_only:
                found += [os.path.join(root, "")] if root else []
            elif rest:
                found += expand_glob(os.path.join(glob.escape(root), rest) if root else rest)
            else:  # "dir/**": "dir/", then everything in it, as glob lists them
                found += [os.path.join(root, "")] if root and root == base else []
                found += glob.glob(os.path.join(glob.escape(root), "*") if root else "*")
    return list(dict.fromkeys(found))


def _folders_once(base: str) -> Iterator[str]:
    """``base`` ("" for the current folder, named relatively) and every folder below it
    that is not hidden, linked folders included, each folder entered once."""
    top = base or os.curdir
    try:
        seen = {_folder_id(top)}
    except OSError:
        return
    for root, dirs, _ in os.walk(top, followlinks=True):
        kept = []
        for name in sorted(dirs, key=lambda d: (os.path.islink(os.path.join(root, d)), d)):
            try:
                key = _folder_id(os.path.join(root, name))
            except OSError:
                continue
            if not name.startswith(".") and key not in seen:
                seen.add(key)
                kept.append(name)
        dirs[:] = kept
        if not base:  # the pattern was relative to here: "sub/x.jpg", not "./sub/x.jpg"
            root = os.path.relpath(root)
            root = "" if root == os.curdir else root
        yield root


def _folder_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _expand_inputs(inputs: list[str], *, every: list[Path] | None = None,
                   outputs_in: Path | None = None) -> list[Path]:
    """Files named by the arguments: files as given, folders' images (sorted), glob matches;
    each file once, under the first path that reached it. ``every`` (a list) receives all
    the paths, those dropped as another path to the same file included. Glob matches inside
    the folder ``outputs_in`` (real path) are left out: an earlier run's outputs, which a
    glob over the tree that holds the output folder finds on every re-run."""
    from ..media.images import IMAGE_EXTENSIONS, list_images

    found: list[Path] = []
    empty: list[str] = []  # folders named that hold no image
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.exists():
            matches, from_glob = [path], False
        elif _GLOB_CHARS & set(raw):
            matches = [Path(m) for m in sorted(expand_glob(os.path.expanduser(raw)))]
            from_glob = True
            if outputs_in is not None:
                matches = [m for m in matches if not real_path(m).is_relative_to(outputs_in)]
            if not matches:
                raise InputNotFoundError(f"no file matches {raw!r}")
        elif path.is_symlink():
            raise InputNotFoundError(f"input {raw!r} is {link_problem(path)}")
        else:
            raise InputNotFoundError(f"input not found: {raw!r}")
        for m in matches:
            if m.is_dir():
                images = list_images(m)
                if not images and not from_glob:
                    empty.append(raw)
                found += images
            elif not from_glob or m.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
                found.append(m)
    if every is not None:
        every += found
    unique, first, again = [], {}, {}
    for p in found:
        key = real_path(p)
        if key not in first:
            first[key] = p
            unique.append(p)
        elif p != first[key]:  # the same name twice says nothing worth a line
            again.setdefault(f"{str(p)!r} is {str(first[key])!r}")
    again = list(again)
    if again:
        logger.warning("%s the same file as an earlier input (%s%s): each file is segmented "
                       "once", counted(len(again), "input names", "inputs name"),
                       "; ".join(again[:3]), "; ..." if len(again) > 3 else "")
    if unique and empty:  # alone, they are the error below
        logger.warning("no images in %s %s (a folder gives the images directly in it, not "
                       "those of its subfolders, nor its videos): nothing done there",
                       "folder" if len(empty) == 1 else "folders",
                       ", ".join(repr(e) for e in empty))
    if not unique:
        folders = [Path(raw).expanduser() for raw in inputs if Path(raw).expanduser().is_dir()]
        videos = [v for f in folders for v in sorted(f.iterdir())
                  if v.suffix.lower() in VIDEO_EXTENSIONS and v.is_file()]
        if videos:
            raise InputNotFoundError(
                f"no images found in: {', '.join(inputs)}; a folder gives its images only, and "
                f"it holds {len(videos)} video(s): name them, e.g. "
                f"'{videos[0].parent / ('*' + videos[0].suffix)}'")
        raise InputNotFoundError(f"no images or videos found in: {', '.join(inputs)}")
    return unique


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _output_ext(path: Path) -> str:
    from ..media.images import IMAGE_EXTENSIONS

    if _is_video(path):
        return ".mp4"
    ext = path.suffix.lower()
    return ext if ext in IMAGE_EXTENSIONS else ".png"


def plan_jobs(inputs: list[str], output: str | None) -> list[Job]:
    """Pair each input with its output path; refuse any plan that would overwrite an input."""
    from ..media.images import IMAGE_EXTENSIONS, OTHER_WRITE_EXTENSIONS
    from ..media.video import VIDEO_CODECS

    every: list[Path] = []
    single = len(inputs) == 1 and Path(inputs[0]).expanduser().is_file()
    batch_folder = None if single else real_path(output or DEFAULT_BATCH_FOLDER)
    sources = _expand_inputs(inputs, every=every, outputs_in=batch_folder)
    inside = output is not None and (Path(output).is_dir() or output.endswith(("/", os.sep)))
    if single and not inside:
        src = sources[0]
        dst = Path(output) if output else src.with_name(f"{src.stem}_segmented{_output_ext(src)}")
        if real_path(dst) == real_path(src):
            raise InvalidArgumentError(
                f"output {str(dst)!r} is the input itself; choose another -o"
            )
        allowed = VIDEO_CODECS if _is_video(src) else IMAGE_EXTENSIONS + OTHER_WRITE_EXTENSIONS
        if dst.suffix.lower() not in allowed:
            kind = "video " if _is_video(src) else "image "
            raise InvalidArgumentError(f"output {str(dst)!r}: "
                                       + extension_problem(dst, kind, allowed))
        return [Job(src, dst, _is_video(src))]

    folder = Path(output) if output else Path(DEFAULT_BATCH_FOLDER)
    if folder.exists() and not folder.is_dir():
        raise InvalidArgumentError(
            f"output {str(folder)!r} is a file; several inputs need a folder")
    resolved = real_path(folder)
    for src in every:  # a link segmented under another name is still an input in the folder
        # The folder the input is listed in, and the one its file really is in (a link's
        # target): writing into either would replace the input.
        if resolved in (real_path(src).parent, real_path(src.absolute().parent)):
            raise InvalidArgumentError(
                f"output folder {str(folder)!r} holds the input {str(src)!r}; choose another "
                "-o so that inputs are never overwritten"
            )
    # Unique stems, not just names: a.jpg and a.png would otherwise share the outputs named
    # after the stem (--extract, --cutouts and --masks files, and a.png after remove-bg).
    jobs, used = [], set()
    for src in sources:
        name, k = src.stem, 1
        while name.lower() in used:
            k += 1
            name = f"{src.stem}_{k}"
        used.add(name.lower())
        jobs.append(Job(src, folder / f"{name}{_output_ext(src)}", _is_video(src),
                        folder / RECORD_NAME))
    return jobs
