"""Atomic file writes: the one helper every output of the project goes through.

Readers never see a half-written file and a failed write leaves nothing behind: the bytes go
to a hidden, uniquely named temporary file in the destination's folder (so two processes
writing the same output never collide), which then replaces the destination with
``os.replace`` (atomic on POSIX and Windows within one file system).

A file replaced so keeps its permissions (and owner, where allowed), not its other hard
links; a read-only file is refused, and so is a device, a pipe or a socket. A link at the
output name is replaced by the file (what it led to is left as it was: a link into the
input folder must not overwrite a photo). Where no new name can be made (a writable file in
a folder that is not, or a file bind-mounted into a container), the content is made in a
private temporary folder and copied into the file, under a lock: that last step is not
atomic.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from ..wording import shortened

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: File name extensions taken for videos (the command line, segmentBatch and Ray pick videos
#: by them).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".3gp", ".mts", ".m2ts",
                    ".ts", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv")

#: The longest file name, in bytes, of the usual file systems (ext4, XFS, Btrfs, tmpfs, APFS,
#: NTFS in UTF-16 units).
NAME_MAX = 255


def parse_json(text: str | bytes):
    """``json.loads(text)``, with JSON nested too deep for the decoder (``[[[[...``, which
    raised a ``RecursionError``) a ``ValueError`` as any other malformed JSON is: the readers
    of files pixellib wrote (batch records, COCO, result shards, settings) handle those."""
    import json

    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deep to read") from None


def user_path(path: PathLike) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded to that home folder, as a shell
    would (``"~/out.png"`` must not become a folder named ``~`` in the working directory)."""
    return Path(os.path.expanduser(os.fspath(path)))


def output_name(path: object, what: str = "output") -> str:
    """``path`` as text, or a ``TypeError`` that says what an output name must be (``bytes``
    would otherwise fail deep inside with "a bytes-like object is required, not 'str'")."""
    if not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes):
        raise TypeError(f"the {what} name must be a path (str or os.PathLike), got "
                        f"{type(path).__name__} {path!r}")
    return os.fspath(path)


def real_path(path: PathLike) -> Path:
    """``path`` absolute, with ``~`` expanded and every link followed, as ``Path.resolve()``
    gives it, but without its ``RuntimeError`` on a loop of links (Python < 3.13): a looping
    part stays as it is, and reading or writing it then fails, naming it."""
    return Path(os.path.realpath(user_path(path)))


def open_in_this_process(path: PathLike) -> bool:
    """Whether a file descriptor of this process is open on the file at ``path`` (the same
    file, whatever name it was opened by). A ``cv2.VideoCapture`` of a file keeps one open
    without saying which file it reads, so this is how a camera loop recognises its own input
    among its outputs. False where the process's descriptors cannot be listed (Windows)."""
    try:
        target = os.stat(path)
    except (OSError, ValueError):
        return False
    for listing in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(listing)
        except OSError:
            continue
        for name in names:
            try:
                st = os.fstat(int(name))
            except (OSError, ValueError):
                continue  # the descriptor of the listing itself, closed by now
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                return True
        return False
    return False


def link_problem(path: PathLike) -> str:
    """What is wrong with a link that leads to no file: ``"a broken link (to 'x')"``, or
    ``"a loop of symbolic links"``."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a loop of symbolic links"
    try:
        return f"a broken link (to {os.readlink(path)!r})"
    except OSError:
        return "a broken link"


def temporary_name(path: PathLike) -> Path:
    """A hidden, unique name beside ``path`` that keeps its extension (encoders pick the
    format from it): ``dir/.name.<random>.tmp.ext``, the name cut short where it would pass
    :data:`NAME_MAX` (the output's own name may be up to that long)."""
    path = Path(path)
    tail = f".{secrets.token_hex(6)}.tmp{path.suffix}"
    budget = max(1, NAME_MAX - 1 - len(os.fsencode(tail)))
    stem = path.stem
    if len(os.fsencode(stem)) > budget:  # cut on a character, not inside one
        stem = os.fsencode(stem)[:budget].decode("utf-8", "ignore") or "_"
    return path.with_name(f".{stem}{tail}")


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on a clean exit it replaces
    ``path``, on an exception it is removed. Parent folders are created.

    For writers that want a file name (encoders, ``torch.save``, ``cv2.VideoWriter``)::

        with atomic_path("out.mp4") as tmp:
            encode_to(tmp)
    """
    path = user_path(path)
    problem = output_path_problem(path)
    if problem:
        code = (errno.ENAMETOOLONG if len(os.fsencode(path.name)) > NAME_MAX
                else errno.EISDIR if path.is_dir()
                else errno.EINVAL if path.exists() and not path.is_file() else errno.ENOTDIR)
        raise OSError(code, f"cannot write {problem}")  # IsADirectoryError...
    unwritable = unwritable_file(path)
    if unwritable:
        raise OSError(unwritable[0], f"cannot write {str(path)!r}: {unwritable[1]}")
    existing = None
    if not path.is_symlink():  # a link is replaced by the file, what it led to left alone
        with contextlib.suppress(OSError):
            existing = os.stat(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A file that may be written in a folder that may not (no new name can be made there):
    # the content is made in a private folder elsewhere and copied into it.
    in_place = existing is not None and not os.access(path.parent, os.W_OK | os.X_OK)
    if in_place and existing.st_nlink > 1:  # the other names (an input's?) would change too
        raise OSError(errno.EACCES, f"cannot write {str(path)!r}: no file can be made in its "
                      "folder, and writing into it would change its other names (hard "
                      "links) too")
    staging = Path(tempfile.mkdtemp(prefix="pixellib-")) if in_place else None
    tmp = staging / temporary_name(path).name if staging else temporary_name(path)
    try:
        yield tmp
        if in_place:
            _copy_into(tmp, path)
        else:
            if existing is not None:
                _keep_mode_and_owner(tmp, existing)
            try:
                os.replace(tmp, path)
            except OSError as exc:
                # a mount point (a file bind-mounted into a container), or another's file
                # in a sticky folder (/tmp): written into, where it may be
                if exc.errno not in (errno.EBUSY, errno.EXDEV, errno.EPERM) or not (
                        existing is not None and writable_file(path)):
                    raise
                _copy_into(tmp, path)
    except OSError as exc:
        _discard(tmp)
        named = output_error(exc, tmp, path)
        if named is not None:
            raise named from exc
        raise
    except BaseException:
        _discard(tmp)
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


class Rollback:
    """Undo for a group of file writes and deletions that must take effect all together or
    not at all (an image's output with its object files, a video's extracts).

    Call :meth:`before_write` before each file is written (atomically) and :meth:`remove`
    instead of deleting one: the file that was there is kept aside, under a hidden name
    beside it (a hard link, else a copy). :meth:`undo` puts every earlier file back and
    removes the new ones (and the folders :meth:`made` names, when that leaves them empty);
    :meth:`commit` drops what was kept aside. So a step that fails part-way leaves what a
    previous run wrote as it was, not deleted with this run's half. Until then the earlier
    files' space stays in use: a group should be one image's files.

    ``keep_earlier=False`` (for groups as long as a video's extracts, whose earlier files
    would hold that much space to the end): nothing is kept aside, and :meth:`undo` removes
    every file the group wrote, earlier ones of the same names lost with them. Another
    user's file in a sticky folder (``/tmp``), which can only be written in place, is
    neither kept aside nor removed.
    """

    def __init__(self, *, keep_earlier: bool = True) -> None:
        self._entries: list[tuple[Path, Path | None]] = []  # (path, where its old one is)
        self._seen: set[str] = set()
        self._folders: list[Path] = []
        self._keep_earlier = keep_earlier

    def made(self, folder: PathLike) -> None:
        """Note the folders of ``folder``'s path that do not exist yet (call before creating
        them): :meth:`undo` removes them again when that leaves them empty."""
        missing = []
        folder = Path(os.path.abspath(user_path(folder)))
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        self._folders += reversed(missing)  # outermost first: undone innermost first

    def before_write(self, path: PathLike) -> None:
        self._keep(user_path(path), move=False)

    def remove(self, path: PathLike) -> None:
        """Delete ``path`` (a file) in a way :meth:`undo` can reverse."""
        path = user_path(path)
        if path.is_file() or path.is_symlink():
            self._keep(path, move=True)

    def _keep(self, path: Path, *, move: bool) -> None:
        key = os.path.abspath(path)
        if key in self._seen:  # kept aside once already: that is the one to restore
            if move:
                path.unlink(missing_ok=True)
            return
        self._seen.add(key)
        kept = None
        if path.is_symlink() or path.is_file():
            if not move and _anothers_in_sticky_folder(path):
                # written in place (it cannot be replaced there): a link to it would block
                # that (two names), and we could not remove the link either
                return
            kept = temporary_name(path)
            if move:
                os.replace(path, kept)
            elif not self._keep_earlier:
                kept = None
            else:
                try:
                    if path.is_symlink():
                        os.symlink(os.readlink(path), kept)
                    else:
                        try:
                            os.link(path, kept)
                        except OSError:  # no hard links here (FAT, some network shares)
                            shutil.copy2(path, kept)
                except OSError as exc:
                    # nothing can be made in its folder (a file written in place there):
                    # it cannot be restored, nor should it be removed
                    logger.debug("cannot keep %s aside: %s", path, exc)
                    return
        self._entries.append((path, kept))

    def undo(self) -> None:
        """Put back what was there before; what cannot be is left (and logged)."""
        for path, kept in reversed(self._entries):
            try:
                if kept is None:
                    path.unlink(missing_ok=True)
                elif path.exists() and os.path.samefile(kept, path):
                    kept.unlink()  # its write failed before replacing it: still the same file
                else:
                    _put_back(kept, path)
            except OSError as exc:
                logger.debug("could not restore %s: %s", path, exc)
                if kept is not None:
                    _discard(kept)
        for folder in reversed(self._folders):
            with contextlib.suppress(OSError):  # not empty: a file of the user's
                folder.rmdir()
        self._clear()

    def commit(self) -> None:
        for _, kept in self._entries:
            if kept is not None:
                _discard(kept)
        self._clear()

    def _clear(self) -> None:
        self._entries, self._seen, self._folders = [], set(), []


def _anothers_in_sticky_folder(path: Path) -> bool:
    """Whether ``path`` is another user's file in a sticky folder not ours (``/tmp``): we
    may not replace it or remove a name of it there, only write into it."""
    if not hasattr(os, "geteuid"):
        return False
    try:
        own, folder = os.lstat(path), os.stat(path.parent)
    except OSError:
        return False
    me = os.geteuid()
    return bool(folder.st_mode & stat.S_ISVTX) and me not in (own.st_uid, folder.st_uid, 0)


def _put_back(kept: Path, path: Path) -> None:
    """``kept`` back at ``path``: renamed over it, or, where ``path`` cannot be replaced (a
    bind-mounted file, another's file in a sticky folder), its content written into it."""
    try:
        os.replace(kept, path)
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.EXDEV, errno.EPERM) or not writable_file(path):
            raise
        _copy_into(kept, path)


@contextmanager
def joined(group: Rollback | None) -> Iterator[Rollback]:
    """``group``, for the caller to commit or undo with its other files; or, without one, a
    new :class:`Rollback` that this block commits, or undoes when it raises."""
    if group is not None:
        yield group
        return
    own = Rollback()
    with all_or_nothing(own):
        yield own


@contextmanager
def all_or_nothing(group: Rollback, *, keep_on_interrupt: bool = False) -> Iterator[None]:
    """Commit ``group`` when the block ends cleanly, undo it when it raises (but keep it on
    ``KeyboardInterrupt`` with ``keep_on_interrupt``)."""
    try:
        yield
    except KeyboardInterrupt:
        if keep_on_interrupt:
            group.commit()
        else:
            group.undo()
        raise
    except BaseException:
        group.undo()
        raise
    group.commit()


def unwritable_file(path: PathLike) -> tuple[int, str] | None:
    """``(errno, why)`` when ``path`` is an existing file (not a link, which is replaced)
    that may not be written: read-only (the user's way of keeping a file), on a read-only
    file system, or not ours to write; None otherwise."""
    path = user_path(path)
    if path.is_symlink() or not path.is_file() or os.access(path, os.W_OK):
        return None
    if _on_read_only_file_system(path):
        return errno.EROFS, "it is on a read-only file system"
    if not os.stat(path).st_mode & 0o222:
        return errno.EACCES, ("the file is read-only (its permissions allow no writing): make "
                              "it writable or remove it to replace it")
    return errno.EACCES, "no permission to write the file"


def _on_read_only_file_system(path: PathLike) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # (no statvfs on Windows)
        return False


def _keep_mode_and_owner(tmp: Path, existing: os.stat_result) -> None:
    """Give the new file the permissions (and, where allowed, the owner) of the one it
    replaces: a private file must not become readable by all."""
    os.chmod(tmp, stat.S_IMODE(existing.st_mode))
    if hasattr(os, "chown"):
        own = os.stat(tmp)
        if (own.st_uid, own.st_gid) != (existing.st_uid, existing.st_gid):
            try:
                os.chown(tmp, existing.st_uid, existing.st_gid)
            except OSError:  # only root may give a file away; its group, a member may
                with contextlib.suppress(OSError):
                    os.chown(tmp, -1, existing.st_gid)


def _copy_into(tmp: Path, path: Path) -> None:
    """Write ``tmp``'s content into the existing file ``path`` (same file: its inode, mode
    and owner), one writer at a time where the system locks files, then remove ``tmp``."""
    with open(tmp, "rb") as source, open(path, "r+b") as target:
        if fcntl is not None:
            fcntl.flock(target.fileno(), fcntl.LOCK_EX)  # released when closed
        shutil.copyfileobj(source, target)
        target.truncate()
    _discard(tmp)


def _discard(tmp: Path) -> None:
    # On a read-only file system the unlink fails too: that second error would hide the first.
    try:
        tmp.unlink(missing_ok=True)
    except OSError as exc:
        logger.debug("could not remove %s: %s", tmp, exc)


# What a failing write raises without naming any file: a full disk or quota, a read-only
# file system, a file past the size limit.
# (Not EIO: a read of another file, such as the audio copied into a video, can raise it.)
_WRITE_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EFBIG")
                          if hasattr(errno, name))


def output_error(exc: OSError, tmp: PathLike, path: PathLike) -> OSError | None:
    """The error to show for ``exc``, raised while writing ``path`` through its temporary
    file ``tmp``: an ``OSError`` naming ``path`` (the file the caller asked for) instead of
    the hidden temporary name, or instead of no name at all (``No space left on device``);
    None when ``exc`` is about another file, or is not a write error."""
    if not exc.errno:
        return None
    if exc.filename is None:
        if exc.errno not in _WRITE_ERRNOS:
            return None
    elif Path(tmp).name not in str(exc.filename):
        return None
    reason = exc.strerror or os.strerror(exc.errno)
    return OSError(exc.errno, f"cannot write {str(path)!r}: {reason}")


def extension_problem(path: Path, kind: str, extensions, more: str = "") -> str:
    """Why ``path`` has no usable ``kind`` extension, for an error message: a name that is
    only an extension (``.mp4``: a hidden file's name, which has none) is said to be so;
    else the ``extensions`` to use (and ``more`` after them)."""
    name = path.name
    if not path.suffix and name.startswith(".") and name.strip(".") and "." not in name[1:]:
        example = name if name.lower() in extensions else next(iter(extensions))
        return (f"{name!r} is a file name with no extension (a name starting with a dot "
                f"has none); name the file, e.g. 'output{example}'")
    return f"unknown {kind}extension {path.suffix!r}; use one of {', '.join(extensions)}{more}"


def name_too_long(path: PathLike) -> str | None:
    """``"'x...': the file name is 300 bytes long, more than the 255 ..."`` when a part of
    ``path`` passes :data:`NAME_MAX` bytes (asking the system about it would raise)."""
    path = Path(path)
    for part in reversed(path.parts):
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            what = ("the file name" if part == path.name
                    else f"the folder name {shortened(part, 40)!r} in it")
            return (f"{str(path)!r}: {what} is {size} bytes long, more than the {NAME_MAX} a "
                    "file name may have")
    return None


def output_path_problem(path: PathLike, *, folder: bool = False) -> str | None:
    """Why nothing can be written at ``path`` (a file, or with ``folder`` a folder to create
    or fill), found before any work is done: ``"'x': it is a folder"``, ``"'x': 'a' is a
    file, not a folder"``; None when nothing stands in the way. (Permissions are left to the
    write itself, which names the path.)"""
    path = user_path(path)
    too_long = name_too_long(path)
    if too_long:
        return too_long
    if path.exists():
        if folder and not path.is_dir():
            return f"{str(path)!r}: it is a file, not a folder"
        if not folder and path.is_dir():
            return f"{str(path)!r}: it is a folder"
        if not folder and not path.is_file():  # /dev/stdout, a pipe: would be replaced
            return (f"{str(path)!r}: it is not a regular file (a device, a pipe or a "
                    "socket); name a file to write")
    if not folder:
        stream = _stream_link(path)
        if stream:  # /dev/stdout > file: the link itself would be replaced
            what = ("a standard stream or a device" if stream == os.path.abspath(path) else
                    f"a link to {stream!r} (a standard stream or a device)")
            return (f"{str(path)!r}: it is {what}, which an output would replace; name a "
                    "file to write")

    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{str(path)!r}: {str(parent)!r} is a file, not a folder"
            break
    return None


def _stream_link(path: Path) -> str | None:
    """The first link under /dev or /proc in the chain of links at ``path`` (``/dev/stdout``,
    or a link of one's own to ``/proc/self/fd/1``), or None: such links stand for streams
    and devices (tmpfs' /dev/shm aside)."""
    step = Path(os.path.abspath(path))
    for _ in range(40):  # the system's own limit on a chain of links
        if not step.is_symlink():
            return None
        text = str(step)
        if text.startswith(("/proc/", "/dev/")) and not text.startswith("/dev/shm/"):
            return text
        try:
            step = Path(os.path.abspath(step.parent / os.readlink(step)))
        except OSError:
            return None
    return None


def writable_file(path: PathLike) -> bool:
    """Whether ``path`` (through its links) is an existing file this process may write:
    :func:`atomic_path` then writes it even in a folder it may not write in."""
    path = user_path(path)  # (a link is replaced, in its folder; a hard-linked file is not
    return (not path.is_symlink() and path.is_file()  # written into, see atomic_path)
            and os.stat(path).st_nlink == 1 and os.access(path, os.W_OK))


def unwritable_folder(folder: PathLike) -> str | None:
    """Why nothing can be written in ``folder`` (or in the nearest existing folder above it,
    where it would be made): ``"'out': it is on a read-only file system"``, or no permission;
    None when it can be written, or when a file stands in the way (the write names it)."""
    folder = user_path(folder)
    existing = folder.absolute()
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent  # (os.path.exists: False for a name too long, no raise)
    if not os.path.isdir(existing) or os.access(existing, os.W_OK | os.X_OK):
        return None
    why = ("it is on a read-only file system" if _on_read_only_file_system(existing)
           else "no permission to write there")
    where = str(folder) if existing == folder.absolute() else f"{folder} (in {existing})"
    return f"{where!r}: {why}"


def write_bytes(path: PathLike, data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` atomically (see the module doc); return ``path``.

    The file is created with mode ``x`` so it honours the umask (unlike ``mkstemp``'s 0600).
    """
    path = user_path(path)
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data)
    return path


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; return ``path``."""
    return write_bytes(path, text.encode(encoding))
