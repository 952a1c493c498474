"""Every writer goes through pixellib.media.files: unique temporary names, nothing left behind."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest


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
