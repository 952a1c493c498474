"""Where the Ray path loses time against the CLI (docs/scale-out.md): the same per-image work
(decode the bytes, segment, build the result row) timed three ways, each in a fresh process:

* ``inproc``: a plain Python loop over a ``SegmentBatch`` in one process (the CLI's situation);
* ``actor``: the same loop inside one plain Ray actor of ``--threads`` CPUs on a local cluster;
* ``data``: Ray Data's actor pool (``pixellib.ray.segment_to_parquet``), timed per image
  inside the actor by a ``SegmentBatch`` subclass.

It also counts the CPU time every other process on the machine used meanwhile (Ray's raylet,
GCS, helper actors, read tasks, the driver), so a gap can be told apart into "the model runs
slower in Ray's process" and "Ray's own processes take CPU from it".

    .venv/bin/python benchmarks/ray_overhead.py --images 24 --model ckpt.pkl
    .venv/bin/python benchmarks/ray_overhead.py --images 4 --modes inproc,actor   # smoke test

Run it alone on the machine: it is a timing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from ray_throughput import Poller, make_images  # noqa: E402

MODES = ("inproc", "actor", "data")
WARMUP = 2  # images left out of the per-image figures (first calls allocate and warm caches)
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds_by_process(exclude: set[int]) -> dict[int, tuple[str, float]]:
    """{pid: (name, user+system CPU seconds)} of every process but ``exclude`` (Linux /proc)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        words = cmd.split()
        label = (words[0].rsplit("/", 1)[-1] if words else "") or name
        if "python" in label and len(words) > 1:
            label = f"{label} {Path(words[1]).name}"
        out[int(entry)] = (label[:60], (int(fields[11]) + int(fields[12])) / TICK)
    return out


class CpuSampler(Poller):
    """Samples every process's CPU time twice a second while it runs, so processes that start
    and end meanwhile (a Ray cluster) are counted; ``used()``: CPU seconds by label."""

    def __init__(self, exclude: set[int]):
        super().__init__()
        self.exclude = exclude
        self.first = cpu_seconds_by_process(exclude)
        self.last = dict(self.first)
        self.series = [(time.time(), dict(self.first))]

    def poll(self):
        snap = cpu_seconds_by_process(self.exclude)
        self.last.update(snap)
        self.series.append((time.time(), snap))

    def rates(self, start: float, end: float) -> dict[str, float]:
        """Cores each label used between two wall-clock times (the samples nearest inside)."""
        inside = [(t, snap) for t, snap in self.series if start <= t <= end]
        if len(inside) < 2:
            return {}
        (t0, a), (t1, b) = inside[0], inside[-1]
        used: dict[str, float] = {}
        for pid, (label, seconds) in b.items():
            used[label] = used.get(label, 0.0) + seconds - a.get(pid, (label, seconds))[1]
        return {k: round(v / (t1 - t0), 3) for k, v in sorted(used.items(), key=lambda kv: -kv[1])
                if v / (t1 - t0) > 0.002}

    def used(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for pid, (label, seconds) in self.last.items():
            used[label] = used.get(label, 0.0) + seconds - self.first.get(pid, (label, 0.0))[1]
        return {k: round(v, 2) for k, v in sorted(used.items(), key=lambda kv: -kv[1])
                if v > 0.05}


def _timed_loop(worker, paths: list[str]) -> list[float]:
    """Per-image seconds of what ``SegmentBatch.__call__`` does for one row."""
    from pixellib.media.images import decode_image

    times, window = [], []
    for k, path in enumerate(paths):
        data = Path(path).read_bytes()
        start = time.perf_counter()
        if k == min(WARMUP, len(paths) - 1):
            window.append(time.time())
        worker._segment(path, decode_image(data, path))
        times.append(time.perf_counter() - start)
    window.append(time.time())
    return {"times": times, "window": window}


def _faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _facts() -> dict:
    import torch

    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_ARENA_MAX", "LD_PRELOAD",
            "PIXELLIB_NO_HEAP_REUSE")
    return {"torch_threads": torch.get_num_threads(),
            "affinity": sorted(os.sched_getaffinity(0)),
            "env": {k: os.environ[k] for k in keys if k in os.environ},
            "pid": os.getpid()}


def child(mode: str, paths: list[str], model: str, threads: int, stamps: str) -> dict:
    if mode == "inproc":
        import torch

        from pixellib.ray.worker import SegmentBatch

        torch.set_num_threads(threads)
        worker = SegmentBatch(model)
        return {**_timed_loop(worker, paths), "facts": _facts()}

    import ray

    from pixellib.ray.job import connected

    with connected(None):
        if mode == "actor":
            @ray.remote(num_cpus=threads)
            class Timed:
                def __init__(self):
                    from pixellib.ray.worker import SegmentBatch

                    self.worker = SegmentBatch(model)

                def run(self, paths):
                    return {**_timed_loop(self.worker, paths), "facts": _facts()}

            actor = Timed.remote()
            return ray.get(actor.run.remote(paths))

        from pixellib.ray import segment_to_parquet
        from pixellib.ray.worker import SegmentBatch

        class StampedBatch(SegmentBatch):
            """Appends (path, start, end) of each image's work to the stamps file."""

            def _segment(self, path, image):
                start, faults = time.time(), _faults()
                try:
                    return super()._segment(path, image)
                finally:
                    facts = {**_facts(), "page_faults": _faults() - faults}
                    with open(stamps, "a") as f:
                        f.write(json.dumps([path, start, time.time(), facts]) + "\n")

        with tempfile.TemporaryDirectory() as out:
            segment_to_parquet(paths, out, model=model, num_cpus=threads, concurrency=1,
                               worker=StampedBatch)
        rows = [json.loads(line) for line in Path(stamps).read_text().splitlines()]
        order = {p: k for k, p in enumerate(paths)}
        rows.sort(key=lambda r: order[r[0]])
        ends = sorted(r[2] for r in rows)
        steady = sorted(r[1] for r in rows)[min(WARMUP, len(rows) - 1)]
        facts = rows[-1][3]
        facts["page_faults"] = [r[3]["page_faults"] for r in rows]
        return {"times": [r[2] - r[1] for r in rows], "window": [steady, ends[-1]],
                "facts": facts}


def run_mode(mode: str, paths: list[str], args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        result = Path(tmp) / "result.json"
        spec.write_text(json.dumps({"mode": mode, "paths": paths, "model": args.model,
                                    "threads": args.threads,
                                    "stamps": str(Path(tmp) / "stamps.jsonl")}))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                                       os.environ.get("PYTHONPATH")])))
        with CpuSampler({os.getpid()}) as sampler:
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--child", str(spec),
                                   str(result)], env=env)
            wall = time.perf_counter() - start
        used = sampler.used()
        if proc.returncode:
            raise SystemExit(f"{mode}: child failed ({proc.returncode})")
        out = json.loads(result.read_text())
    steady = out["times"][WARMUP:] or out["times"]
    return {"mode": mode, "wall_s": round(wall, 1), "images": len(out["times"]),
            "median_s": round(statistics.median(steady), 3),
            "mean_s": round(statistics.fmean(steady), 3), "facts": out["facts"],
            "cpu_s_by_process": used, "cores_while_steady": sampler.rates(*out["window"])}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--model", help="checkpoint (default: a synthetic R50 made in --workdir)")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default=str(ROOT / "bench_out" / "ray_overhead"))
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        spec = json.loads(Path(args.child[0]).read_text())
        result = child(spec["mode"], spec["paths"], spec["model"], spec["threads"],
                       spec["stamps"])
        Path(args.child[1]).write_text(json.dumps(result))
        return

    work = Path(args.workdir)
    if args.model is None:
        from pixellib.checkpoint.synthetic import write_checkpoint

        args.model = str(work / "pointrend_resnet50_seed0.pkl")
        if not Path(args.model).exists():
            work.mkdir(parents=True, exist_ok=True)
            write_checkpoint(args.model, "resnet50", 0)
    folder = work / f"images{args.images}"
    if not folder.exists():
        make_images(folder, args.images)
    paths = sorted(str(f) for f in folder.glob("*.jpg"))
    results = []
    for mode in args.modes.split(","):
        r = run_mode(mode, paths, args)
        results.append(r)
        print(json.dumps(r), flush=True)
    base = results[0]["median_s"]
    print(f"\n{'mode':8s} {'median s/img':>12s} {'vs ' + results[0]['mode']:>10s} {'wall s':>8s}"
          "  cores used while images ran after warm-up, by process (top 8)")
    for r in results:
        top = ", ".join(f"{k} {v}" for k, v in list(r["cores_while_steady"].items())[:8])
        print(f"{r['mode']:8s} {r['median_s']:12.3f} {base / r['median_s']:9.2f}x "
              f"{r['wall_s']:8.1f}  {top}")


if __name__ == "__main__":
    main()
