"""The benchmark script's command line and report, without running any model."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("_pixellib_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_help(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--help"])
    assert exc.value.code == 0
    assert "--reference" in capsys.readouterr().out


def test_quick_defaults(bench):
    args = bench.parse_args(["--quick"])
    assert (args.runs, args.warmup, args.batch_size, args.images) == (1, 0, 4, ["street.jpg"])
    assert args.video_frames == 4 and "video" in args.parts
    assert args.out is None  # a smoke run does not overwrite docs/benchmarks.md


@pytest.mark.parametrize("argv", [["--modes", "slow"], ["--parts", "videos"],
                                  ["--images", "nope.jpg"], ["--runs", "0"]])
def test_bad_options(bench, argv):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2


def test_render_and_write(bench, tmp_path):
    report = sys.modules["_report"]
    rep = {"times": [2.0], "counts": [34]}
    done = {"peak_kb": 2048 * 1024, "load_peak_kb": 1024, "after_load_peak_kb": 2048 * 1024}
    job = bench.Job("r50/image/default", "image", images=["x/street.jpg"],
                    impls=("ours", "ref"), runs=1)
    job.results = {"ours": {"reps": [rep], "done": done},
                   "ref": {"reps": [{"times": [5.0], "counts": [34]}], "done": done}}
    data = {"meta": {"command": "bench.py", "started": "t0", "finished": "t1", "quick": False,
                     "machine": {"platform": "p"}, "device": "cpu", "threads": 2, "runs": 1,
                     "warmup": 1, "load_before": "0", "load_after": "0", "reference": "py",
                     "matmul_n": 4096},
            "jobs": [bench.asdict(job)]}
    video = bench.Job("r50/video/default", "video", video="clip.mp4", impls=("ours", "ref"),
                      runs=1)
    video.results = {"ours": {"reps": [{"times": [50.0], "counts": [100]}], "done": done},
                     "ref": {"reps": [{"times": [100.0], "counts": [100]}], "done": done}}
    data["jobs"].append(bench.asdict(video))
    text = report.render(data)
    assert "| r50 | default | street.jpg | 2.000 | 5.000 | 2.50× | 34 / 34 |" in text
    assert "segmentImage default, speed-up (median of photos) | 2.50× | 2.40× | met" in text
    assert "## process_video" in text
    assert "| 100 | 2.000 | 1.000 | 2.00× |" in text  # frames, ours/s, PixelLib/s, gain
    assert ("process_video frames/s, gain | 2.00× | 2.60× | **short** (2.00× vs 2.60×)"
            in text)
    assert "peer runtimes" not in text  # not asked for: no section
    data["meta"]["peers"] = {
        "input": [800, 1216], "threads": 2, "runs": 3, "torch": "2.13.0",
        "contenders": [{"name": "ours (eager)", "seconds": [2.0, 2.2, 1.9], "max_rel_diff": 0.0},
                       {"name": "OpenVINO 2026.4.1 (f32 hint)", "seconds": [3.0, 2.9, 3.3],
                        "max_rel_diff": 3.2e-6}],
        "skipped": {"ONNX Runtime": "not installed (onnxruntime)"}}
    text = report.render(data)
    assert "## Keeping the lead: backbone + FPN against the peer runtimes" in text
    assert "street.jpg resized to 1216x800" in text
    assert "| ours (eager) | 2.000 | 1.00× | 0.0e+00 |" in text
    assert "| OpenVINO 2026.4.1 (f32 hint) | 3.000 | 1.50× | 3.2e-06 |" in text
    assert "| ONNX Runtime | skipped: not installed (onnxruntime) |  |  |" in text
    failed = {**data, "meta": {**data["meta"], "peers": {"error": "peers.py exited with 1"}}}
    assert "- `peers`: peers.py exited with 1" in report.render(failed)
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nNotes kept.\n")
    report.write(out, text)
    report.write(out, text)
    written = out.read_text()
    assert written.startswith("# Benchmarks\n\nNotes kept.\n")
    assert written.count(report.BEGIN) == 1 and text in written
