"""The ``pixellib`` command line, through ``main([...])`` on temporary folders.

Segment tests share one synthetic ResNet-50 checkpoint per session and run ``--speed rapid``
on images about 200x150, so each call takes about a second.
"""
from __future__ import annotations

import functools
import glob
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from pixellib.cli import main

ROOT = Path(__file__).resolve().parents[2]
PHOTO_DIRS = [ROOT / "tests" / "data" / "images"]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def checkpoint(r50_checkpoint) -> Path:
    """The session's synthetic ResNet-50 checkpoint (conftest.py writes it once)."""
    return r50_checkpoint


@pytest.fixture(scope="session")
def photos() -> list[np.ndarray]:
    """Three small BGR photos (tests/data/images)."""
    for folder in PHOTO_DIRS:
        files = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
        if files:
            images = [cv2.imread(str(f)) for f in files[:3]]
            return [cv2.resize(im, (200, 150), interpolation=cv2.INTER_AREA) for im in images]
    rng = np.random.default_rng(0)
    out = []
    for k in range(3):
        im = np.full((150, 200, 3), 40 * k + 60, np.uint8)
        cv2.circle(im, (100, 75), 40, (30, 160, 220), -1)
        out.append(np.clip(im + rng.integers(0, 30, im.shape), 0, 255).astype(np.uint8))
    return out


@pytest.fixture
def run(checkpoint, capsys, monkeypatch, tmp_path):
    """``run(*args)`` -> (exit code, stdout, stderr) of ``pixellib segment ... --speed rapid``."""
    monkeypatch.chdir(tmp_path)

    def _run(*args: str, model: str | None = None,
             confidence: str | None = "0.5") -> tuple[int, str, str]:
        argv = ["segment", *map(str, args)]
        for option, value in (("--model", model or str(checkpoint)), ("--speed", "rapid"),
                              ("--confidence", confidence)):  # unless the test gives its own
            if value is not None and not any(a == option or a.startswith(option + "=")
                                             for a in argv):
                argv += [option, value]
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture
def folder(tmp_path, photos) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    for k, im in enumerate(photos[:2]):
        cv2.imwrite(str(d / f"photo{k}.jpg"), im)
    return d


def _outputs(folder: Path) -> list[str]:
    """The names in a batch output folder, less its record of finished outputs."""
    from pixellib.cli.jobs import RECORD_NAME

    return sorted(p.name for p in folder.iterdir() if p.name != RECORD_NAME)


def _ctrl_c_after(monkeypatch, images: int):
    """Ctrl-C as the ``images``-th image is counted; returns the function that stops it."""
    import importlib

    cli = importlib.import_module("pixellib.cli.main")  # the package's `main` is the function
    count, seen = cli._count_image, []

    def count_then_stop(job, det, args, stats):
        count(job, det, args, stats)
        seen.append(job)
        if len(seen) == images:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_count_image", count_then_stop)
    return lambda: monkeypatch.setattr(cli, "_count_image", count)


def _cli(*argv: str, capsys) -> tuple[int, str, str]:
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixellib: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def _summary(out: str) -> dict[str, int]:
    line = out.strip().splitlines()[-1]
    found = re.findall(r"(\d+) (image|object|failed|skipped)s?\b", line)
    return {k if k in ("failed", "skipped") else k + "s": int(v) for v, k in found}


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["segment"],
        ["segment", "a.jpg", "--speed", "slow"],
        ["segment", "a.jpg", "--confidence", "1.5"],
        ["segment", "a.jpg", "--confidence", "high"],
        ["segment", "a.jpg", "--classes", "person,unicorn"],
        ["segment", "a.jpg", "--extract", "circle"],
        ["download", "resnet18"],
        ["info"],
        ["convert", "only-one-arg"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "segment" in capsys.readouterr().out


def test_version(capsys):
    from pixellib import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"pixellib {__version__}")


def test_a_folder_of_videos_says_folders_give_images(tmp_path, capsys):
    folder = tmp_path / "vids"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"not read")
    (folder / "b.MKV").write_bytes(b"not read")
    code, _, err = _cli("segment", folder, capsys=capsys)
    assert code == 1
    _assert_one_line_error(err, "no images found in", "a folder gives its images only",
                           "2 video(s)", str(folder / "*.mp4"))


def test_missing_input(tmp_path, capsys):
    code, _, err = _cli("segment", tmp_path / "nope.jpg", capsys=capsys)
    assert code == 1
    _assert_one_line_error(err, "nope.jpg")


def test_glob_matching_nothing(tmp_path, capsys):
    code, _, err = _cli("segment", str(tmp_path / "*.jpg"), capsys=capsys)
    assert code == 1
    _assert_one_line_error(err, "*.jpg")


def test_missing_model(folder, tmp_path, capsys):
    code, _, err = _cli("segment", folder / "photo0.jpg", "--model", tmp_path / "no.pkl",
                        capsys=capsys)
    assert code == 1
    _assert_one_line_error(err, "no.pkl", "resnet50")
    assert not (folder / "photo0_segmented.jpg").exists()


def test_resnet50_not_cached_and_unreachable(folder, tmp_path, monkeypatch, capsys):
    home = tmp_path / "cache"
    monkeypatch.setenv("PIXELLIB_HOME", str(home))
    monkeypatch.setenv("PIXELLIB_MODEL_URL_RESNET50", "http://127.0.0.1:9/gone.pkl")
    code, _, err = _cli("segment", folder / "photo0.jpg", capsys=capsys)
    assert code == 1
    notice, error = err.strip().splitlines()
    assert notice.startswith("downloading resnet50 from http://127.0.0.1:9/gone.pkl")
    _assert_one_line_error(error, "http://127.0.0.1:9/gone.pkl", "or copy it to '",
                           str(home / "pointrend_resnet50.pkl"))  # where it is looked for
    assert not home.exists() or list(home.iterdir()) == []


def test_python_dash_m(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([sys.executable, "-m", "pixellib", "--help"], capture_output=True,
                        text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "segment" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "pixellib", "segment", str(tmp_path / "x.jpg")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1
    _assert_one_line_error(bad.stderr, "x.jpg")


# ----------------------------------------------------------------------------- models


def test_info(checkpoint, capsys):
    code, out, err = _cli("info", checkpoint, capsys=capsys)
    assert code == 0, err
    assert "architecture: resnet50" in out
    params = int(re.search(r"parameters: ([\d,]+)", out).group(1).replace(",", ""))
    assert 40_000_000 < params < 70_000_000
    assert "renamed keys: 0" in out
    assert "ignored keys: 5" in out
    assert "proposal_generator.anchor_generator.cell_anchors.0" in out


def test_info_into_a_closed_pipe_stops_quietly(checkpoint):
    """`pixellib info x | head -1`: the reader leaves; it printed "error: Broken pipe"."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pixellib", "info", str(checkpoint)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # before the command writes anything
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err
    assert b"Broken pipe" not in err and b"Traceback" not in err and b"Exception" not in err


def test_info_missing_file(tmp_path, capsys):
    code, _, err = _cli("info", tmp_path / "missing.pkl", capsys=capsys)
    assert code == 1
    _assert_one_line_error(err, "missing.pkl")


def test_info_garbage_file(tmp_path, capsys):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"this is not a pickle")
    code, _, err = _cli("info", bad, capsys=capsys)
    assert code == 1
    _assert_one_line_error(err, "bad.pkl")


def test_convert_then_info(checkpoint, tmp_path, capsys):
    dst = tmp_path / "r50.safetensors"
    code, out, err = _cli("convert", checkpoint, dst, capsys=capsys)
    assert code == 0, err
    assert dst.is_file() and str(dst) in out
    code, out, _ = _cli("info", dst, capsys=capsys)
    assert code == 0 and "architecture: resnet50" in out


def test_convert_refuses_other_suffix(checkpoint, tmp_path, capsys):
    code, _, err = _cli("convert", checkpoint, tmp_path / "out.pkl", capsys=capsys)
    assert code == 1
    _assert_one_line_error(err, ".safetensors")


def test_download_from_local_server_then_cached(checkpoint, tmp_path, monkeypatch, capsys):
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(checkpoint.parent))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    home = tmp_path / "cache"
    monkeypatch.setenv("PIXELLIB_HOME", str(home))
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{checkpoint.name}"
        code, out, err = _cli("download", "resnet50", "--url", url, capsys=capsys)
        assert code == 0, err
        assert sorted(p.name for p in home.iterdir()) == ["pointrend_resnet50.pkl"]
        assert (home / "pointrend_resnet50.pkl").stat().st_size == checkpoint.stat().st_size
        code, out, _ = _cli("download", "resnet50", "--url", url, capsys=capsys)
        assert code == 0 and "already downloaded" in out
        # The wrong architecture for the name is refused and leaves the cache as it was.
        code, _, err = _cli("download", "resnet101", "--url", url, capsys=capsys)
        assert code == 1
        # stderr: the "downloading" line and the progress bar, then the error.
        _assert_one_line_error(err.strip().splitlines()[-1], url, "resnext101_32x8d")
        assert sorted(p.name for p in home.iterdir()) == ["pointrend_resnet50.pkl"]
    finally:
        httpd.shutdown()
        httpd.server_close()


# ----------------------------------------------------------------------------- segment
# The real model (synthetic checkpoint) runs in the end-to-end tests of this first group; the
# tests of naming, filtering and batch behaviour use FakePredictor, which answers instantly.


def test_single_image_from_cache_without_network(run, folder, checkpoint, tmp_path,
                                                 monkeypatch):
    home = tmp_path / "cache"
    home.mkdir()
    os.symlink(checkpoint, home / "pointrend_resnet50.pkl")
    monkeypatch.setenv("PIXELLIB_HOME", str(home))
    monkeypatch.setenv("PIXELLIB_MODEL_URL_RESNET50", "http://127.0.0.1:9/never-used.pkl")
    code, out, err = run(folder / "photo0.jpg", "--boxes", model="resnet50")
    assert code == 0, err
    result = cv2.imread(str(folder / "photo0_segmented.jpg"))  # default: beside the input
    assert result is not None and result.shape == (150, 200, 3)
    assert not np.array_equal(result, cv2.imread(str(folder / "photo0.jpg")))
    summary = _summary(out)
    assert summary["images"] == 1 and summary["failed"] == 0 and summary["objects"] > 0


def test_folder_with_bad_file(run, folder, tmp_path):
    (folder / "photo1.jpg").unlink()  # one good image keeps the real model's time down
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image, not picked up")
    out_dir = tmp_path / "out"
    code, out, err = run(folder, "-o", out_dir)
    assert code == 0, err
    assert _outputs(out_dir) == ["photo0.jpg"]
    assert "broken.jpg" in err and "warning" in err and "Traceback" not in err
    summary = _summary(out)
    assert summary["images"] == 1 and summary["failed"] == 1


def test_video(run, tmp_path, photos):
    src = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (200, 150))
    for im in photos[:2]:
        writer.write(im)
    writer.release()
    code, out, err = run(src)
    assert code == 0, err
    capture = cv2.VideoCapture(str(tmp_path / "clip_segmented.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)
    capture.release()
    assert frames == 2
    assert "1 video (2 frames)" in out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("name", ["phone.m4v", "camcorder.ts"])
def test_other_video_containers_are_read_as_videos(fake, tmp_path, photos, name):
    """.m4v, .3gp, MPEG-TS... are videos (they were taken for images: 'cannot decode')."""
    import av

    src = tmp_path / name
    with av.open(str(src), "w", format="mp4" if name.endswith(".m4v") else "mpegts") as out:
        stream = out.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 200, 150, "yuv420p"
        for i, im in enumerate(photos[:2]):
            frame = av.VideoFrame.from_ndarray(im, format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    code, out, err = fake(src, "-o", tmp_path / "out.mp4")
    assert code == 0, err
    assert "1 video (2 frames)" in out
    with av.open(str(tmp_path / "out.mp4")) as result:
        assert len(list(result.decode(video=0))) == 2


class FakePredictor:
    """Stands in for pixellib.predictor.Predictor: three fixed detections per image."""

    created: list[dict] = []
    CLASSES = (25, 0, 15)  # umbrella, person, cat

    def __init__(self, model, **kwargs):
        assert Path(model).is_file()
        FakePredictor.created.append({"model": Path(model), **kwargs})
        self.device = kwargs.get("device", "cpu")

    def __call__(self, image, classes=None):
        from pixellib.structures import Detections

        h, w = image.shape[:2]
        boxes = np.array([[0, 0, w / 2, h / 2], [w / 4, h / 4, w, h], [1.5, 2.5, 9.9, 8.2]],
                         np.float32)
        masks = np.zeros((3, h, w), bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
            # Smaller than the box (one row off the top, two columns off the left), so that
            # mask and box extraction give different crops.
            masks[k, y0 + 1:y1, x0 + 2:x1] = True
        det = Detections(boxes, np.array([0.9, 0.8, 0.7], np.float32),
                         np.array(self.CLASSES, np.int64), masks, (h, w))
        return det if classes is None else det.with_classes(classes)


@pytest.fixture
def fake(run, monkeypatch):
    """``run`` with the model replaced by FakePredictor."""
    import pixellib.predictor

    FakePredictor.created = []
    monkeypatch.setattr(pixellib.predictor, "Predictor", FakePredictor)
    return run


def test_options_reach_the_predictor(fake, folder, checkpoint, capsys):
    code = main(["segment", str(folder / "photo0.jpg"), "--model", str(checkpoint),
                 "--speed", "fast", "--confidence", "0.25", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert FakePredictor.created == [
        {"model": checkpoint, "speed": "fast", "confidence": 0.25, "device": "cpu",
         "heap_reuse": True}  # the command owns its process
    ]


def test_bad_device_is_a_user_error(fake, folder):
    code, _, err = fake(folder / "photo0.jpg", "--device", "gpu7")
    assert code == 1
    _assert_one_line_error(err, "gpu7")


@pytest.mark.parametrize("overlap", ["0", "1"])
def test_strict_and_all_failed(fake, folder, tmp_path, monkeypatch, overlap):
    """Also with reading and writing on background threads (PIXELLIB_OVERLAP=1): the same
    failures, named, and the same outputs."""
    monkeypatch.setenv("PIXELLIB_OVERLAP", overlap)
    (folder / "empty.png").write_bytes(b"")
    code, out, err = fake(folder, "-o", tmp_path / "strict", "--strict")
    assert code == 1  # any failure with --strict; the good files are still written
    assert len(_outputs(tmp_path / "strict")) == 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.png").write_bytes(os.urandom(100))
    code, out, err = fake(bad, "-o", tmp_path / "out")
    assert code == 1  # nothing succeeded
    assert "a.jpg" in err and "b.png" in err
    assert _summary(out)["failed"] == 2 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("workers", "overlap"), [("1", "0"), ("1", "1"), ("2", "0")])
def test_glob_classes_coco(fake, folder, tmp_path, monkeypatch, workers, overlap):
    """COCO ids follow the input order, also with two images in flight or with reading and
    writing overlapping the model."""
    monkeypatch.setenv("PIXELLIB_BATCH_WORKERS", workers)
    monkeypatch.setenv("PIXELLIB_OVERLAP", overlap)
    (folder / "notes.txt").write_text("matched by the glob, but not an image")
    coco = tmp_path / "all.json"
    code, out, err = fake(str(folder / "*"), "-o", tmp_path / "all", "--coco", coco)
    assert code == 0, err
    assert _outputs(tmp_path / "all") == ["photo0.jpg", "photo1.jpg"]
    data = json.loads(coco.read_text())
    assert [im["file_name"] for im in data["images"]] == [
        str(folder / "photo0.jpg"), str(folder / "photo1.jpg")]
    assert [a["id"] for a in data["annotations"]] == list(range(1, 7))
    assert [a["category_id"] for a in data["annotations"]] == [28, 1, 17] * 2
    assert len(data["categories"]) == 80
    assert _summary(out)["objects"] == 6

    code, out, err = fake(str(folder / "photo?.jpg"), "-o", tmp_path / "some", "--coco", coco,
                          "--classes", "person,cat,traffic_light")
    assert code == 0, err
    assert [a["category_id"] for a in json.loads(coco.read_text())["annotations"]] == [1, 17] * 2
    assert _summary(out)["objects"] == 4


@pytest.mark.parametrize(
    ("mode", "prefix"), [("mask", "segmented_object"), ("box", "object_extract")]
)
def test_extract(fake, folder, tmp_path, mode, prefix):
    code, out, err = fake(folder / "photo0.jpg", "-o", tmp_path / "res.jpg", "--extract", mode)
    assert code == 0, err
    extracts = sorted((tmp_path / "res_extracts").iterdir())
    assert [p.name for p in extracts] == [f"{prefix}_{k}.jpg" for k in (1, 2, 3)]
    shapes = [cv2.imread(str(p)).shape[:2] for p in extracts]
    # Box 1 is (0, 0, 100, 75) and box 3 (1.5, 2.5, 9.9, 8.2), truncated to (1, 2, 9, 8); each
    # mask is its box less one row at the top and two columns at the left.
    if mode == "mask":
        assert shapes[0] == (74, 98) and shapes[2] == (5, 6)
    else:
        assert shapes[0] == (75, 100) and shapes[2] == (6, 8)


def test_skip_existing(fake, folder, tmp_path):
    out_dir = tmp_path / "out"
    cv2.imwrite(str(folder / "photo2.jpg"), np.zeros((20, 30, 3), np.uint8))
    assert fake(folder, "-o", out_dir)[0] == 0
    before = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    (out_dir / "photo1.jpg").unlink()
    code, out, err = fake(folder, "-o", out_dir, "--skip-existing")
    assert code == 0, err
    summary = _summary(out)
    assert summary["images"] == 1 and summary["skipped"] == 2
    after = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    assert after["photo0.jpg"] == before["photo0.jpg"] and "photo1.jpg" in after
    # Nothing left to do: succeeds without even loading the model.
    FakePredictor.created.clear()
    code, out, _ = fake(folder, "-o", out_dir, "--skip-existing")
    assert code == 0 and _summary(out)["skipped"] == 3
    assert FakePredictor.created == []


def test_skip_existing_redoes_an_output_that_another_input_made(fake, photos, tmp_path):
    """Batch names follow the input order (photo.jpg, photo_2.jpg): a photo arriving in the
    first folder took the name of the second folder's output, which --skip-existing then
    took as done (the new photo never segmented, the other one twice). The folder's record
    says which input and settings made each output."""
    d1, d2, out, fresh = (tmp_path / n for n in ("d1", "d2", "out", "fresh"))
    d1.mkdir()
    d2.mkdir()
    cv2.imwrite(str(d2 / "photo.jpg"), photos[1])
    cv2.imwrite(str(d2 / "other.jpg"), photos[2])
    assert fake(d1, d2, "-o", out)[0] == 0
    cv2.imwrite(str(d1 / "photo.jpg"), photos[0])  # a new photo, listed first
    code, stdout, err = fake(d1, d2, "-o", out, "--skip-existing")
    assert code == 0 and "1 existing output(s) were not made from their input" in err, err
    summary = _summary(stdout)
    assert summary["images"] == 2 and summary["skipped"] == 1  # other.jpg is still its own
    assert fake(d1, d2, "-o", fresh)[0] == 0
    for name in ("photo.jpg", "photo_2.jpg", "other.jpg"):
        assert (out / name).read_bytes() == (fresh / name).read_bytes(), name
    code, stdout, err = fake(d1, d2, "-o", out, "--skip-existing")
    assert code == 0 and _summary(stdout)["skipped"] == 3 and "made again" not in err
    # other options, other pictures: made again
    code, stdout, err = fake(d1, d2, "-o", out, "--skip-existing", "--boxes")
    assert code == 0 and _summary(stdout)["images"] == 3 and "3 existing output(s)" in err
    # a folder without a record (written by hand, or by an older pixellib): by name, as before
    (out / ".pixellib-done.jsonl").unlink()
    code, stdout, _ = fake(d1, d2, "-o", out, "--skip-existing")
    assert code == 0 and _summary(stdout)["skipped"] == 3


def test_an_interrupted_run_keeps_the_coco_entries_of_what_it_finished(fake, folder, tmp_path,
                                                                        monkeypatch, capsys):
    """Ctrl-C after two of three images wrote no --coco file at all: every detection of the
    run was lost, and resuming could not get them back."""
    out_dir, coco = tmp_path / "out", tmp_path / "all.json"
    cv2.imwrite(str(folder / "photo2.jpg"), np.zeros((20, 30, 3), np.uint8))
    assert fake(folder, "-o", tmp_path / "whole", "--coco", tmp_path / "whole.json")[0] == 0
    whole = json.loads((tmp_path / "whole.json").read_text())
    resume = _ctrl_c_after(monkeypatch, 2)
    code, _, err = fake(folder, "-o", out_dir, "--coco", coco)
    assert code == 130 and "holds the 2 image(s) finished before the stop" in err, err
    assert len(json.loads(coco.read_text())["images"]) == 2
    resume()
    code, stdout, err = fake(folder, "-o", out_dir, "--coco", coco, "--skip-existing")
    assert code == 0, err
    assert json.loads(coco.read_text()) == whole


def test_the_record_takes_odd_names_spellings_and_older_folders(fake, folder, tmp_path):
    """A file name that is not UTF-8 crashed the batch when recorded; the same folder spelt
    with '..' had every output made again; a folder written before the record existed kept
    its outputs for one run, then lost them to the record."""
    out = tmp_path / "out"
    odd = os.fsdecode(b"caf\xe9.jpg")
    (folder / odd).write_bytes((folder / "photo0.jpg").read_bytes())
    code, stdout, err = fake(folder, "-o", out)
    assert code == 0 and _summary(stdout)["images"] == 3, err
    assert (out / odd).exists()
    roundabout = tmp_path / "elsewhere" / ".." / "in"
    (tmp_path / "elsewhere").mkdir()
    code, stdout, err = fake(roundabout, "-o", out, "--skip-existing")
    assert code == 0 and _summary(stdout)["skipped"] == 3 and "made again" not in err, err
    (out / ".pixellib-done.jsonl").unlink()  # as if an older pixellib had written the folder
    for _ in range(2):
        code, stdout, err = fake(folder, "-o", out, "--skip-existing")
        assert code == 0 and _summary(stdout)["skipped"] == 3 and "made again" not in err


def test_an_interrupted_rerun_keeps_the_coco_entries_it_did_not_reach(fake, folder, tmp_path,
                                                                      monkeypatch):
    """A finished run's COCO file, then a run into the same file stopped after one image:
    the file kept only that image (the others' entries lost for good)."""
    out_dir, coco = tmp_path / "out", tmp_path / "all.json"
    cv2.imwrite(str(folder / "photo2.jpg"), np.zeros((20, 30, 3), np.uint8))
    assert fake(folder, "-o", out_dir, "--coco", coco)[0] == 0
    whole = json.loads(coco.read_text())
    resume = _ctrl_c_after(monkeypatch, 1)
    assert fake(folder, "-o", out_dir, "--coco", coco)[0] == 130
    assert json.loads(coco.read_text()) == whole
    resume()
    code, stdout, err = fake(folder, "-o", out_dir, "--coco", coco, "--skip-existing")
    assert code == 0 and _summary(stdout)["skipped"] == 3, err
    assert json.loads(coco.read_text()) == whole


def test_nohup_keeps_a_hangup_ignored():
    """Under `nohup` SIGHUP is ignored from the start; the command took it over and a closed
    ssh session killed the run."""
    import importlib
    import signal

    cli = importlib.import_module("pixellib.cli.main")
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with cli._stop_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)  # ignored: nothing happens
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_skip_existing_keeps_the_coco_entries_of_the_skipped_inputs(fake, folder, tmp_path):
    """Finishing a run with --skip-existing --coco rewrote the COCO file with only the images
    segmented this time (a finished run's file became empty)."""
    out_dir, coco = tmp_path / "out", tmp_path / "all.json"
    cv2.imwrite(str(folder / "photo2.jpg"), np.zeros((20, 30, 3), np.uint8))
    assert fake(folder, "-o", out_dir, "--coco", coco)[0] == 0
    whole = json.loads(coco.read_text())
    assert len(whole["images"]) == 3 and len(whole["annotations"]) == 9
    (out_dir / "photo1.jpg").unlink()  # as if the first run had stopped there
    code, out, err = fake(folder, "-o", out_dir, "--coco", coco, "--skip-existing")
    assert code == 0 and _summary(out)["skipped"] == 2, err
    assert json.loads(coco.read_text()) == whole  # same entries, ids and order
    code, out, err = fake(folder, "-o", out_dir, "--coco", coco, "--skip-existing")
    assert code == 0 and _summary(out)["skipped"] == 3, err
    assert json.loads(coco.read_text()) == whole  # nothing left to do: the file is kept whole
    # A skipped input the file does not hold is named; a file that is not COCO is refused.
    partial = dict(whole, images=whole["images"][1:],
                   annotations=[a for a in whole["annotations"] if a["image_id"] != 1])
    coco.write_text(json.dumps(partial))
    code, out, err = fake(folder, "-o", out_dir, "--coco", coco, "--skip-existing")
    assert code == 0 and "has no entry for 1 skipped input(s)" in err and "photo0.jpg" in err
    assert [im["file_name"] for im in json.loads(coco.read_text())["images"]] == [
        str(folder / "photo1.jpg"), str(folder / "photo2.jpg")]
    coco.write_text("{}")
    code, _, err = fake(folder, "-o", out_dir, "--coco", coco, "--skip-existing")
    assert code == 1 and "is not a COCO file an earlier run wrote" in err
    assert coco.read_text() == "{}"


def test_a_rerun_keeps_the_coco_entries_of_the_inputs_that_failed_this_time(fake, folder,
                                                                           tmp_path):
    """An input that could not be read on a re-run keeps its earlier output, and so its
    earlier entry: the file was rewritten without it (empty when that was the only input)."""
    out_dir, coco = tmp_path / "out", tmp_path / "all.json"
    assert fake(folder, "-o", out_dir, "--coco", coco)[0] == 0
    whole = json.loads(coco.read_text())
    assert len(whole["images"]) == 2 and whole["annotations"]
    good = (folder / "photo0.jpg").read_bytes()
    (folder / "photo0.jpg").write_bytes(good[:300])  # cut short: this run cannot read it
    code, out, err = fake(folder, "-o", out_dir, "--coco", coco)
    assert code == 0 and _summary(out)["failed"] == 1 and "photo0.jpg" in err
    assert (out_dir / "photo0.jpg").is_file()  # its earlier output is left in place...
    assert json.loads(coco.read_text()) == whole  # ...and so is its entry, in input order
    # alone (every input failed, exit 1): the file, which holds this run's inputs, keeps it
    code, out, _ = fake(folder / "photo0.jpg", "-o", out_dir, "--coco", coco)
    assert code == 1
    assert json.loads(coco.read_text())["images"] == whole["images"][:1]
    # once it is gone, so is its entry
    (folder / "photo0.jpg").unlink()
    (out_dir / "photo0.jpg").unlink()
    assert fake(folder, "-o", out_dir, "--coco", coco)[0] == 0
    assert [im["file_name"] for im in json.loads(coco.read_text())["images"]] == [
        str(folder / "photo1.jpg")]


def test_a_folder_without_images_among_other_inputs_is_named(fake, folder, tmp_path):
    """Alone, a folder without images is an error; with a photo beside it, it was dropped
    without a word (exit 0, "0 failed")."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "nested" / "deeper" / "x.jpg"), np.zeros((8, 8, 3), np.uint8))
    code, out, err = fake(tmp_path / "empty", folder / "photo0.jpg", tmp_path / "nested",
                          "-o", tmp_path / "out")
    assert code == 0 and _summary(out)["images"] == 1
    assert "no images in folders" in err and "empty" in err and "nested" in err
    code, out, err = fake(folder / "photo0.jpg", "-o", tmp_path / "out")
    assert "no images in" not in err


def test_coco_file_must_not_be_an_input_an_output_or_the_model(fake, folder, tmp_path,
                                                               checkpoint):
    photo = folder / "photo0.jpg"
    before = photo.read_bytes()
    for args, said in (((photo, "-o", tmp_path / "o.jpg", "--coco", photo), "is the input"),
                       ((photo, "-o", tmp_path / "o.jpg", "--coco", tmp_path / "o.jpg"),
                        "is also the output picture"),
                       ((folder, "-o", tmp_path / "out", "--coco", tmp_path / "out" /
                         "photo1.jpg"), "is also the output picture"),
                       ((photo, "-o", tmp_path / "o.jpg", "--coco", checkpoint),
                        "is the model file")):
        model_before = checkpoint.read_bytes()
        code, _, err = fake(*args)
        assert code == 1, err
        _assert_one_line_error(err, said)
        assert checkpoint.read_bytes() == model_before
    assert photo.read_bytes() == before and not (tmp_path / "o.jpg").exists()
    assert not (tmp_path / "out").exists()


def test_track_on_images_only_says_it_tracks_nothing(fake, folder, tmp_path):
    """--track on photos was silently ignored."""
    code, out, err = fake(folder, "-o", tmp_path / "out", "--track")
    assert code == 0 and _summary(out)["images"] == 2, err
    assert "pixellib: warning: --track follows objects across a video's frames" in err


def test_output_folder_equal_to_input_folder_is_refused(fake, folder):
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for out in (folder, folder / "." / ""):
        code, _, err = fake(folder, "-o", out)
        assert code == 1
        _assert_one_line_error(err, "holds the input")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert FakePredictor.created == []  # refused before loading the model


def test_output_folder_of_links_to_the_inputs_is_refused(fake, folder, tmp_path):
    """An album of links run in place: the outputs replaced the links (exit 0), because only
    the folder of each link's target was compared with the output folder."""
    album = tmp_path / "album"
    album.mkdir()
    for p in sorted(folder.iterdir()):
        (album / p.name).symlink_to(p)
    code, _, err = fake(album, "-o", album)
    assert code == 1
    _assert_one_line_error(err, "holds the input")
    # The links reached as a second path to inputs named first are inputs all the same.
    for inputs in ([folder, album], [folder / "photo0.jpg", album / "photo0.jpg"]):
        code, _, err = fake(*inputs, "-o", album)
        assert code == 1, inputs
        assert err.splitlines()[-1].startswith("pixellib: error: ") and "holds the input" in err
    assert all(p.is_symlink() for p in album.iterdir())
    assert FakePredictor.created == []


def test_a_broken_link_named_as_input_says_so(fake, tmp_path):
    link = tmp_path / "photo.jpg"
    link.symlink_to(tmp_path / "gone" / "IMG_1.jpg")
    code, _, err = fake(link, "-o", tmp_path / "out.jpg")
    assert code == 1
    _assert_one_line_error(err, "is a broken link", "IMG_1.jpg")


def test_a_file_reached_twice_is_segmented_once_and_named(fake, folder, tmp_path):
    """A link beside its target was dropped without a word (the summary just counted one
    image less)."""
    (folder / "alias.jpg").symlink_to(folder / "photo0.jpg")
    code, out, err = fake(folder, "-o", tmp_path / "out")
    assert code == 0, err
    names = _outputs(tmp_path / "out")
    assert "alias.jpg" in names and "photo0.jpg" not in names
    assert _summary(out)["images"] == len(names)
    warning = [line for line in err.splitlines() if "the same file" in line]
    assert len(warning) == 1 and "photo0.jpg" in warning[0] and "alias.jpg" in warning[0]
    # The same path twice (a folder and a glob over it) is not worth a line.
    code, _, err = fake(folder, folder / "*.jpg", "-o", tmp_path / "out2")
    assert code == 0 and err.count("the same file") == 1, err


def test_a_bad_pixel_limit_in_the_environment_stops_the_run_once(fake, folder, tmp_path,
                                                                 monkeypatch):
    """Each image was skipped with the same complaint, after the model had loaded."""
    monkeypatch.setenv("PIXELLIB_MAX_PIXELS", "100M")
    code, _, err = fake(folder, "-o", tmp_path / "out")
    assert code == 1
    _assert_one_line_error(err, "PIXELLIB_MAX_PIXELS", "'100M'")
    assert FakePredictor.created == [] and not (tmp_path / "out").exists()


def test_pillows_decompression_bomb_warning_stays_out_of_the_terminal(fake, folder, tmp_path,
                                                                      monkeypatch):
    """A photo over Pillow's 89-megapixel mark but within ours printed Pillow's
    "DecompressionBombWarning: ... could be decompression bomb DOS attack"."""
    from PIL import Image

    from pixellib.media.images import read_image

    pixels = min(h * w for h, w, _ in (cv2.imread(str(p)).shape for p in folder.iterdir()))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels - 1)  # a warning, not Pillow's error
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code, out, err = fake(folder, "-o", tmp_path / "out")
    assert code == 0 and _summary(out)["images"] == 2, err
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]
    assert "decompression bomb" not in err.lower()
    with pytest.warns(Image.DecompressionBombWarning):  # as before, outside the command
        read_image(folder / "photo0.jpg")


def test_output_equal_to_input_is_refused(fake, folder):
    code, _, err = fake(folder / "photo0.jpg", "-o", folder / "photo0.jpg")
    assert code == 1
    _assert_one_line_error(err, "is the input itself")


def test_inputs_sharing_a_stem_get_their_own_outputs_and_extras(fake, tmp_path, photos):
    pics = tmp_path / "pics"
    pics.mkdir()
    cv2.imwrite(str(pics / "a.jpg"), photos[0])
    cv2.imwrite(str(pics / "a.png"), photos[1])
    code, _, err = fake(pics, "-o", tmp_path / "out", "--masks", tmp_path / "masks",
                        "--effect", "remove-bg")
    assert code == 0, err
    assert _outputs(tmp_path / "out") == ["a.png", "a_2.png"]
    for out, src in (("a.png", "a.jpg"), ("a_2.png", "a.png")):  # each from its own input
        bgra = cv2.imread(str(tmp_path / "out" / out), cv2.IMREAD_UNCHANGED)
        kept = bgra[..., 3] > 0
        assert kept.any()
        assert np.array_equal(bgra[..., :3][kept], cv2.imread(str(pics / src))[kept]), out
    masks = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert masks == sorted([f"{s}_mask_{k}_{c}.png" for s in ("a", "a_2")
                            for k, c in ((1, "umbrella"), (2, "person"), (3, "cat"))]
                           + ["a_labels.png", "a_2_labels.png"])


def test_unwritable_outputs_are_refused_before_the_model_loads(run, folder, tmp_path):
    blocker = tmp_path / "afile.txt"
    blocker.write_text("x")
    (tmp_path / "cocodir").mkdir()
    for extra, says in (
            (["--coco", tmp_path / "cocodir"], "cocodir': it is a folder"),
            (["--coco", blocker / "x.json"], "afile.txt' is a file, not a folder"),
            (["--masks", blocker], "afile.txt': it is a file, not a folder"),
            (["--cutouts", blocker / "sub"], "afile.txt' is a file, not a folder"),
            (["-o", blocker / "out.jpg"], "afile.txt' is a file, not a folder")):
        inputs = [folder / "photo0.jpg"] if "-o" in extra else [folder]
        code, out, err = run(*inputs, *extra, model="nowhere.pkl")  # never reached
        assert code == 1, (extra, err)
        _assert_one_line_error(err, says)
        assert "nowhere" not in err and out == ""


def test_a_re_run_replaces_the_earlier_runs_object_files(fake, folder, tmp_path):
    """With fewer objects the second time (--classes), no object file of the first run is
    left beside the new ones; files the command did not name are kept."""
    out, masks, cuts = tmp_path / "o.jpg", tmp_path / "masks", tmp_path / "cuts"
    args = (folder / "photo0.jpg", "-o", out, "--extract", "mask", "--masks", masks,
            "--cutouts", cuts)
    assert fake(*args)[0] == 0
    assert len(list(masks.iterdir())) == 4 and len(list(cuts.iterdir())) == 3
    (masks / "notes.png").write_bytes(b"mine")
    (masks / "other_mask_1_cat.png").write_bytes(b"another output's")
    code, _, err = fake(*args, "--classes", "cat")
    assert code == 0, err
    assert sorted(p.name for p in masks.iterdir()) == [
        "notes.png", "o_labels.png", "o_mask_1_cat.png", "other_mask_1_cat.png"]
    assert sorted(p.name for p in cuts.iterdir()) == ["o_object_1_cat.png"]
    assert sorted(p.name for p in (tmp_path / "o_extracts").iterdir()) == [
        "segmented_object_1.jpg"]


def test_tilde_in_option_equals_form_is_the_home_folder(fake, folder, tmp_path, monkeypatch):
    """``--cutouts=~/c``: the shell leaves a ``~`` after ``=`` as it is; the command reads it
    as the home folder (it used to write into a folder named ``~``)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    code, _, err = fake(folder / "photo0.jpg", "--output=~/o.jpg", "--cutouts=~/cuts",
                        "--masks=~/masks", "--coco=~/c.json")
    assert code == 0, err
    assert (home / "o.jpg").is_file() and (home / "c.json").is_file()
    assert len(list((home / "cuts").iterdir())) == 3
    assert len(list((home / "masks").iterdir())) == 4
    # a re-run with fewer objects clears the earlier object files there too
    code, _, err = fake(folder / "photo0.jpg", "--output=~/o.jpg", "--cutouts=~/cuts",
                        "--masks=~/masks", "--classes", "cat")
    assert code == 0, err
    assert sorted(p.name for p in (home / "cuts").iterdir()) == ["o_object_1_cat.png"]
    assert sorted(p.name for p in (home / "masks").iterdir()) == [
        "o_labels.png", "o_mask_1_cat.png"]
    assert not list(tmp_path.rglob("~"))


def test_single_output_needs_image_extension(fake, folder, tmp_path):
    code, _, err = fake(folder / "photo0.jpg", "-o", tmp_path / "result")
    assert code == 1
    _assert_one_line_error(err, "image extension")
    code, _, err = fake(folder / "photo0.jpg", "-o", f"{tmp_path / 'dir'}{os.sep}")
    assert code == 0, err
    assert (tmp_path / "dir" / "photo0.jpg").is_file()
    code, _, err = fake(folder / "photo0.jpg", "-o", tmp_path / "result.ppm")  # cv2 writes it
    assert code == 0, err
    written = cv2.imread(str(tmp_path / "result.ppm"))
    assert written.shape == cv2.imread(str(folder / "photo0.jpg")).shape


def test_same_names_from_two_folders_do_not_collide(fake, folder, tmp_path, photos):
    other = tmp_path / "other"
    other.mkdir()
    cv2.imwrite(str(other / "photo0.jpg"), photos[1])
    (other / "photo0.gif").write_bytes(b"GIF89a")  # an explicit file is tried, then fails
    code, out, err = fake(folder / "photo0.jpg", other / "photo0.jpg", other / "photo0.gif")
    assert code == 0, err  # no -o: ./segmented/
    names = _outputs(tmp_path / "segmented")
    assert names == ["photo0.jpg", "photo0_2.jpg"]
    assert "photo0.gif" in err and _summary(out)["failed"] == 1


def test_unreadable_video_is_reported(fake, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2000))
    code, out, err = fake(bad)
    assert code == 1
    assert "bad.mp4" in err and _summary(out)["failed"] == 1
    assert not (tmp_path / "bad_segmented.mp4").exists()


# ----------------------------------------------------------------------------- README and CI


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = re.search(r"<!-- test-command -->\s*```\w*\n(.+?)\n```", readme, re.S).group(1)
    assert command.strip() in ci


@pytest.mark.slow
@pytest.mark.parametrize("name, status", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_leaves_no_half_written_video(tmp_path, checkpoint, photos, name, status):
    """`timeout` or a job scheduler stops the command with SIGTERM, a closed terminal or
    dropped ssh session with SIGHUP: the hidden temporary output is deleted as on Ctrl-C
    (the process used to die with it on disk)."""
    import signal

    src = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (200, 150))
    for k in range(40):
        writer.write(photos[k % 2])
    writer.release()
    out = tmp_path / "out" / "seg.mp4"
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    # A run under `nohup` (as CI may be) ignores SIGHUP, and so would the command (it keeps
    # an ignored hangup ignored, test_nohup_keeps_a_hangup_ignored): start it as a terminal
    # session would, with the signal's default.
    proc = subprocess.Popen([sys.executable, "-m", "pixellib", "segment", str(src), "-o",
                             str(out), "--model", str(checkpoint), "--speed", "rapid"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not list(out.parent.glob(".seg.*.tmp.mp4")):  # the video is being written
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(getattr(signal, name))
        assert proc.wait(timeout=60) == status
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert list(out.parent.iterdir()) == []


def _without_root_powers(argv: list[str]) -> list[str]:
    from faults import without_root_powers

    return without_root_powers(argv)


def test_a_batch_and_the_server_run_with_their_output_streams_closed(folder, tmp_path,
                                                                     checkpoint):
    """``2>&-`` (Python then sets sys.stderr to None): the progress bar's first write
    failed with AttributeError and the batch wrote nothing; ``serve >&-`` ended in a
    39-line traceback from uvicorn's log set-up."""
    import httpx

    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "pixellib", "segment", str(folder), "-o", str(out), "--model",
         str(checkpoint), "--speed", "rapid"], env=env, timeout=300,
        preexec_fn=lambda: (os.close(1), os.close(2)))
    assert done.returncode == 0
    assert sorted(p.name for p in out.iterdir()) == [".pixellib-done.jsonl", "photo0.jpg",
                                                     "photo1.jpg"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixellib", "serve", "--model", str(checkpoint), "--port",
         str(port), "--speed", "rapid", "--threads", "1"], env=env,
        preexec_fn=lambda: os.close(1), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"serve exited with {proc.returncode}"
            assert time.monotonic() < deadline, "serve never became ready"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_an_output_file_that_may_be_written_is_written_in_a_locked_folder(
        folder, tmp_path, checkpoint):
    """``-o locked/out.jpg``, a file the user may write in a folder they may not, was
    refused ("no permission to write there"), though PixelLib's cv2.imwrite writes it."""
    locked = tmp_path / "locked"
    locked.mkdir()
    out, coco = locked / "out.jpg", locked / "c.json"
    out.write_bytes(b"old")
    coco.write_text("{}")
    inode = out.stat().st_ino
    locked.chmod(0o555)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    try:
        done = subprocess.run(_without_root_powers(
            [sys.executable, "-m", "pixellib", "segment", str(folder / "photo0.jpg"), "-o",
             str(out), "--coco", str(coco), "--model", str(checkpoint), "--speed", "rapid"]),
            env=env, capture_output=True, text=True, timeout=300)
    finally:
        locked.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert cv2.imread(str(out)) is not None and out.stat().st_ino == inode
    assert "images" in json.loads(coco.read_text())  # --coco too, in place
    assert sorted(p.name for p in locked.iterdir()) == ["c.json", "out.jpg"]
    # but not with --extract, whose folder goes beside it; nor a read-only output: both
    # refused before the model loads, not after it ran
    (tmp_path / "ro.jpg").write_bytes(b"mine")
    (tmp_path / "ro.jpg").chmod(0o444)
    locked.chmod(0o555)
    try:
        for extra, says in ((["-o", str(out), "--extract", "mask"],
                             f"cannot write outputs in '{locked}'"),
                            (["-o", str(tmp_path / "ro.jpg")],
                             "ro.jpg': the file is read-only"),
                            (["-o", str(tmp_path / "a.jpg"), "--coco", str(tmp_path / "ro.jpg")],
                             "ro.jpg': the file is read-only")):
            done = subprocess.run(_without_root_powers(
                [sys.executable, "-m", "pixellib", "segment", str(folder / "photo0.jpg"),
                 *extra, "--model", str(tmp_path / "no-such-model.pkl")]),
                env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 1 and says in done.stderr, done.stderr
            assert "no-such-model" not in done.stderr
    finally:
        locked.chmod(0o755)
    assert (tmp_path / "ro.jpg").read_bytes() == b"mine"


def test_an_output_folder_nothing_can_be_written_in_is_refused_before_any_work(
        folder, tmp_path, checkpoint):
    """Each image failed only after the model had run on it ("5 failed" after 27 s): the
    folder's permissions are checked before the model loads."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    try:
        for out in (locked, locked / "new" / "deeper"):
            done = subprocess.run(_without_root_powers(
                [sys.executable, "-m", "pixellib", "segment", str(folder), "-o", str(out),
                 "--model", str(tmp_path / "no-such-model.pkl")]),
                env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 1, done.stderr
            assert f"cannot write outputs in '{out}" in done.stderr, done.stderr
            assert "no permission to write there" in done.stderr
            assert "no-such-model" not in done.stderr  # refused before the model was looked at
        # the other places it writes: --coco's folder, --cutouts, --masks
        for extra in (["--coco", str(locked / "c.json")], ["--cutouts", str(locked / "c")],
                      ["--masks", str(locked)]):
            done = subprocess.run(_without_root_powers(
                [sys.executable, "-m", "pixellib", "segment", str(folder), "-o",
                 str(tmp_path / "fine"), *extra, "--model", str(tmp_path / "no-such.pkl")]),
                env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 1 and "cannot write outputs in" in done.stderr, extra
            assert str(locked) in done.stderr and "no-such" not in done.stderr, done.stderr
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def _photo_folder(tmp_path, photos, name="in", count=3) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for k in range(count):
        cv2.imwrite(str(folder / f"p{k}.jpg"), photos[k % len(photos)])
    return folder


def test_the_record_follows_contents_and_settles_what_does_not_matter(fake, photos, tmp_path):
    """--skip-existing kept a photo replaced in place and one whose replace-bg picture was
    replaced; it redid everything for --cutouts into a new folder, for the same classes in
    another order, for the default confidence spelt out, and for --track on images."""
    folder = _photo_folder(tmp_path, photos)
    out, cuts = tmp_path / "out", tmp_path / "new_cuts"

    def seg(*args):  # rapid's default confidence (0.2), not the helper's 0.5
        return fake(*args, confidence=None)

    assert seg(folder, "-o", out, "--cutouts", cuts, "--classes", "person,cat")[0] == 0
    for extra in (["--classes", "cat,person"], ["--classes", "person,cat", "--confidence",
                                                "0.2", "--track"]):
        code, stdout, err = seg(folder, "-o", out, "--cutouts", cuts, "--skip-existing",
                                *extra)
        assert code == 0 and _summary(stdout)["skipped"] == 3 and "made again" not in err, err
    cv2.imwrite(str(folder / "p1.jpg"), np.zeros((30, 40, 3), np.uint8))  # replaced in place
    code, stdout, err = seg(folder, "-o", out, "--cutouts", cuts, "--classes", "person,cat",
                            "--skip-existing")
    assert code == 0 and _summary(stdout)["images"] == 1 and "made again: " in err, err
    assert cv2.imread(str(out / "p1.jpg")).shape == (30, 40, 3)
    # a background picture replaced under the same name: other pictures
    background = tmp_path / "bg.png"
    cv2.imwrite(str(background), np.full((20, 20, 3), 90, np.uint8))
    assert fake(folder, "-o", out, "--effect", f"replace-bg={background}")[0] == 0
    cv2.imwrite(str(background), np.full((20, 20, 3), 200, np.uint8))
    code, stdout, err = fake(folder, "-o", out, "--effect", f"replace-bg={background}",
                             "--skip-existing")
    assert code == 0 and _summary(stdout)["images"] == 3, err


def test_a_link_at_the_records_name_is_replaced_not_appended_through(fake, photos,
                                                                       tmp_path):
    """The record was appended through a link at its name, into whatever file it led to."""
    folder = _photo_folder(tmp_path, photos)
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("mine\n")
    (out / ".pixellib-done.jsonl").symlink_to(victim)
    assert fake(folder, "-o", out)[0] == 0
    assert victim.read_text() == "mine\n"
    record = out / ".pixellib-done.jsonl"
    assert not record.is_symlink() and len(record.read_text().splitlines()) == 3
    # a hard-linked copy of the folder (cp -al) keeps its own record: appended in place, it
    # said the copy's outputs were made with the new options, and --skip-existing kept them
    (tmp_path / "copy").mkdir()
    os.link(record, tmp_path / "copy" / record.name)
    before = record.read_text()
    assert fake(folder, "-o", out, "--classes", "person")[0] == 0
    assert (tmp_path / "copy" / record.name).read_text() == before
    assert len(record.read_text().splitlines()) == 6  # its own record goes on


def test_the_record_survives_a_cut_line_and_is_not_the_coco_file(fake, photos, tmp_path):
    folder = _photo_folder(tmp_path, photos)
    out = tmp_path / "out"
    assert fake(folder, "-o", out)[0] == 0
    record = out / ".pixellib-done.jsonl"
    text = record.read_text()
    record.write_text(text[:-30])  # the last line cut short (a kill, a full disk)
    code, stdout, _ = fake(folder, "-o", out, "--skip-existing")
    assert code == 0 and _summary(stdout)["images"] == 1  # its output is made again
    code, stdout, err = fake(folder, "-o", out, "--skip-existing")  # and noted on a new line
    assert code == 0 and _summary(stdout)["skipped"] == 3 and "made again" not in err, err
    code, _, err = fake(folder, "-o", out, "--coco", record)
    assert code == 1 and "record of finished outputs" in err
    # a half-written output a killed run left is not an input
    (out / ".p0.0123456789ab.tmp.jpg").write_bytes(b"x")
    from pixellib.media.images import list_images

    assert [p.name for p in list_images(out)] == ["p0.jpg", "p1.jpg", "p2.jpg"]


def test_a_stop_keeps_earlier_coco_entries_only_where_the_record_vouches(fake, photos,
                                                                         tmp_path, monkeypatch):
    """Stopped without --skip-existing after other options: the file held the new images
    and stale entries made with the old options. Resumed under another spelling of the
    folder, the entries were looked up by the path as typed and the file lost them all."""
    folder = _photo_folder(tmp_path, photos)
    out, coco = tmp_path / "out", tmp_path / "c.json"
    assert fake(folder, "-o", out, "--coco", coco, "--classes", "cat")[0] == 0
    resume = _ctrl_c_after(monkeypatch, 1)
    code, _, err = fake(folder, "-o", out, "--coco", coco)  # other options: all classes
    assert code == 130 and "holds the 1 image(s) finished before the stop;" in err, err
    assert len(json.loads(coco.read_text())["images"]) == 1
    resume()
    code, stdout, err = fake(folder, "-o", out, "--coco", coco, "--skip-existing")
    assert code == 0 and _summary(stdout)["images"] == 2, err
    whole = json.loads(coco.read_text())
    assert len(whole["images"]) == 3 and len(whole["annotations"]) == 9
    elsewhere = tmp_path / "x" / ".." / "in"
    (tmp_path / "x").mkdir()
    code, stdout, err = fake(elsewhere, "-o", out, "--coco", coco, "--skip-existing")
    assert code == 0 and _summary(stdout)["skipped"] == 3 and "no entry" not in err, err
    assert json.loads(coco.read_text()) == whole  # nothing to do: the file left as it is
    # with one input to do, from another working folder: the others' entries found by path
    (out / "p1.jpg").unlink()
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    code, stdout, err = fake(Path("..") / "in", "-o", out, "--coco", coco, "--skip-existing")
    assert code == 0 and _summary(stdout)["skipped"] == 2 and "no entry" not in err, err
    again = json.loads(coco.read_text())
    assert [im["file_name"] for im in again["images"]] == [
        str(Path("..") / "in" / f"p{k}.jpg") for k in range(3)]
    assert again["annotations"] == whole["annotations"]


def test_an_output_written_behind_the_model_is_noted_before_a_stop(fake, photos, tmp_path,
                                                                   monkeypatch):
    """With the writing overlapped (the default on CUDA), outputs on disk at a stop were not
    in the record yet: the resume made them again, saying the options had changed."""
    monkeypatch.setenv("PIXELLIB_OVERLAP", "1")
    folder = _photo_folder(tmp_path, photos, count=5)
    out = tmp_path / "out"
    resume = _ctrl_c_after(monkeypatch, 2)
    coco = tmp_path / "c.json"
    assert fake(folder, "-o", out, "--coco", coco)[0] == 130
    resume()
    written = len(_outputs(out))
    assert len(json.loads(coco.read_text())["images"]) == written  # every noted output
    code, stdout, err = fake(folder, "-o", out, "--coco", coco, "--skip-existing")
    assert code == 0 and "made again" not in err and "no entry" not in err, err
    assert _summary(stdout)["skipped"] == written and _summary(stdout)["images"] == 5 - written
    assert len(json.loads(coco.read_text())["images"]) == 5


def test_the_settings_key_is_the_same_before_and_after_the_model_download(tmp_path,
                                                                          monkeypatch):
    """A first run that downloads resnet50 keyed it by name, later runs by the cached file:
    stopped and resumed, it made everything again."""
    from pixellib.checkpoint.hub import cached_model_path
    from pixellib.cli.main import build_parser
    from pixellib.cli.record import settings_key

    monkeypatch.setenv("PIXELLIB_HOME", str(tmp_path / "home"))
    args = build_parser().parse_args(["segment", "x.jpg", "--feather", "0"])
    before = settings_key(args, video=False)
    cached = cached_model_path("resnet50")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"weights")
    assert settings_key(args, video=False) == before
    by_path = build_parser().parse_args(["segment", "x.jpg", "--model", str(cached)])
    assert settings_key(by_path, video=False) == before  # --feather 0 is the default too


def test_the_settings_key_of_a_video_leaves_out_the_image_only_options():
    """Adding --cutouts (or --masks, --extract) to a resumed run that mixes photos and videos
    re-encoded every video, though those options do not apply to videos; --track still
    counts for videos and not for photos."""
    from pixellib.cli.main import build_parser
    from pixellib.cli.record import settings_key

    plain = build_parser().parse_args(["segment", "x.mp4"])
    extras = build_parser().parse_args(["segment", "x.mp4", "--cutouts", "c", "--masks", "m",
                                        "--extract", "mask"])
    tracked = build_parser().parse_args(["segment", "x.mp4", "--track"])
    assert settings_key(extras, video=True) == settings_key(plain, video=True)
    assert settings_key(extras, video=False) != settings_key(plain, video=False)
    assert settings_key(tracked, video=True) != settings_key(plain, video=True)
    assert settings_key(tracked, video=False) == settings_key(plain, video=False)


def test_classes_by_coco_id_as_the_server_and_the_api_take_them():
    """`--classes 25,66` was "unknown class name '25'" (the server and Python take ids)."""
    import importlib

    cli = importlib.import_module("pixellib.cli.main")
    assert cli._class_list("25, keyboard,0") == [25, 66, 0]
    assert cli._class_list("umbrella,keyboard") == cli._class_list("25,66")
    with pytest.raises(Exception, match="not a COCO class id"):
        cli._class_list("80")


def test_the_command_line_takes_no_prefix_no_repeat_and_inputs_anywhere(folder, capsys):
    """argparse's defaults: any prefix was an option (``serve --i`` was
    --insecure-no-auth), a repeated option kept its last value without a word
    (``--classes umbrella --classes person`` found no umbrella), an input after an option
    was refused with the top-level usage, and a typo got no suggestion."""
    photo = str(folder / "photo0.jpg")
    for argv, says in (
        (["serve", "--i"], "pixellib serve: error: unrecognized option '--i'"),
        (["segment", photo, "--r"], "unrecognized option '--r'"),
        (["segment", photo, "--boxs"], "unrecognized option '--boxs': did you mean --boxes?"),
        (["segment", photo, "--classes", "umbrella", "--classes", "person"],
         "--classes given 2 times; give it once (several classes: --classes person,car)"),
        (["segment", photo, "-o", "a.jpg", "-ob.jpg"], "--output given 2 times"),
        (["segment", photo, "--effect=gray-bg", "--effect", "remove-bg"], "--effect given 2"),
        (["serve", "--port", "70000"], "argument --port: must be at most 65535, got 70000"),
        (["serve", "--max-upload-mb", "inf"], "--max-upload-mb: must be a finite number"),
        (["serve", "--max-megapixels", "inf"], "--max-megapixels: must be a finite number"),
        (["segment", photo, "--classes", "²"], "argument --classes: unknown class name '²'"),
        (["evaluate", "a.json", "images", "extra"],
         "pixellib evaluate: error: unrecognized arguments: extra"),
    ):
        code, _, err = _cli(*argv, capsys=capsys)
        assert code == 2 and says in err, (argv, err)
    # sizes are rounded up: 1e-7 MP was "max_pixels must be positive"; now the model is next
    code, _, err = _cli("serve", "--max-megapixels", "1e-7", "--max-upload-mb", "1e-9",
                        "--model", folder / "no-model.pkl", capsys=capsys)
    assert code == 1 and "no-model.pkl" in err and "positive" not in err, err
    # an input after an option is an input (refused here as missing, by its own name)
    code, _, err = _cli("segment", photo, "--boxes", folder / "missing.jpg", capsys=capsys)
    _assert_one_line_error(err, "input not found", "missing.jpg")
    assert code == 1
    # -o c.jpg --cutouts c.jpg: the model ran, then the output could not be written
    out = folder.parent / "c.jpg"
    code, _, err = _cli("segment", photo, "-o", out, "--cutouts", out, "--model",
                        folder / "no-model.pkl", capsys=capsys)
    _assert_one_line_error(err, f"--cutouts '{out}' is the output '{out}'")
    assert code == 1 and not out.exists()
    code, _, err = _cli("segment", photo, "-o", ".jpg", capsys=capsys)  # "needs an extension"
    _assert_one_line_error(err, "'.jpg' is a file name with no extension", "'output.jpg'")
    code, _, err = _cli("segment", photo, "--boxes", "--", folder / "-b.jpg", capsys=capsys)
    _assert_one_line_error(err, "input not found", "-b.jpg")  # after --, an input
    coco = folder.parent / "x.json"
    code, _, err = _cli("segment", photo, "-o", out, "--coco", coco, "--cutouts", coco,
                        "--model", folder / "no-model.pkl", capsys=capsys)
    _assert_one_line_error(err, f"--cutouts '{coco}' is the --coco file")
    assert not coco.exists()


def test_coco_entries_named_from_another_working_folder_are_found(fake, photos, tmp_path,
                                                                  monkeypatch):
    """`segment in --coco c.json`, then from a subfolder `segment ../in ... --skip-existing`:
    the relative names of the first run were looked up from the second's folder, found
    nothing, and the file was rewritten without them."""
    _photo_folder(tmp_path, photos)
    monkeypatch.chdir(tmp_path)
    assert fake("in", "-o", "out", "--coco", "c.json")[0] == 0
    whole = json.loads((tmp_path / "c.json").read_text())
    (tmp_path / "out" / "p2.jpg").unlink()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    code, stdout, err = fake("../in", "-o", "../out", "--coco", "../c.json", "--skip-existing")
    assert code == 0 and _summary(stdout)["skipped"] == 2 and "no entry" not in err, err
    again = json.loads((tmp_path / "c.json").read_text())
    assert len(again["images"]) == 3 and again["annotations"] == whole["annotations"]


# ----------------------------------------------------------------------------- files at the edges


def test_cutouts_and_masks_never_replace_or_delete_an_input(fake, photos, tmp_path):
    """`--cutouts m3 --masks m3` with m3 the input folder deleted the inputs
    a_object_1_person.png and a_mask_2_car.png (a re-run's clean-up of a.jpg's old object
    files) and replaced the input a_labels.png by a.jpg's label image."""
    folder = tmp_path / "m3"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), photos[0])
    for name in ("a_object_1_person.png", "a_mask_2_car.png", "a_labels.png"):
        cv2.imwrite(str(folder / name), photos[1])
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for option, clash in (("--cutouts", "a_object_1_person.png"), ("--masks", "a_")):
        code, _, err = fake(folder, "-o", tmp_path / "out", option, folder)
        assert code == 1
        _assert_one_line_error(err, f"{option} ", clash, "'", "a.jpg")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert FakePredictor.created == []  # refused before the model loads
    # An input listed under another name, linked to a file these files would replace.
    (tmp_path / "data").mkdir()
    (folder / "a_labels.png").rename(tmp_path / "data" / "a_labels.png")
    (folder / "q.png").symlink_to(tmp_path / "data" / "a_labels.png")
    code, _, err = fake(folder, "-o", tmp_path / "out", "--masks", tmp_path / "data")
    assert code == 1
    _assert_one_line_error(err, "--masks", "data/a_labels.png")
    # The replace-bg picture is read too: never replaced by a label image.
    (tmp_path / "data" / "a_labels.png").unlink()
    (folder / "q.png").unlink()
    picture = tmp_path / "m" / "o_labels.png"  # o.jpg's label image
    picture.parent.mkdir()
    cv2.imwrite(str(picture), photos[1])
    code, _, err = fake(folder / "a.jpg", "-o", tmp_path / "o.jpg", "--masks", picture.parent,
                        "--effect", f"replace-bg={picture}")
    assert code == 1
    _assert_one_line_error(err, "the replace-bg picture", "o_labels.png")
    # Nor is an input in an output's <stem>_extracts/ under a crop's name (a re-run over
    # the crops of an earlier run, into the same -o).
    crops = tmp_path / "out" / "a_extracts"
    crops.mkdir(parents=True)
    cv2.imwrite(str(crops / "segmented_object_1.jpg"), photos[1])
    code, _, err = fake(folder / "a.jpg", crops / "segmented_object_1.jpg", "-o",
                        tmp_path / "out", "--extract", "mask")
    assert code == 1
    _assert_one_line_error(err, "segmented_object_1.jpg", "a_extracts/", "choose another -o")
    # Beside a photo whose name no object file takes, they are written as asked.
    lone = tmp_path / "lone"
    lone.mkdir()
    cv2.imwrite(str(lone / "photo.jpg"), photos[0])
    code, _, err = fake(lone / "photo.jpg", "--cutouts", lone, "--masks", lone)
    assert code == 0, err
    assert (lone / "photo_segmented_labels.png").is_file()
    assert len(list(lone.glob("photo_segmented_object_*.png"))) == 3


def test_masks_in_the_output_folder_never_replace_another_output(fake, photos, tmp_path):
    """Inputs a.jpg and a_labels.png, `-o out --masks out`: out/a_labels.png was both the
    annotated copy of a_labels.png and a.jpg's label image; one silently replaced the
    other."""
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), photos[0])
    cv2.imwrite(str(folder / "a_labels.png"), photos[1])
    code, _, err = fake(folder, "-o", tmp_path / "out", "--masks", tmp_path / "out")
    assert code == 1
    _assert_one_line_error(err, "--masks", "the output", "a_labels.png")
    assert not (tmp_path / "out").exists()
    (folder / "a_labels.png").rename(folder / "b.png")  # no clash: masks beside the outputs
    code, _, err = fake(folder, "-o", tmp_path / "out", "--masks", tmp_path / "out")
    assert code == 0, err
    assert {"a.jpg", "b.png", "a_labels.png", "b_labels.png"} <= set(_outputs(tmp_path / "out"))


def test_a_loop_of_links_is_skipped_named_and_the_batch_goes_on(fake, photos, tmp_path):
    """A link to itself in the input folder stopped the whole run with a RuntimeError
    traceback (Path.resolve on a loop)."""
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), photos[0])
    (folder / "self.jpg").symlink_to("self.jpg")
    (folder / "b.jpg").symlink_to("c.jpg")
    (folder / "c.jpg").symlink_to("b.jpg")
    code, out, err = fake(folder, "-o", tmp_path / "out")
    assert code == 0 and "Traceback" not in err, err
    assert _summary(out) == {"images": 1, "objects": 3, "failed": 3}
    assert err.count("a loop of symbolic links") == 3
    assert _outputs(tmp_path / "out") == ["a.jpg"]
    code, _, err = fake(folder / "self.jpg")
    assert code == 1
    _assert_one_line_error(err, "self.jpg", "a loop of symbolic links")


def test_a_recursive_glob_does_not_go_round_linked_folders(fake, photos, tmp_path):
    """`tree/**/*.jpg` over a tree with two links to a folder above never ended (glob
    follows them: 2**depth paths) and grew its memory; one such link listed every file
    again at each depth. `**` now enters each folder once; a linked folder elsewhere is
    still searched."""
    from pixellib.cli.jobs import expand_glob

    tree = tmp_path / "tree"
    (tree / "sub" / ".hidden").mkdir(parents=True)
    (tree / "deep" / "er").mkdir(parents=True)
    for name in ("t.jpg", "sub/s.jpg", "deep/er/d.jpg", "sub/.hidden/h.jpg", "sub/x.png"):
        cv2.imwrite(str(tree / name), photos[0])
    patterns = ["tree/**/*.jpg", "tree/**", "**/*.jpg", "tree/*/**/*.jpg", "tree/**/er/*.jpg",
                str(tree) + "/**/*.jpg", "tree/**.jpg", "tree/[s]ub/**", "tree/**/", "**/"]
    for pattern in patterns:  # without links: exactly glob's answer
        assert sorted(expand_glob(pattern)) == sorted(glob.glob(pattern, recursive=True))
    (tree / "sub" / "loop").symlink_to("..")
    (tree / "sub" / "loop2").symlink_to("..")
    (tmp_path / "elsewhere").mkdir()
    cv2.imwrite(str(tmp_path / "elsewhere" / "e.jpg"), photos[0])
    (tree / "linked").symlink_to(tmp_path / "elsewhere")
    found = []  # on a thread: a glob that never ends fails the test instead of hanging it
    walker = threading.Thread(target=lambda: found.append(expand_glob("tree/**/*.jpg")),
                              daemon=True)
    walker.start()
    walker.join(30)
    assert not walker.is_alive(), "expand_glob went round the links"
    assert sorted(found[0]) == [
        "tree/deep/er/d.jpg", "tree/linked/e.jpg", "tree/sub/s.jpg", "tree/t.jpg"]
    code, out, err = fake("tree/**/*.jpg", "-o", tmp_path / "out")
    assert code == 0 and _summary(out)["images"] == 4, err


def test_file_names_up_to_the_limit_are_written_and_longer_ones_refused_first(fake, photos,
                                                                              tmp_path):
    """A 240-byte name failed: its hidden temporary name (18 bytes more) passed the 255-byte
    limit, after the model had run. A name the system cannot hold is refused before the
    model loads, saying so."""
    long = tmp_path / ("M" * 240 + ".jpg")
    cv2.imwrite(str(long), photos[0])
    code, _, err = fake(long)
    assert code == 0, err
    assert (tmp_path / ("M" * 240 + "_segmented.jpg")).is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    FakePredictor.created = []
    longer = tmp_path / ("N" * 245 + ".jpg")
    cv2.imwrite(str(longer), photos[0])
    code, _, err = fake(longer)
    assert code == 1
    _assert_one_line_error(err, "_segmented.jpg", "259 bytes long, more than the 255")
    assert FakePredictor.created == []


def _tree_bytes(root, folders) -> dict:
    """Every file under ``root/<folder>`` by relative name (hidden ones included, but the
    run record, which tells what each run did): its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for folder in folders
            for p in sorted((root / folder).rglob("*"))
            if p.is_file() and p.name != ".pixellib-done.jsonl"}


def test_a_failed_write_leaves_none_of_that_images_object_files(fake, folder, tmp_path,
                                                                monkeypatch):
    """Out of space while writing an image's output: its --extract crops, cut-outs and masks,
    written just before, stayed behind for an image reported as failed."""
    import pixellib.media.images as images
    from faults import full_disk_for

    real_write = images.write_image
    full_disk_for_photo0 = full_disk_for("photo0.jpg", real_write)
    monkeypatch.setattr(images, "write_image", full_disk_for_photo0)
    out = tmp_path / "out"
    code, stdout, err = fake(folder, "-o", out, "--extract", "mask", "--cutouts",
                             tmp_path / "cut", "--masks", tmp_path / "masks")
    assert code == 0 and _summary(stdout)["failed"] == 1, err
    assert "photo0.jpg" in err and "No space left" in err
    assert _outputs(out) == ["photo1.jpg", "photo1_extracts"]
    assert {p.name.split("_")[0] for p in (tmp_path / "cut").iterdir()} == {"photo1"}
    assert {p.name.split("_")[0] for p in (tmp_path / "masks").iterdir()} == {"photo1"}
    # A re-run that fails the same way after a complete run: the earlier run's output and
    # object files, cleared or replaced on the way, are all put back as they were (they
    # were deleted with the failed run's half, output included).
    monkeypatch.setattr(images, "write_image", real_write)
    options = ["--extract", "mask", "--cutouts", tmp_path / "cut", "--masks",
               tmp_path / "masks"]
    assert fake(folder, "-o", out, *options)[0] == 0
    before = _tree_bytes(tmp_path, ("out", "cut", "masks"))
    assert any("photo0" in name for name in before) and len(before) > 6
    monkeypatch.setattr(images, "write_image", full_disk_for_photo0)
    assert _summary(fake(folder, "-o", out, *options)[1])["failed"] == 1
    assert _tree_bytes(tmp_path, ("out", "cut", "masks")) == before
    monkeypatch.setattr(images, "write_image", real_write)
    code, stdout, _ = fake(folder, "-o", out, *options, "--skip-existing")
    assert code == 0 and _summary(stdout)["failed"] == 0
    assert len(list((tmp_path / "cut").glob("photo0_*"))) == 3


def test_a_resumed_folder_with_only_bad_inputs_left_ends_as_its_first_run(fake, folder,
                                                                         tmp_path):
    """A finished folder holding one corrupt photo: the first run exits 0, and each
    `--skip-existing` re-run exited 1 ("every input failed": only the bad one was tried)."""
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    code, out, _ = fake(folder, "-o", tmp_path / "out")
    assert code == 0 and _summary(out)["failed"] == 1
    code, out, err = fake(folder, "-o", tmp_path / "out", "--skip-existing")
    assert _summary(out) == {"images": 0, "objects": 0, "failed": 1, "skipped": 2}
    assert code == 0, err
    code, _, _ = fake(folder, "-o", tmp_path / "out", "--skip-existing", "--strict")
    assert code == 1


def test_the_record_of_a_folder_re_run_again_and_again_stays_small(fake, folder, tmp_path,
                                                                  monkeypatch):
    """Each re-run appended a line per output to .pixellib-done.jsonl, for ever."""
    from pixellib.cli import record
    from pixellib.cli.jobs import RECORD_NAME

    monkeypatch.setattr(record, "COMPACT_FROM", 3)
    out = tmp_path / "out"
    lines = []
    for _ in range(5):
        assert fake(folder, "-o", out)[0] == 0
        lines.append(len((out / RECORD_NAME).read_text().splitlines()))
    assert lines == [2, 4, 6, 4, 6], lines  # 2 outputs: compacted when past twice that
    code, out_text, _ = fake(folder, "-o", out, "--skip-existing")
    assert code == 0 and _summary(out_text)["skipped"] == 2  # what it vouches for is kept


def test_two_runs_noting_one_record_at_once_lose_no_line(tmp_path, monkeypatch):
    """Compaction rewrote the record by a rename: a second process appending meanwhile
    wrote into the replaced file, and its lines were lost."""
    from pixellib.cli import record
    from pixellib.cli.jobs import RECORD_NAME, Job
    from pixellib.cli.main import build_parser

    monkeypatch.setattr(record, "COMPACT_FROM", 10)
    path = tmp_path / RECORD_NAME
    path.write_text("".join(json.dumps({"output": "old.jpg", "n": k}) + "\n"
                            for k in range(200)))  # 199 superseded lines: compacted
    (tmp_path / "src.jpg").write_bytes(b"x")
    args = build_parser().parse_args(["segment", "src.jpg"])

    def note_many(tag):
        done = record.DoneRecord(args)  # one per "process": its own open file and lock
        for k in range(150):
            done.note(Job(tmp_path / "src.jpg", tmp_path / f"{tag}{k}.jpg", False, path))

    threads = [threading.Thread(target=note_many, args=(tag,)) for tag in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = [json.loads(line)["output"] for line in path.read_text().splitlines()]
    assert sorted(names) == sorted(["old.jpg"] + [f"{t}{k}.jpg" for t in "ab"
                                                  for k in range(150)])


def test_a_file_name_with_a_newline_cannot_forge_a_message_line(fake, folder, tmp_path):
    (folder / "bad\npixellib: 3 images.jpg").write_bytes(b"not an image")
    code, _, err = fake(folder, "-o", tmp_path / "out")
    assert code == 0
    assert not [line for line in err.splitlines() if line.startswith("pixellib: 3 images")]
    assert "/bad\\npixellib: 3 images.jpg'" in err  # quoted, its newline escaped


def test_remove_bg_never_suggests_the_inputs_own_name(fake, photos, tmp_path):
    cv2.imwrite(str(tmp_path / "p.png"), photos[0])
    code, _, err = fake(tmp_path / "p.png", "-o", tmp_path / "p.jpg", "--effect", "remove-bg")
    assert code == 1
    _assert_one_line_error(err, "name the output p_segmented.png")


def test_a_file_named_like_an_option_gets_a_hint(tmp_path, photos, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cv2.imwrite(str(tmp_path / "-lead.jpg"), photos[0])
    code = main(["segment", "-lead.jpg"])
    assert code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert "'-lead.jpg' is a file" in last and "write ./-lead.jpg" in last


def test_a_glob_over_the_tree_that_holds_the_output_folder_can_be_resumed(fake, photos,
                                                                          tmp_path):
    """`segment 'v2/**/*.jpg' -o v2/seg` ran once; every re-run, --skip-existing included,
    was refused: the glob now also matched the first run's outputs in v2/seg."""
    tree = tmp_path / "v2"
    (tree / "a").mkdir(parents=True)
    cv2.imwrite(str(tree / "a" / "one.jpg"), photos[0])
    cv2.imwrite(str(tree / "two.jpg"), photos[1])
    code, out, err = fake("v2/**/*.jpg", "-o", "v2/seg", "--extract", "mask")
    assert code == 0 and _summary(out)["images"] == 2, err
    code, out, err = fake("v2/**/*.jpg", "-o", "v2/seg", "--extract", "mask", "--skip-existing")
    assert code == 0 and _summary(out) == {"images": 0, "objects": 0, "failed": 0,
                                           "skipped": 2}, err
    code, out, err = fake("v2/seg", "-o", "v2/seg")  # naming the folder itself: refused
    assert code == 1 and "holds the input" in err
