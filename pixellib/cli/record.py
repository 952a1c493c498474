"""The record a batch output folder keeps of its finished outputs (``.pixellib-done.jsonl``).

One JSON line per output, appended right after the output is in place: its name, the input
it was made from (real path, size, modification time) and the options that shape it. With
``--skip-existing`` an input is skipped only when its output exists and the record's last
line for that output names this very input, unchanged, and these options: batch names
follow the input order (``photo.jpg``, ``photo_2.jpg``), so after inputs came or went a name
may hold another input's result, and an input replaced in place, or other options, make
other pictures. A folder without a record (written by hand, or by an older pixellib) keeps
the plain rule, an existing output is done, and its outputs are entered as they are. A
re-run appends a line per output it makes again; once the superseded lines outnumber the
live ones (and the record has more than :data:`COMPACT_FROM` lines), the next run rewrites it
with the last line per output.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from ..media.files import parse_json
from .jobs import Job

logger = logging.getLogger("pixellib.cli")

# Options that do not shape the output files (pictures, extracts, cut-outs, masks).
# (``effect_background`` is the decoded picture of the --effect's background, which the
# effect names by its path.)
_NOT_SETTINGS = {"command", "func", "usage", "inputs", "output", "skip_existing", "strict",
                 "coco", "device", "ray", "format", "effect_background", "_earlier_extras"}
# Folders the extras go to: compared as absolute paths, whether they exist yet or not.
_FOLDER_OPTIONS = {"cutouts", "masks"}
# Options that shape an image's files only (a video gets a warning that they do not apply).
_IMAGE_ONLY = {"extract", "cutouts", "masks"}


def _file_identity(path: str) -> list:
    """An existing file as its real path, size and modification time (a file replaced in
    place is another file); a folder as its real path."""
    real = os.path.realpath(path)
    if os.path.isfile(real):
        st = os.stat(real)
        return [real, st.st_size, st.st_mtime_ns]
    return [real]


def _plain(value):
    """A value as the key holds it: numbers as floats (``--feather 0`` is the default 0),
    an effect as its fields with its background picture by identity."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.asdict(value)
        picture = fields.get("background")
        if isinstance(picture, str) and os.path.exists(os.path.expanduser(picture)):
            fields["background"] = _file_identity(os.path.expanduser(picture))
        return [type(value).__name__, sorted((k, _plain(v)) for k, v in fields.items())]
    return value


def settings_key(args: argparse.Namespace, *, video: bool) -> str:
    """The options that shape an image's (or with ``video``, a video's) outputs, as one
    string: new options count by default; the model file and the background picture by
    identity (``./bg.png`` and its absolute path are one setting, a picture replaced under
    the same name another); ``resnet50`` and its cached file alike; classes as a set;
    numbers as floats; the confidence as the
    one that applies (``--speed rapid`` alone is ``--speed rapid --confidence 0.2``);
    ``--track`` for videos only, ``--extract``, ``--cutouts`` and ``--masks`` for images
    only."""
    from ..checkpoint.hub import MODEL_URLS, cached_model_path
    from ..config import SPEED_PRESETS

    values = {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS}
    model = values.get("model")
    if isinstance(model, str):  # a released model by name, whether downloaded yet or not
        named = {os.path.realpath(cached_model_path(k)): k for k in MODEL_URLS}
        key = model.strip().lower()
        if key in MODEL_URLS and not os.path.exists(model):
            values["model"] = ("released", key)
        elif os.path.realpath(os.path.expanduser(model)) in named:
            values["model"] = ("released", named[os.path.realpath(os.path.expanduser(model))])
        elif os.path.exists(os.path.expanduser(model)):
            values["model"] = ("file", *_file_identity(os.path.expanduser(model)))
    if values.get("confidence") is None:
        values["confidence"] = SPEED_PRESETS[values.get("speed") or "default"][0]
    if values.get("classes") is not None:
        values["classes"] = sorted(set(values["classes"]))
    for name in _IMAGE_ONLY if video else {"track"}:
        values.pop(name, None)
    for name in _FOLDER_OPTIONS:
        if values.get(name):  # a tuple: compared as the path, not as what is there now
            values[name] = ("folder", os.path.abspath(os.path.expanduser(values[name])))
    return repr(sorted((k, repr(_plain(v))) for k, v in values.items()))


#: A record is rewritten without its superseded lines once it has more than this many lines
#: and more than twice as many as outputs.
COMPACT_FROM = 64


class DoneRecord:
    """The records of a run's batch folders: what they vouch for, and the appending of
    finished outputs (from any thread)."""

    def __init__(self, args: argparse.Namespace):
        self.keys = {False: settings_key(args, video=False), True: settings_key(args, video=True)}
        self._entries: dict[Path, dict[str, dict] | None] = {}
        self._lock = threading.Lock()
        self._compacted: set[Path] = set()
        self._warned = False

    def _source(self, job: Job) -> dict:
        identity = _file_identity(os.fspath(job.source))
        return {"source": identity[0], "size": identity[1] if len(identity) > 1 else None,
                "mtime": identity[2] if len(identity) > 2 else None}

    def _line(self, job: Job) -> dict:
        return {"output": job.output.name, **self._source(job), "settings": self.keys[job.video]}

    def _read(self, record: Path) -> dict[str, dict] | None:
        if record not in self._entries:
            entries = None
            if record.is_file():
                with _folder_lock(record.parent, shared=True), open(record, "rb") as f:
                    entries, _ = _entries_of(f.read())
            self._entries[record] = entries
        return self._entries[record]

    def vouches(self, job: Job) -> bool | None:
        """Whether the record says ``job``'s existing output was made from its input, as it
        is now, with these options; None when its folder has no record (or it is no batch
        job)."""
        if job.record is None:
            return None
        entries = self._read(job.record)
        if entries is None:
            return None
        entry = entries.get(job.output.name)
        if entry is None:
            return False
        return {k: entry.get(k) for k in ("source", "size", "mtime", "settings")} == {
            k: v for k, v in self._line(job).items() if k != "output"}

    def note(self, job: Job) -> None:
        """Append ``job``'s finished output (a line that starts on a line of its own, even
        after a line a crash cut short)."""
        if job.record is None:
            return
        line = json.dumps(self._line(job)).encode("ascii")  # non-UTF-8 names escaped
        try:
            with self._lock, _folder_lock(job.record.parent) as locked:
                if locked and job.record not in self._compacted:  # once a run, first
                    self._compacted.add(job.record)
                    _compact(job.record)
                if job.record.is_symlink():  # replaced, as a link at any output name is:
                    job.record.unlink()        # appending through it wrote another file
                elif job.record.exists() and os.stat(job.record).st_nlink > 1:
                    _compact(job.record, always=True)  # a new file: a hard-linked copy's
                    # record stays as it was
                with open(job.record, "a+b") as f:
                    f.seek(0, os.SEEK_END)
                    if f.tell():
                        f.seek(-1, os.SEEK_END)
                        if f.read(1) != b"\n":
                            line = b"\n" + line
                    f.write(line + b"\n")
        except OSError as e:
            if not self._warned:
                self._warned = True
                logger.warning("cannot note finished outputs in %r (%s); --skip-existing "
                               "will make them again", str(job.record), e.strerror or e)


def _entries_of(data: bytes) -> tuple[dict[str, dict], int]:
    """A record's last entry per output, and its number of lines."""
    entries, lines = {}, 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        lines += 1
        try:
            item = parse_json(line)
            entries[item["output"]] = item
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash
    return entries, lines


def _compact(record: Path, *, always: bool = False) -> None:
    """Rewrite ``record`` with its last line per output, once the superseded lines outnumber
    the live ones: each re-run appends a line per output it makes again, so a folder re-run
    daily would grow it for ever. Called under the folder's lock (:func:`_folder_lock`),
    which every run takes to append and to read: the new file replaces the old whole
    (written, flushed to disk, renamed), so a crash keeps one or the other."""
    from ..media.files import atomic_path

    if not record.is_file():
        return
    entries, lines = _entries_of(record.read_bytes())
    if lines <= max(COMPACT_FROM, 2 * len(entries)) and not always:
        return
    text = "".join(json.dumps(item) + "\n" for item in entries.values()).encode("ascii")
    with atomic_path(record) as tmp, open(tmp, "xb") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def _folder_lock(folder: Path, *, shared: bool = False) -> Iterator[bool]:
    """Hold ``flock`` on the batch folder itself (exclusive, or ``shared`` for reading): the
    runs writing one folder take turns with its record. Yields whether it is held: not where
    the system has no ``flock`` (Windows) or the file system refuses it (NFS without a lock
    daemon); the record is then appended to unlocked, and never compacted."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        except OSError:  # ENOLCK, EOPNOTSUPP...
            held = False
        else:
            held = True
        yield held
    finally:
        os.close(fd)  # which releases the lock
