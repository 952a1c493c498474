"""Every writer goes through pixellib.media.files: unique temporary names, nothing left behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def test_cli_coco_writers_do_not_collide(tmp_path):
    """Two runs writing the same COCO file at once: each write is whole, none fails (a fixed
    temporary name made one run's rename fail or publish the other's half-written file)."""
    from pixellib.cli.main import _write_coco

    path = tmp_path / "out" / "coco.json"
    record = {"images": [{"id": 1, "file_name": "a.jpg", "height": 2, "width": 3}],
              "annotations": []}
    names = [f"{k}.jpg" for k in range(200)]
    per_image = {name: record for name in names}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: _write_coco(path, per_image, names), range(32)))
    assert len(json.loads(path.read_text())["images"]) == 200
    assert [p.name for p in path.parent.iterdir()] == ["coco.json"]


def test_synthetic_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    import pickle

    from pixellib.checkpoint import synthetic

    target = tmp_path / "ckpt.pkl"
    target.write_bytes(b"previous")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pickle, "dump", fail)
    with pytest.raises(OSError, match="disk full"):
        synthetic.write_checkpoint(target, "resnet50", 0)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pkl"]


def test_writes_name_the_path_asked_for_not_the_temporary_file(tmp_path, monkeypatch):
    from pixellib.media import files

    blocker = tmp_path / "afile.txt"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match=r"afile.txt' is a file, not a folder"):
        files.write_bytes(blocker / "out.png", b"data")
    (tmp_path / "adir").mkdir()
    with pytest.raises(IsADirectoryError, match=r"'.*adir': it is a folder"):
        files.write_bytes(tmp_path / "adir", b"data")
    assert files.output_path_problem(tmp_path / "new" / "deeper" / "x.png") is None
    assert "is a file" in files.output_path_problem(blocker, folder=True)

    def refuse(path, mode="r", *args, **kwargs):  # what a read-only folder does to a write
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(PermissionError) as info:
        files.write_bytes(tmp_path / "out.png", b"data")
    assert str(tmp_path / "out.png") in str(info.value) and ".tmp" not in str(info.value)
    assert list((tmp_path).glob(".*")) == []  # nothing left behind


_FILE_SIZE_LIMIT = """
import resource, signal, sys
import numpy as np
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
from pixellib.media.images import write_image
from pixellib.media.writer import VideoWriter
noise = np.random.default_rng(0).integers(0, 255, (30, 240, 320, 3), dtype=np.uint8)
try:
    write_image(sys.argv[1] + "/photo.png", np.concatenate(noise[:8], axis=1))
except OSError as exc:
    print(exc)
try:
    with VideoWriter(sys.argv[1] + "/clip.mp4", 10, (320, 240)) as video:
        for frame in noise:
            video.write(frame)
except OSError as exc:
    print(exc)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX file size limit (RLIMIT_FSIZE)")
def test_a_write_that_runs_out_of_room_names_the_output(tmp_path):
    """A full disk said "[Errno 28] No space left on device" with no file at all, and a video
    named its hidden temporary file. A file size limit fails writes the same way, for real."""
    out = subprocess.run([sys.executable, "-c", _FILE_SIZE_LIMIT, str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines == [f"[Errno 27] cannot write {str(tmp_path / name)!r}: File too large"
                     for name in ("photo.png", "clip.mp4")], out.stdout
    assert list(tmp_path.iterdir()) == []  # nothing half-written, no temporary file


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX file size limit (RLIMIT_FSIZE)")
def test_without_pyav_a_video_that_runs_out_of_room_is_an_error_too(tmp_path):
    """OpenCV's VideoWriter, the fallback without PyAV, reports no write error: out of room,
    it published a file no player opens, and the run said it succeeded."""
    code = "import sys; sys.modules['av'] = None\n" + _FILE_SIZE_LIMIT.replace(
        'write_image(sys.argv[1] + "/photo.png", np.concatenate(noise[:8], axis=1))', "pass")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines() == [
        f"[Errno 5] cannot write {str(tmp_path / 'clip.mp4')!r}: OpenCV's video writer "
        "reported no error, but only 0 of the 30 frames written can be read back"]
    assert list(tmp_path.iterdir()) == []
    # room enough: the fallback's video is whole, and kept
    code = code.replace("resource.setrlimit", "# resource.setrlimit")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr[-2000:]
    import cv2

    capture = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 30
    capture.release()


def test_a_read_only_folder_gives_the_write_error_not_the_cleanups(tmp_path, monkeypatch):
    """On a read-only file system removing the temporary file fails as well: that second
    error replaced the first, naming the hidden temporary file."""
    from pathlib import Path

    from pixellib.media import files

    def read_only(path, mode="r", *args, **kwargs):
        raise OSError(30, "Read-only file system", str(path))

    def unlink(self, missing_ok=False):
        raise OSError(30, "Read-only file system", str(self))

    monkeypatch.setattr("builtins.open", read_only)
    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(OSError) as info:
        files.write_bytes(tmp_path / "out.png", b"data")
    assert str(info.value) == f"[Errno 30] cannot write {str(tmp_path / 'out.png')!r}: " \
                              "Read-only file system"
    assert info.value.__cause__.errno == 30 and info.value.__context__ is info.value.__cause__


def test_names_up_to_the_file_system_limit_are_written_and_longer_ones_named(tmp_path):
    """The hidden temporary name added 18 bytes: a legal 240-byte name could never be
    written ("File name too long", about a name that was not)."""
    import numpy as np

    from pixellib.errors import InvalidArgumentError
    from pixellib.media.files import NAME_MAX, output_path_problem, temporary_name, write_text
    from pixellib.media.images import write_image

    image = np.zeros((4, 4, 3), np.uint8)
    for name in ("M" * 251 + ".jpg", "é" * 125 + ".png"):  # 255 bytes
        path = tmp_path / name
        assert len(temporary_name(path).name.encode()) <= NAME_MAX
        assert write_image(path, image) == path and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["M" * 251 + ".jpg", "é" * 125 + ".png"])
    too_long = tmp_path / ("M" * 252 + ".jpg")
    assert "256 bytes long, more than the 255" in output_path_problem(too_long)
    with pytest.raises(InvalidArgumentError, match="256 bytes long"):
        write_image(too_long, image)
    deep = tmp_path / ("D" * 300) / "x.jpg"  # a folder name too long: said, not raised
    assert "the folder name 'DDD" in output_path_problem(deep)
    with pytest.raises(InvalidArgumentError, match="300 bytes long"):
        write_image(deep, image)
    with pytest.raises(OSError, match="257 bytes long") as caught:
        write_text(too_long.with_suffix(".json"), "{}")
    assert caught.value.errno == __import__("errno").ENAMETOOLONG


def test_a_loop_of_links_is_named_not_a_runtime_error(tmp_path):
    """Path.resolve() raised RuntimeError on a loop (Python < 3.13): every place comparing
    an output with its input crashed with a traceback."""
    from pixellib.errors import InputNotFoundError
    from pixellib.media.files import link_problem, real_path
    from pixellib.media.images import read_image

    (tmp_path / "a.jpg").symlink_to("b.jpg")
    (tmp_path / "b.jpg").symlink_to("a.jpg")
    (tmp_path / "gone.jpg").symlink_to("nowhere.jpg")
    assert real_path(tmp_path / "a.jpg").parent == tmp_path.resolve()
    assert link_problem(tmp_path / "a.jpg") == "a loop of symbolic links"
    assert link_problem(tmp_path / "gone.jpg") == "a broken link (to 'nowhere.jpg')"
    with pytest.raises(InputNotFoundError, match="a.jpg' is a loop of symbolic links"):
        read_image(tmp_path / "a.jpg")


def test_a_group_keeps_the_earlier_files_until_it_commits_or_puts_them_back(tmp_path):
    from pixellib.media.files import Rollback, all_or_nothing, write_bytes

    folder = tmp_path / "objects"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"earlier a")
    (folder / "stale.png").write_bytes(b"earlier stale")
    group = Rollback()
    with pytest.raises(OSError, match="full"), all_or_nothing(group):
        group.remove(folder / "stale.png")
        for name in ("a.png", "b.png"):
            group.before_write(folder / name)
            write_bytes(folder / name, b"new " + name.encode())
        group.before_write(folder / "c.png")
        raise OSError(28, "disk full")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
        "a.png": b"earlier a", "stale.png": b"earlier stale"}  # nothing hidden left either
    with all_or_nothing(group):
        group.remove(folder / "stale.png")
        group.before_write(folder / "a.png")
        write_bytes(folder / "a.png", b"new a")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {"a.png": b"new a"}
    # a video's group keeps nothing aside: undone, what it wrote is gone
    video = Rollback(keep_earlier=False)
    with pytest.raises(KeyboardInterrupt), all_or_nothing(video):
        video.before_write(folder / "a.png")
        write_bytes(folder / "a.png", b"frame 1")
        assert [p.name for p in folder.iterdir()] == ["a.png"]
        raise KeyboardInterrupt
    assert list(folder.iterdir()) == []


_IN_A_STICKY_FOLDER = """
import sys
from pathlib import Path
from pixellib.media.files import Rollback, all_or_nothing, write_bytes
theirs = Path(sys.argv[1])
group = Rollback()
try:
    with all_or_nothing(group):
        group.before_write(theirs)
        write_bytes(theirs, b"ours")
        raise OSError(28, "disk full")
except OSError as exc:
    print(exc)
"""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="gives files to other users")
def test_a_group_puts_back_another_users_file_and_writes_in_place_in_a_sticky_folder(tmp_path):
    """Another user's file: in a plain folder it is replaced, so it is kept aside and put back
    like any other; in a sticky folder (/tmp) it can only be written in place, and a link
    kept to it blocked that write and could not be removed."""
    from pixellib.media.files import Rollback, all_or_nothing, write_bytes

    theirs = tmp_path / "theirs.jpg"
    theirs.write_bytes(b"earlier")
    os.chown(theirs, 4242, 4242)
    group = Rollback()
    with pytest.raises(OSError), all_or_nothing(group):
        group.before_write(theirs)
        write_bytes(theirs, b"new half")
        raise OSError(28, "disk full")
    assert [p.name for p in tmp_path.iterdir()] == ["theirs.jpg"]
    assert theirs.read_bytes() == b"earlier"

    import shutil
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="pixellib-sticky-"))  # reachable by another user
    try:
        os.chmod(shared, 0o1777)
        theirs = shared / "theirs.jpg"
        theirs.write_bytes(b"earlier")
        os.chown(theirs, 4242, 4242)
        os.chmod(theirs, 0o666)
        out = subprocess.run(["setpriv", "--reuid", "5151", "--regid", "5151",
                              "--clear-groups", sys.executable, "-c", _IN_A_STICKY_FOLDER,
                              str(theirs)], capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert out.returncode == 0 and out.stdout.strip() == "[Errno 28] disk full", (
            out.stdout + out.stderr)
        assert theirs.read_bytes() == b"ours"  # written in place (it could not be put back)
        assert [p.name for p in shared.iterdir()] == ["theirs.jpg"]
        assert theirs.stat().st_nlink == 1
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_file_that_cannot_be_replaced_is_put_back_by_writing_into_it(tmp_path, monkeypatch):
    """A bind-mounted output (rename onto it fails with EBUSY) is written in place; undone,
    its earlier content was not put back and a hidden copy stayed beside it."""
    import errno

    from pixellib.media import files

    out = tmp_path / "out.jpg"
    out.write_bytes(b"earlier run")
    real_replace = os.replace

    def busy_onto_out(src, dst):
        if os.fspath(dst) == os.fspath(out):
            raise OSError(errno.EBUSY, "Device or resource busy", os.fspath(dst))
        return real_replace(src, dst)

    def cross_device(src, dst, *args, **kwargs):  # a bind-mounted file is another mount
        raise OSError(errno.EXDEV, "Invalid cross-device link", os.fspath(src))

    monkeypatch.setattr(files.os, "replace", busy_onto_out)
    monkeypatch.setattr(files.os, "link", cross_device)
    group = files.Rollback()
    with pytest.raises(OSError, match="full"), files.all_or_nothing(group):
        group.before_write(out)
        files.write_bytes(out, b"new half")  # in place, as for a bind mount
        assert out.read_bytes() == b"new half"
        raise OSError(28, "disk full")
    assert out.read_bytes() == b"earlier run"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jpg"]
