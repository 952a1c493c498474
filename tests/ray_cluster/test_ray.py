"""pixellib.ray on a real local Ray cluster (started once for this module, stopped after).

The cluster has 2 logical CPUs; actors take half a CPU each so that Ray Data's read tasks
always find one free (actors holding every CPU leave the reads waiting forever). One run with
an injected worker crash produces the rows that several tests check; the CLI then completes
a partial copy of its output with ``--skip-existing``. Images are 160x120, the model the
synthetic ResNet-50 in rapid mode.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
from ray import cloudpickle

from pixellib.cli import main
from pixellib.errors import ImageReadError, InvalidArgumentError
from pixellib.media.images import decode_image, read_image
from pixellib.ray import (
    SegmentBatch,
    read_rows,
    row_detections,
    segment_dataset,
    segment_to_parquet,
)
from pixellib.ray.job import OutputCheckError, check_output, read_shard, shard_paths, write_shard
from pixellib.ray.rows import detections_row, error_row, rows_table

pytestmark = pytest.mark.slow

DATA = Path(__file__).parents[1] / "data" / "images"
OPTIONS = dict(speed="rapid", confidence=0.5)
CRASH_AT = "good_04.jpg"  # the worker dies the first time it reaches this image


class CrashOnce(SegmentBatch):
    """Test-only worker: kills its own process the first time it sees CRASH_AT (a marker
    file makes "first" hold across the restarted process)."""

    marker_dir = ""

    def before_image(self, path: str) -> None:
        with open(Path(self.marker_dir) / "calls.jsonl", "a") as f:  # where each call ran
            f.write(json.dumps({"main_thread": threading.current_thread()
                                is threading.main_thread(), "pid": os.getpid(),
                                "arena_max": os.environ.get("MALLOC_ARENA_MAX")}) + "\n")
        marker = Path(self.marker_dir) / "crashed"
        if Path(path).name == CRASH_AT and not marker.exists():
            marker.write_text(f"{os.getpid()}\n")
            os._exit(1)


KILLER = "good_02.jpg"  # the worker dies every time it reaches this image


class DiesOnOne(SegmentBatch):
    """Test-only worker: an image that kills its process every time (a decoder's segfault,
    the out-of-memory killer)."""

    def before_image(self, path: str) -> None:
        if Path(path).name == KILLER:
            os._exit(1)


# The workers cannot import this test module: ship the subclass by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    temp = tempfile.mkdtemp(prefix="pxray-")  # short: Ray puts unix sockets in it
    try:
        # address="local": a fresh cluster even if another one (or a stale record of a killed
        # one in /tmp/ray) exists on this machine.
        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp,
                 log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """10 small photos (8 JPEG, 2 PNG) and 2 broken files (a truncated JPEG, text)."""
    folder = tmp_path_factory.mktemp("ray_in")
    photos = [cv2.imread(str(DATA / n)) for n in ("street.jpg", "wide.jpg", "small.jpg")]
    for k in range(10):
        photo = photos[k % 3]
        h, w = photo.shape[:2]
        x = (k * w) // 24
        crop = cv2.resize(photo[:, x:x + w * 3 // 4], (160, 120), interpolation=cv2.INTER_AREA)
        crop = crop[:, ::-1] if k % 2 else crop
        ext = ".png" if k >= 8 else ".jpg"
        cv2.imwrite(str(folder / f"good_{k:02d}{ext}"), np.ascontiguousarray(crop))
    whole = (folder / "good_00.jpg").read_bytes()
    (folder / "broken_cut.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "broken_text.png").write_text("not an image\n")
    return folder


@pytest.fixture(scope="module")
def crashed_run(cluster, images, r50_checkpoint, tmp_path_factory):
    """One run over all 12 images in which a worker dies mid-run (batches of 2, 2 actors)."""
    out = tmp_path_factory.mktemp("ray_out")
    marker_dir = tmp_path_factory.mktemp("marker")
    worker = type("CrashOnceHere", (CrashOnce,), {"marker_dir": str(marker_dir)})
    summary = segment_to_parquet(images, out, model=str(r50_checkpoint), **OPTIONS,
                                 concurrency=2, num_cpus=0.5, batch_size=2, rows_per_shard=2,
                                 worker=worker)
    return out, summary, marker_dir / "crashed"


@pytest.fixture(scope="module")
def reference(images, r50_checkpoint):
    """The Predictor's detections for each good image, run here with the worker's 1 thread."""
    import torch

    from pixellib.predictor import Predictor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predictor = Predictor(r50_checkpoint, **OPTIONS)
        return {str(p): predictor(read_image(p)) for p in sorted(images.glob("good_*"))}
    finally:
        torch.set_num_threads(threads)


def _by_path(table) -> dict[str, dict]:
    return {row["path"]: row for row in table.to_pylist()}


def _assert_same(row: dict, det) -> None:
    got = row_detections(row)
    assert got.image_size == det.image_size == (120, 160)
    assert (row["width"], row["height"]) == (160, 120)
    np.testing.assert_array_equal(got.class_ids, det.class_ids)
    assert row["class_names"] == det.class_names
    np.testing.assert_allclose(got.scores, det.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.boxes, det.boxes, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(got.masks, det.masks)


# ----------------------------------------------------------------------------- cluster runs


def test_rows_equal_the_predictors_detections(crashed_run, reference):
    out, summary, _ = crashed_run
    rows = _by_path(read_rows(out))
    assert sum(len(d) for d in reference.values()) > 0  # the comparison compares something
    for path, det in reference.items():
        assert rows[path]["error"] is None
        _assert_same(rows[path], det)
    assert summary.images == 10
    assert summary.objects == sum(len(d) for d in reference.values())


def test_broken_images_become_error_rows(crashed_run, images):
    out, summary, _ = crashed_run
    rows = _by_path(read_rows(out))
    for name, words in (("broken_cut.jpg", "truncated"), ("broken_text.png", "cannot decode")):
        row = rows[str(images / name)]
        assert row["error"].startswith("ImageReadError") and words in row["error"]
        assert name in row["error"]
        assert row["class_ids"] == [] and row["masks_rle"] == [] and row["width"] is None
    assert summary.errors == 2
    assert sorted(Path(p).name for p, _ in summary.failed) == ["broken_cut.jpg",
                                                               "broken_text.png"]


def test_worker_killed_mid_run_loses_and_duplicates_nothing(crashed_run, images):
    out, summary, marker = crashed_run
    assert marker.exists()  # the crash really happened
    assert int(marker.read_text()) != os.getpid()  # ... in a worker, not in this process
    paths = read_rows(out, ["path"]).column("path").to_pylist()
    assert sorted(paths) == sorted(str(p) for p in images.iterdir())  # each exactly once
    check_output(out, paths)
    assert len(shard_paths(out)) == len(summary.shards) >= 2  # rows_per_shard=2


def test_actors_segment_on_their_own_thread_with_one_malloc_arena(crashed_run):
    """Ray Data would call the model on a helper thread, where torch kept ~1.6 of 2 cores
    busy and large freed blocks were not reused (docs/scale-out.md): every call must run on
    the actor's main thread, in a process started with MALLOC_ARENA_MAX=1."""
    _, _, marker = crashed_run
    calls = [json.loads(line) for line in (marker.parent / "calls.jsonl").read_text().splitlines()]
    assert len(calls) >= 12 and len({c["pid"] for c in calls}) >= 2
    assert all(c["main_thread"] for c in calls), calls
    assert all(c["arena_max"] == "1" for c in calls), calls


def test_cli_skip_existing_completes_a_partial_output_as_parquet(crashed_run, images,
                                                                 r50_checkpoint, tmp_path,
                                                                 capsys, monkeypatch):
    out, _, _ = crashed_run
    partial = tmp_path / "partial"
    partial.mkdir()
    kept = shard_paths(out)[: len(shard_paths(out)) // 2]
    for shard in kept:
        shutil.copy2(shard, partial / shard.name)
    shutil.copy2(out / "pixellib-job.json", partial)  # the settings the rows were made with
    done = len(read_rows(partial))
    assert 0 < done < 12
    monkeypatch.chdir(tmp_path)
    argv = ["segment", str(images), "--ray", "-o", str(partial), "--model", str(r50_checkpoint),
            "--speed", "rapid", "--confidence", "0.5"]
    assert main(argv) == 1  # the folder already has results: refused without --skip-existing
    said = capsys.readouterr().err
    assert "--skip-existing" in said and re.search(r"holds \d+ result shards?;", said)
    assert main([*argv[:-1], "0.3", "--skip-existing"]) == 1  # not with another threshold
    assert "confidence 0.5 there, 0.3 now" in capsys.readouterr().err
    assert main([*argv, "--skip-existing"]) == 0
    stdout, stderr = capsys.readouterr()
    line = stdout.strip().splitlines()[-1]
    missing = 12 - done
    errors = sum(1 for s in kept for r in read_shard(s).to_pylist() if r["error"])
    assert re.match(rf"{missing - (2 - errors)} images?, ", line), line
    assert f", {2 - errors} failed, {done} skipped, " in line
    for shard in kept:  # the old shards are untouched
        assert (partial / shard.name).read_bytes() == shard.read_bytes()
    new = [p for p in shard_paths(partial) if p.name not in {s.name for s in kept}]
    assert new and all(pq.read_table(p).num_rows > 0 for p in new)  # readable Parquet
    complete = _by_path(read_rows(partial))
    assert sorted(complete) == sorted(str(p) for p in images.iterdir())
    first = _by_path(read_rows(out))
    for path, row in complete.items():  # same rows as the first run
        assert row["masks_rle"] == first[path]["masks_rle"]
        assert row["error"] == first[path]["error"]


def test_read_images_rows_give_the_same_detections_and_annotated_copies(
        cluster, images, r50_checkpoint, reference, tmp_path):
    from pixellib.ray import annotated_name

    pngs = sorted(str(p) for p in images.glob("good_*.png"))  # lossless: same pixels
    ds = ray.data.read_images(pngs, include_paths=True)
    out = segment_dataset(ds, model=str(r50_checkpoint), **OPTIONS, concurrency=1,
                          num_cpus=0.5, polygons=True, annotate_dir=str(tmp_path / "drawn"))
    rows = {r["path"]: r for r in out.take_all()}
    assert sorted(rows) == pngs
    for path in pngs:
        _assert_same(rows[path], reference[path])
        assert len(json.loads(rows[path]["polygons"])) == len(reference[path])
        drawn = read_image(tmp_path / "drawn" / annotated_name(path))
        assert drawn.shape == (120, 160, 3)
        assert not np.array_equal(drawn, read_image(path)) or not len(reference[path])
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == sorted(
        annotated_name(p) for p in pngs)  # nothing else: no temporary files left


# ----------------------------------------------------------------------------- no cluster


def test_decode_image_equals_read_image_and_names_bad_data(tmp_path):
    data = (DATA / "small.jpg").read_bytes()
    np.testing.assert_array_equal(decode_image(data, "small.jpg"), read_image(DATA / "small.jpg"))
    for bad, words in ((b"", "empty"), (data[:500], "truncated"), (b"GIF", "cannot decode")):
        with pytest.raises(ImageReadError, match=words) as info:
            decode_image(bad, "upload/x.jpg")
        assert "upload/x.jpg" in str(info.value)


def test_image_rows_of_grey_with_alpha_are_segmented_as_their_grey(r50_checkpoint):
    """``read_images`` gives an LA PNG as (H, W, 2): it was an error row, while the same file
    as bytes was segmented."""
    from PIL import Image

    grey = cv2.cvtColor(read_image(DATA / "small.jpg"), cv2.COLOR_BGR2GRAY)
    la = np.asarray(Image.fromarray(grey).convert("LA"))
    assert la.shape == (*grey.shape, 2)
    worker = SegmentBatch(model=str(r50_checkpoint), **OPTIONS)
    rows = worker({"path": np.array(["la.png", "grey.png"]), "image": [la, grey]}).to_pylist()
    assert rows[0]["error"] is None and rows[0]["width"] == grey.shape[1]
    assert {k: v for k, v in rows[0].items() if k != "path"} == {
        k: v for k, v in rows[1].items() if k != "path"}


def test_shards_round_trip_and_the_check_catches_gaps_and_doubles(tmp_path):
    from pixellib.structures import Detections

    det = Detections(np.array([[1, 2, 5, 6]], np.float32), np.array([0.9], np.float32),
                     np.array([2], np.int64), np.zeros((1, 8, 10), bool), (8, 10))
    det.masks[0, 2:5, 3:7] = True
    table = rows_table([detections_row("a.jpg", det, polygons=True), error_row("b.jpg", "bad")])
    for fmt in ("parquet", "jsonl"):
        folder = tmp_path / fmt
        shard = write_shard(folder, table, fmt)
        assert shard == write_shard(folder, table, fmt)  # same rows, same name
        rows = _by_path(read_rows(folder))
        np.testing.assert_array_equal(row_detections(rows["a.jpg"]).masks, det.masks)
        assert rows["b.jpg"]["error"] == "bad"
        check_output(folder, ["a.jpg", "b.jpg"])
        with pytest.raises(OutputCheckError, match="1 inputs have no row"):
            check_output(folder, ["a.jpg", "b.jpg", "c.jpg"])
    write_shard(tmp_path / "jsonl", table.slice(0, 1), "parquet")
    with pytest.raises(OutputCheckError, match="1 have several"):
        check_output(tmp_path / "jsonl", ["a.jpg", "b.jpg"])


def test_cli_ray_refuses_bad_options_and_a_missing_model_before_any_work(tmp_path, capsys,
                                                                        r50_checkpoint):
    image = tmp_path / "a.jpg"
    shutil.copy(DATA / "small.jpg", image)
    for extra, words in ((["--coco", "c.json"], "--coco cannot be combined with --ray"),
                         (["--effect", "gray-bg", "--masks", "m", "--track"],
                          "--effect, --masks, --track cannot be combined with --ray"),
                         (["--model", str(tmp_path / "nope.pkl")], "model file not found")):
        argv = ["segment", str(image), "--ray", "-o", str(tmp_path / "out"), *extra]
        assert main(argv) == 1
        assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # An input right after --ray is taken for its address: one line saying so, no folder.
    # (In a fresh process: this one may hold a Ray connection, which a job then uses.)
    import subprocess

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "pixellib", "segment", "--ray", "in5", str(image), "-o",
         str(tmp_path / "out"), "--model", str(r50_checkpoint)], capture_output=True,
        text=True, timeout=300, cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")))
    assert done.returncode == 1, done.stderr[-2000:]
    assert "cannot connect to a Ray cluster at 'in5'" in done.stderr
    assert "after the inputs" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
    # --format is --ray's; without it the option would be silently ignored: a usage error.
    assert main(["segment", "--ray", str(image), "-o", str(tmp_path / "o.jpg")]) == 2
    assert "put --ray after the inputs" in capsys.readouterr().err  # the input became the address
    assert main(["segment", str(image), "-o", str(tmp_path / "o.jpg"), "--format", "jsonl"]) == 2
    err = capsys.readouterr().err
    assert "--format chooses the result files of --ray" in err and err.startswith("usage:")
    assert not (tmp_path / "o.jpg").exists()


def test_inputs_are_folders_globs_lists_and_uris(tmp_path):
    from pixellib.ray import resolve_inputs
    from pixellib.ray.job import RayJobError, row_id

    (tmp_path / "sub").mkdir()
    for name in ("b.jpg", "a.png", "notes.txt", "sub/c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    folder = [str(tmp_path / "a.png"), str(tmp_path / "b.jpg")]
    assert resolve_inputs(tmp_path) == folder  # images directly in it, sorted, absolute
    assert resolve_inputs([str(tmp_path / "**" / "*.jpg")]) == [str(tmp_path / "b.jpg"),
                                                                 str(tmp_path / "sub/c.jpg")]
    assert resolve_inputs([tmp_path / "b.jpg", str(tmp_path)]) == folder[::-1]  # no repeats
    listed = resolve_inputs(tmp_path.as_uri())  # a remote-style folder: recursive, images only
    assert listed == [f"file://{tmp_path}/{n}" for n in ("a.png", "b.jpg", "sub/c.jpg")]
    assert [row_id(u) for u in listed] == [str(tmp_path / n) for n in ("a.png", "b.jpg",
                                                                          "sub/c.jpg")]
    (tmp_path / "clip.mp4").write_bytes(b"x")
    with pytest.raises(RayJobError, match="videos"):
        resolve_inputs([str(tmp_path / "clip.mp4")])


def test_default_actor_size_leaves_the_read_cpu_and_caps_threads(cluster):
    from pixellib.ray.job import MAX_ACTOR_CPUS, READ_CPUS, default_actor_cpus

    # this cluster has one node of 2 CPUs: one actor of 1 CPU, the other CPU for reading
    assert default_actor_cpus() == 2 - READ_CPUS == 1
    assert 1 <= default_actor_cpus() <= MAX_ACTOR_CPUS


def test_an_image_that_kills_its_worker_every_time_is_an_error_row(cluster, images,
                                                                   r50_checkpoint, tmp_path,
                                                                   reference):
    """Ray Data retried such a batch for ever: the job never ended and wrote nothing."""
    from pixellib.ray.job import MAX_TASK_RETRIES

    inputs = sorted(str(p) for p in images.glob("good_0[0-5].jpg"))
    summary = segment_to_parquet(inputs, tmp_path / "out", model=str(r50_checkpoint),
                                 **OPTIONS, concurrency=1, num_cpus=1, batch_size=2,
                                 worker=DiesOnOne)
    rows = _by_path(read_rows(tmp_path / "out"))
    assert sorted(rows) == inputs  # every image has its row, once
    killer = str(images / KILLER)
    assert rows[killer]["error"].startswith("WorkerDied: the worker process died on this "
                                            f"image {MAX_TASK_RETRIES + 1} times")
    assert summary.failed == [(killer, rows[killer]["error"])] and summary.errors == 1
    for path in inputs:  # the others, before and after it, are segmented as usual
        if path != killer:
            assert rows[path]["error"] is None
            _assert_same(rows[path], reference[path])
    assert summary.images == len(inputs) - 1


def test_sizes_the_cluster_cannot_run_are_refused_at_once(cluster, images, r50_checkpoint,
                                                         tmp_path, monkeypatch):
    """A GPU actor on a cluster without GPUs, or actors holding every CPU (nothing left to
    read with), waited for ever; sizes Ray refuses failed deep in the job. Each is refused
    before anything runs, and no output folder is left behind."""
    from pixellib.errors import RayJobError

    inputs = [str(images / "good_00.jpg")]
    out = tmp_path / "out"
    for options, words in (
            (dict(num_gpus=1), "the Ray cluster has no GPU, and each actor needs 1"),
            (dict(num_cpus=2), "need 3 CPUs, and the Ray cluster has 2"),
            (dict(concurrency=5, num_cpus=0.5), "need 3.5 CPUs"),
            (dict(num_cpus=0), "num_cpus must be a number above 0, got 0"),
            (dict(num_gpus=-1), "num_gpus must be a number, 0 or more"),
            (dict(batch_size=0), "batch_size must be a whole number, at least 1"),
            (dict(concurrency=0), "concurrency must be a whole number"),
            (dict(rows_per_shard=0), "rows_per_shard must be a whole number"),
            (dict(classes=[999]), "classes: class id must be in 0..79, got 999"),
            (dict(classes="25"), "classes: unknown class name '25'")):
        with pytest.raises(RayJobError, match=re.escape(words)):
            segment_to_parquet(inputs, out, model=str(r50_checkpoint), **options)
        assert not out.exists(), options
    # A pixel limit the workers cannot read made every row an error.
    with monkeypatch.context() as env:
        env.setenv("PIXELLIB_MAX_PIXELS", "100M")
        with pytest.raises(InvalidArgumentError, match="PIXELLIB_MAX_PIXELS .*'100M'"):
            segment_to_parquet(inputs, out, model=str(r50_checkpoint))
        assert not out.exists()
    # Results that could not be written were found after the whole job had run.
    (tmp_path / "file").write_text("x")
    with pytest.raises(RayJobError, match="cannot write results in .*file/out"):
        segment_to_parquet(inputs, tmp_path / "file" / "out", model=str(r50_checkpoint))


def test_the_workers_get_the_drivers_pixel_limit(cluster, images, r50_checkpoint, tmp_path,
                                                 monkeypatch):
    """PIXELLIB_MAX_PIXELS, which the error message tells users to set, did not reach the
    workers of a cluster."""
    monkeypatch.setenv("PIXELLIB_MAX_PIXELS", "1000")
    summary = segment_to_parquet([str(images / "good_00.jpg")], tmp_path / "out",
                                 model=str(r50_checkpoint), **OPTIONS)
    (row,) = read_rows(tmp_path / "out").to_pylist()
    assert "over the limit of 1000 pixels" in row["error"] and summary.errors == 1


@pytest.mark.parametrize("cpus,per_actor,actors", [
    (1, 0.5, 1),
    (2, 1.0, 1), (3, 2.0, 1), (5, 4.0, 1), (6, 2.5, 2), (16, 3.75, 4), (64, 63 / 16, 16)])
def test_default_actor_size_on_bigger_nodes(monkeypatch, cpus, per_actor, actors):
    from pixellib.ray import job

    monkeypatch.setattr(job.ray, "nodes", lambda: [
        {"Alive": True, "Resources": {"CPU": float(cpus)}},
        {"Alive": False, "Resources": {"CPU": 999.0}}])  # a dead node does not count
    size = job.default_actor_cpus()
    assert size == pytest.approx(per_actor)
    assert size <= job.MAX_ACTOR_CPUS
    assert int((cpus - job.read_cpus(cpus)) / size + 1e-9) == actors  # the pool fills the node
    assert actors * size + job.read_cpus(cpus) <= cpus  # and leaves the reading its CPU


def test_unreadable_files_become_error_rows_without_stopping_the_job(r50_checkpoint,
                                                                     tmp_path):
    """Ray's reader stops the whole job on a file it cannot open: a broken link gets its
    error row before Ray starts (no cluster is needed when nothing else is left)."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    os.mkfifo(folder / "pipe.jpg")  # it stopped the whole job with a bare FileNotFoundError
    summary = segment_to_parquet([str(folder), str(folder / "pipe.jpg")], tmp_path / "out",
                                 model=str(r50_checkpoint))
    assert summary.errors == 2 and summary.images == 0
    rows = _by_path(read_rows(tmp_path / "out"))
    assert "broken link" in rows[str(folder / "gone.jpg")]["error"]
    assert "not a regular file" in rows[str(folder / "pipe.jpg")]["error"]


def test_a_file_gone_after_the_job_started_is_an_error_row(cluster, images, r50_checkpoint,
                                                          tmp_path, monkeypatch):
    """On a bucket read for hours, files move: one deleted after the job's own check (here
    right after it, so that Ray's reader meets it) stopped the whole job with a bare
    FileNotFoundError and no row for the others."""
    from pixellib.ray import job

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("good_00.jpg", "good_01.jpg", "good_03.jpg"):
        shutil.copy(images / name, folder / name)
    doomed, check = str(folder / "good_01.jpg"), job._unreadable
    checked: set[str] = set()

    def check_then_delete(path):
        if path == doomed and path not in checked:  # found readable, then deleted
            checked.add(path)
            os.unlink(path)
            return None
        return check(path)

    monkeypatch.setattr(job, "_unreadable", check_then_delete)
    summary = segment_to_parquet(folder, tmp_path / "out", model=str(r50_checkpoint),
                                 **OPTIONS, concurrency=1, batch_size=1)
    assert summary.errors == 1 and summary.images == 2
    rows = _by_path(read_rows(tmp_path / "out"))
    assert set(rows) == {str(folder / n) for n in ("good_00.jpg", "good_01.jpg", "good_03.jpg")}
    assert rows[doomed]["error"].startswith("image not found (it changed after the job")
    assert all(rows[str(folder / n)]["error"] is None for n in ("good_00.jpg", "good_03.jpg"))


def test_names_that_are_not_utf8_are_refused_up_front(r50_checkpoint, tmp_path):
    from pixellib.errors import RayJobError

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(Path(__file__).parents[1] / "data" / "images" / "small.jpg",
                os.fsencode(folder) + b"/latin\xe9.jpg")
    with pytest.raises(RayJobError, match="not valid UTF-8"):
        segment_to_parquet(folder, tmp_path / "out", model=str(r50_checkpoint))
    assert not (tmp_path / "out").exists()


def test_read_rows_needs_a_result_folder(tmp_path):
    from pixellib.errors import InputNotFoundError

    with pytest.raises(InputNotFoundError, match="does not exist"):
        read_rows(tmp_path / "typo")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputNotFoundError, match="it is a file"):
        read_rows(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    assert read_rows(tmp_path / "empty").num_rows == 0
    from pixellib.errors import RayJobError

    for name, data in (("part-cut.parquet", b"PAR1 and then nothing"),
                       ("part-bad.jsonl", b'{"path": "b.jpg"}\n\n{"path": "a.jpg"\n')):
        folder = tmp_path / name.split(".")[1]
        folder.mkdir()
        (folder / name).write_bytes(data)
        with pytest.raises(RayJobError, match=f"{name}: not a readable result shard") as e:
            read_rows(folder)
        if name.endswith(".jsonl"):  # the file's line, not the line within the row
            assert "line 3: " in str(e.value), str(e.value)


def test_skip_existing_keeps_the_folders_format(r50_checkpoint, tmp_path, capsys):
    """Completing a JSON Lines folder without --format writes JSON Lines, not Parquet beside
    it (no cluster needed: what is left is a broken link, answered with an error row)."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    shutil.copy(DATA / "small.jpg", folder / "a.jpg")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    write_shard(out, rows_table([error_row(str(folder / "a.jpg"), "done before")]), "jsonl")
    argv = ["segment", str(folder), "--ray", "-o", str(out), "--model", str(r50_checkpoint),
            "--skip-existing"]
    assert main(argv) == 1  # the only image segmented this time failed
    assert "broken link" in capsys.readouterr().err
    assert {p.suffix for p in shard_paths(out)} == {".jsonl"} and len(shard_paths(out)) == 2


def test_completing_a_folder_needs_the_settings_it_was_made_with(r50_checkpoint, tmp_path,
                                                                  caplog):
    """The first job records its settings beside its rows; completing the folder with another
    threshold, model or classes is refused before any work, naming both values (no cluster
    needed: the inputs left are broken links, answered with error rows)."""
    from pixellib.errors import RayJobError
    from pixellib.ray.settings import SETTINGS_FILE

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    (folder / "a.jpg").symlink_to(tmp_path / "nowhere_a.jpg")
    segment_to_parquet(folder, out, model=str(r50_checkpoint), **OPTIONS)
    recorded = json.loads((out / SETTINGS_FILE).read_text())
    assert recorded["confidence"] == 0.5 and recorded["speed"] == "rapid"
    assert len(recorded["model"]["sha256"]) == 64 and recorded["classes"] is None
    (folder / "b.jpg").symlink_to(tmp_path / "nowhere_b.jpg")
    other_model = tmp_path / "other.pkl"
    shutil.copy(r50_checkpoint, other_model)
    with open(other_model, "ab") as f:
        f.write(b"\0")  # another file: another digest
    before = sorted(p.name for p in out.iterdir())
    for change, said in ((dict(confidence=0.3), "confidence 0.5 there, 0.3 now"),
                         (dict(speed=None, confidence=0.5), "speed 'rapid' there, 'default' now"),
                         (dict(classes=[0, 2]), "classes all classes there, class ids [0, 2] now"),
                         (dict(model=str(other_model)), "'other.pkl' (sha256")):
        options = {"model": str(r50_checkpoint), **OPTIONS, **change}
        with pytest.raises(RayJobError, match="holds results made with other settings") as e:
            segment_to_parquet(folder, out, skip_existing=True, **options)
        assert said in str(e.value), str(e.value)
        assert sorted(p.name for p in out.iterdir()) == before  # nothing written
    same_model = tmp_path / "renamed.pkl"  # the same file elsewhere: the same model
    shutil.copy(r50_checkpoint, same_model)
    summary = segment_to_parquet(folder, out, model=str(same_model), **OPTIONS,
                                 skip_existing=True)
    assert summary.skipped == 1 and summary.errors == 1
    assert json.loads((out / SETTINGS_FILE).read_text()) == recorded
    # A folder written before the record existed is completed, with a warning.
    (out / SETTINGS_FILE).unlink()
    (folder / "c.jpg").symlink_to(tmp_path / "nowhere_c.jpg")
    with caplog.at_level("WARNING", logger="pixellib.ray.settings"):
        segment_to_parquet(folder, out, model=str(r50_checkpoint), speed="rapid", confidence=0.3,
                           skip_existing=True)
    assert "without checking that the settings match" in caplog.text
    assert len(read_rows(out)) == 3
    (out / SETTINGS_FILE).write_text("{not json")
    with pytest.raises(RayJobError, match=f"{SETTINGS_FILE}: not a settings record"):
        segment_to_parquet(folder, out, model=str(r50_checkpoint), **OPTIONS,
                           skip_existing=True)


def test_an_address_where_nothing_listens_fails_at_once(tmp_path, r50_checkpoint):
    """Ray retries a silent head address for minutes; the job says at once that nothing
    answers there (in a fresh process: this one may hold a Ray connection)."""
    import socket
    import subprocess
    import time

    from pixellib.ray.job import _unreachable

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert _unreachable(f"127.0.0.1:{port}") is None
    assert "cannot be reached" in _unreachable(f"127.0.0.1:{port}")  # closed now
    assert _unreachable("auto") is None and _unreachable("in5") is None  # Ray's to judge
    image = tmp_path / "in" / "a.jpg"
    image.parent.mkdir()
    shutil.copy(DATA / "small.jpg", image)
    root = Path(__file__).resolve().parents[2]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pixellib", "segment", str(image.parent), "--ray",
         f"127.0.0.1:{port}", "-o", str(tmp_path / "out"), "--model", str(r50_checkpoint)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")))
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"cannot connect to a Ray cluster at '127.0.0.1:{port}'" in done.stderr
    assert "ray start --head" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 60 and not (tmp_path / "out").exists()


def test_ray_init_leaves_the_callers_sigterm_handler():
    """ray.init replaced the CLI's SIGTERM handler (which deletes half-written files and exits
    with 143) by its own sys.exit(15)."""
    import signal

    from pixellib.ray.job import _keeps_sigterm

    def ours(signum, frame):
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        with _keeps_sigterm():
            signal.signal(signal.SIGTERM, lambda *a: None)  # what ray.init does
        assert signal.getsignal(signal.SIGTERM) is ours
        # a SIGTERM while ray.init ran met Ray's sys.exit(15): exit status 15, no word
        with pytest.raises(SystemExit) as stopped, _keeps_sigterm():
            raise SystemExit(15)
        assert stopped.value.code == 143 and signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_local_cluster_stopped_while_it_starts_leaves_no_folder(monkeypatch, tmp_path):
    """Ctrl-C or SIGTERM during ray.init left its /tmp/pixellib-ray-* folder behind."""
    from pixellib.ray import job

    def interrupted(**kwargs):
        assert Path(kwargs["_temp_dir"]).is_dir()
        raise KeyboardInterrupt

    shut = []
    monkeypatch.setattr(job.ray, "is_initialized", lambda: False)  # (a test's cluster may be)
    monkeypatch.setattr(job.ray, "init", interrupted)
    monkeypatch.setattr(job.ray, "shutdown", lambda: shut.append(True))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(KeyboardInterrupt), job.connected("local"):
        pass
    assert list(tmp_path.iterdir()) == [] and shut == [True]


def test_a_users_dataset_on_a_one_cpu_cluster_is_refused_not_left_waiting(monkeypatch):
    """segment_dataset over a dataset read at Ray's default (1 CPU a read task) on a 1-CPU
    cluster: the actor took half a CPU and the reading waited for ever for a whole one."""
    from pixellib.errors import ModelNotFoundError, RayJobError
    from pixellib.ray import job

    monkeypatch.setattr(job.ray, "cluster_resources", lambda: {"CPU": 1.0})
    monkeypatch.setattr(job.ray, "nodes", lambda: [{"Alive": True,
                                                    "Resources": {"CPU": 1.0}}])
    with pytest.raises(RayJobError, match=r"need 1\.5 CPUs, and the Ray cluster has 1: read "
                                          r"the dataset with num_cpus=0\.5"):
        job.segment_dataset(None, model="no-such-model.pkl")
    with pytest.raises(ModelNotFoundError):  # read at half a CPU, said: past the check
        job.segment_dataset(None, model="no-such-model.pkl", read_num_cpus=0.5)


def test_cli_ray_checks_the_device(tmp_path, capsys):
    """--device bogus (or mps) ran on the CPU without a word."""
    image = tmp_path / "a.jpg"
    shutil.copy(DATA / "small.jpg", image)
    for device, words in (("bogus", "invalid --device 'bogus'"),
                          ("mps", "the actors run on the cpu or on a cuda GPU")):
        argv = ["segment", str(image), "--ray", "-o", str(tmp_path / "out"), "--device", device]
        assert main(argv) == 1
        assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_readme_and_scale_out_examples_run_verbatim(cluster, images, r50_checkpoint,
                                                        tmp_path, monkeypatch):
    """The Python examples of README's "Many machines: Ray" and of docs/scale-out.md's start,
    run as written in a folder holding ``photos/`` (the model name "resnet50" resolves to the
    cached file: here the synthetic checkpoint)."""
    import contextlib
    import io

    from doc_blocks import python_blocks
    from pixellib.checkpoint.hub import cached_model_path

    monkeypatch.setenv("PIXELLIB_HOME", str(tmp_path / "home"))
    cached_model_path("resnet50").parent.mkdir(parents=True)
    shutil.copy(r50_checkpoint, cached_model_path("resnet50"))
    (tmp_path / "photos").mkdir()
    for name in ("good_00.jpg", "good_01.jpg"):
        shutil.copy(images / name, tmp_path / "photos" / name)
    root = Path(__file__).parents[2]
    blocks = [(doc, line, code) for doc in ("README.md", "docs/scale-out.md")
              for line, code in python_blocks((root / doc).read_text("utf-8"))
              if "segment_to_parquet(" in code]
    assert len(blocks) == 2, blocks
    monkeypatch.chdir(tmp_path)
    for doc, line, code in blocks:
        shutil.rmtree(tmp_path / "results", ignore_errors=True)
        namespace: dict = {}
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"{doc}:{line}", "exec"), namespace)
        summary, det = namespace["summary"], namespace["det"]
        assert (summary.images, summary.errors) == (2, 0), (doc, summary)
        assert len(det) == len(det.masks) and det.masks.dtype == bool
        paths = read_rows(tmp_path / "results").column("path").to_pylist()
        assert sorted(Path(p).name for p in paths) == ["good_00.jpg", "good_01.jpg"]
        if doc == "README.md":
            assert printed.getvalue().split()[:3] == ["2", str(summary.objects), "0"]


def test_a_ray_client_address_is_refused_saying_what_to_run_instead(tmp_path, capsys):
    """`--ray ray://HOST:10001` was documented, but the job's results stream back through
    Ray Data's iterators, which fail under Ray Client ("'Worker' object has no attribute
    'core_worker'", after the connection was made, with a traceback)."""
    image = tmp_path / "in" / "a.jpg"
    image.parent.mkdir()
    shutil.copy(DATA / "small.jpg", image)
    code = main(["segment", str(image.parent), "--ray", "ray://127.0.0.1:1", "-o",
                 str(tmp_path / "out"), "--model", "nowhere.pkl"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert "cannot run on 'ray://127.0.0.1:1': a ray:// address is Ray Client's; Ray Data" in err
    assert "--ray auto or --ray HEAD_HOST:6379" in err
    assert not (tmp_path / "out").exists()


def test_ray_auto_with_a_ray_client_address_in_the_environment_is_refused(
        tmp_path, capsys, monkeypatch, r50_checkpoint):
    """Ray takes $RAY_ADDRESS for `auto`: a ray:// one went to Ray Client all the same."""
    image = tmp_path / "in" / "a.jpg"
    image.parent.mkdir()
    shutil.copy(DATA / "small.jpg", image)
    monkeypatch.setenv("RAY_ADDRESS", "ray://127.0.0.1:1")
    if ray.is_initialized():  # (a connection already made is used as it is)
        ray.shutdown()
    code = main(["segment", str(image.parent), "--ray", "auto", "-o", str(tmp_path / "out"),
                 "--model", str(r50_checkpoint)])
    err = capsys.readouterr().err
    assert code == 1 and "cannot run on 'ray://127.0.0.1:1': a ray:// address is Ray " in err


def _processes_with(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_the_cli_joins_a_cluster_started_on_its_own(tmp_path, r50_checkpoint):
    """`--ray HOST:PORT` joins a cluster started with `ray start --head`, as on a node of a real
    cluster (the other tests start theirs in-process). Ray turns token authentication on for
    a head started where a token exists, and a driver given an explicit address then fails
    after ~20 s of retries unless RAY_AUTH_MODE=token: the error says so."""
    import signal
    import socket
    import subprocess
    import time

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("small.jpg", "wide.jpg"):
        shutil.copy(DATA / name, folder / name)
    home = tmp_path / "home"  # a token of its own, in ~/.ray/auth_token
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("pixellib-test-" + "0" * 50)
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), OMP_NUM_THREADS="1",
               PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    temp = tempfile.mkdtemp(prefix="pxhead-")  # short: Ray puts unix sockets in it
    port = free_port()
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
         "--port", str(port), "--num-cpus", "2", "--temp-dir", temp,
         "--include-dashboard", "false", "--disable-usage-stats",
         "--object-store-memory", str(200 << 20),
         # ports of its own: this module's in-process cluster holds the defaults
         "--dashboard-agent-listen-port", str(free_port()),
         "--dashboard-agent-grpc-port", str(free_port()),
         "--runtime-env-agent-port", str(free_port()),
         "--metrics-export-port", str(free_port())],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "head.err", "w"))  # noqa: SIM115 - closed with the process
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, (tmp_path / "head.err").read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the head never listened"
                time.sleep(0.5)

        def segment(out: str, **extra_env) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "pixellib", "segment", str(folder), "--ray",
                 f"127.0.0.1:{port}", "-o", str(tmp_path / out), "--model",
                 str(r50_checkpoint), "--speed", "rapid"],
                capture_output=True, text=True, timeout=300, cwd=tmp_path,
                env=dict(env, **extra_env))

        refused = segment("refused")
        assert refused.returncode == 1, refused.stderr[-2000:]
        said = [line for line in refused.stderr.splitlines() if line.startswith("pixellib:")]
        assert len(said) == 1 and "cannot connect to a Ray cluster at" in said[0], said
        assert "set RAY_AUTH_MODE=token here" in said[0]
        assert "Traceback" not in refused.stderr and not (tmp_path / "refused").exists()

        done = segment("out", RAY_AUTH_MODE="token")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "2 images" in done.stdout and ", 0 failed" in done.stdout, done.stdout
        rows = read_rows(tmp_path / "out")
        assert sorted(Path(p).name for p in rows.column("path").to_pylist()) == [
            "small.jpg", "wide.jpg"]
        assert rows.column("error").to_pylist() == [None, None]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=20)
        for pid in [head.pid, *_processes_with(temp)]:  # gcs_server may outlive a SIGTERM
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


_SLOW_JOB = """
import json, sys, time
from pathlib import Path
from pixellib.ray import SegmentBatch, segment_to_parquet

LOG = Path(sys.argv[3])


class Slow(SegmentBatch):  # defined in __main__: Ray ships it by value
    def before_image(self, path):
        time.sleep(1.5)

    def __call__(self, batch):
        rows = super().__call__(batch)
        with open(LOG, "a") as f:  # this batch is done and goes back to the driver
            f.write(json.dumps([time.time(), [str(p) for p in batch["path"]]]) + "\\n")
        return rows


segment_to_parquet(sys.argv[1], sys.argv[2], model=sys.argv[4], speed="rapid",
                   batch_size=3, concurrency=1, worker=Slow)
"""


def test_a_stop_keeps_every_batch_the_workers_finished(tmp_path, images, r50_checkpoint):
    """Ctrl-C kept none of the 27 images a run had finished: Ray Data hands a finished block
    to the driver only when the next one is done (its prefetching), and its read blocks held
    a quarter of the inputs each, returned whole at the end of their task."""
    import signal
    import subprocess
    import time

    script = tmp_path / "job.py"
    script.write_text(_SLOW_JOB)
    log, out = tmp_path / "done.jsonl", tmp_path / "out"
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    job = subprocess.Popen([sys.executable, str(script), str(images), str(out), str(log),
                            str(r50_checkpoint)], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           # a run started in the background has SIGINT ignored: Ctrl-C's own
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not (log.exists() and log.read_text().count("\n") >= 1):
            assert job.poll() is None, job.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no batch was finished"
            time.sleep(0.2)
        # time enough for a finished batch to reach the driver, not for the next (3 images
        # of 1.5 s each) to be done
        time.sleep(2.5)
        signalled = time.time()
        job.send_signal(signal.SIGINT)
        stderr = job.communicate(timeout=120)[1]
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    done = [json.loads(line) for line in log.read_text().splitlines()]
    finished = {path for at, paths in done if at < signalled - 2 for path in paths}
    assert job.returncode != 0 and "KeyboardInterrupt" in stderr, stderr[-3000:]
    saved = set(read_rows(out, ["path"]).column("path").to_pylist())
    assert len(finished) >= 3 and finished <= saved, (sorted(finished), sorted(saved))


def test_classes_are_ids_or_names_and_checked_in_every_ray_entry_point(r50_checkpoint):
    """SegmentBatch took classes='25' as [2, 5] (car, bus) and [25.7] as [25], silently;
    segment_to_parquet took ids only, and read classes='umbrella' letter by letter."""
    from pixellib.errors import RayJobError
    from pixellib.ray import SegmentBatch
    from pixellib.ray.job import _class_ids

    assert _class_ids(["umbrella", 0, "traffic_light", "Hair Drier"]) == [25, 0, 9, 78]
    assert _class_ids("umbrella") == [25] and _class_ids(None) is None
    for bad, words in (("25", "unknown class name '25'"), ([25.7], "got 25.7"),
                       ([True], "got True"), ([100], "0..79, got 100")):
        with pytest.raises(RayJobError, match=re.escape(words)):
            _class_ids(bad)
        with pytest.raises(InvalidArgumentError, match=re.escape(words)):
            SegmentBatch(str(r50_checkpoint), classes=bad)
    assert SegmentBatch(str(r50_checkpoint), classes=("cat", 25)).classes == [15, 25]
