"""Ray path against the plain CLI on the same images; writes docs/scale-out.md's figures.

    .venv/bin/python benchmarks/ray_throughput.py                    # 200 images, all parts
    .venv/bin/python benchmarks/ray_throughput.py --images 4 --print  # smoke test, no file

Three runs over the same N photos (variants of the golden photos at 640x480, JPEG), each in a
fresh process, one after the other:

* ``cli``: ``pixellib segment IN -o OUT`` (one process, torch on every core);
* ``ray``: ``pixellib.ray.segment_to_parquet`` on a local cluster it starts (the default
  actor pool: actors of a node's CPUs less one for reading, up to 4 threads each);
* ``two-node``: the same on a ``ray.cluster_utils.Cluster`` of two nodes on this machine.

Each reports the wall time from process start to the last result (model loading and cluster
start included), the time to the first result (CLI: the first annotated file; Ray: the first
row back at the driver) and the peak resident memory of each process doing inference (the CLI
process; each actor). Run it on a quiet machine: the table records the load average.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMAGES = ROOT / "tests" / "data" / "images"
DOC = ROOT / "docs" / "scale-out.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"
PARTS = ("cli", "ray", "two-node")


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def make_images(folder: Path, n: int, size=(640, 480)) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    photos = [cv2.imread(str(IMAGES / f)) for f in ("street.jpg", "wide.jpg", "small.jpg")]
    for k in range(n):
        photo = photos[k % len(photos)]
        h, w = photo.shape[:2]
        x = (k * 7 % 23) * w // 96
        crop = cv2.resize(photo[:, x:x + w * 3 // 4], size, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"img_{k:05d}.jpg"), crop[:, ::-1] if k % 2 else crop)
    return folder


def _rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux ``/proc``), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Poller:
    """Calls ``poll()`` on a background thread every ``interval`` seconds while in a ``with``
    block, and once more on leaving it."""

    interval = 0.5

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def poll(self) -> None:
        raise NotImplementedError

    def _run(self):
        while not self._stop.wait(self.interval):
            self.poll()

    def __enter__(self):
        self.poll()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.poll()


class PeakMemory(Poller):
    """Polls the resident memory of the processes whose command line matches; keeps each
    one's peak (MiB). Ray names an actor's process after it: ``ray::MapWorker(...)``."""

    def __init__(self, match):
        super().__init__()
        self.match, self.peaks = match, {}

    def poll(self):
        for entry in os.listdir("/proc"):
            if entry.isdigit() and self.match(_cmdline(int(entry))):
                pid = int(entry)
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), _rss_mib(pid))


def _is_actor(cmd: str) -> bool:
    return "MapWorker" in cmd or "SegmentBatch" in cmd


def _settings(args) -> list[str]:
    return [*(["--speed", args.speed] if args.speed else []), "--device", args.device,
            *(["--confidence", str(args.confidence)] if args.confidence is not None else [])]


def run_cli(inputs: Path, out: Path, args) -> dict:
    cmd = [sys.executable, "-m", "pixellib", "segment", str(inputs), "-o", str(out),
           "--model", args.model, *_settings(args)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    first, peak = None, 0.0
    while proc.poll() is None:
        if first is None and out.is_dir() and any(out.iterdir()):
            first = time.perf_counter() - start
        peak = max(peak, _rss_mib(proc.pid))
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    stdout = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"cli run failed ({proc.returncode}): {stdout}")
    return {"seconds": seconds, "first_result_s": first, "memory_mib": [round(peak)],
            "summary": stdout.strip().splitlines()[-1], "workers": 1}


def run_ray(inputs: Path, out: Path, args, two_nodes: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", "two-node" if two_nodes else "ray",
           "--model", args.model, "--child-io", str(inputs), str(out),
           *_settings(args)]
    start = time.perf_counter()
    with PeakMemory(_is_actor) as mem:
        done = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"ray run failed: {done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["first_result_s"] += result.pop("started_s")  # from the process start
    memory = sorted(round(v) for v in mem.peaks.values())
    return {**result, "seconds": seconds, "memory_mib": memory}


def child(kind: str, inputs: str, out: str, model: str, speed: str | None,
          confidence: float | None, device: str) -> None:
    """Runs in its own process: one Ray run, JSON summary on the last stdout line."""
    started = time.perf_counter()
    import ray

    from pixellib.ray import segment_to_parquet

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cluster, temp = None, tempfile.mkdtemp(prefix="pxbench-")
    try:
        if kind == "two-node":
            from ray.cluster_utils import Cluster

            # The cluster records its address in <RAY_TMPDIR>/ray: keep it in our folder, so
            # no other ray.init() on this machine finds (or later trips over) this cluster.
            os.environ["RAY_TMPDIR"] = temp
            os.makedirs(os.path.join(temp, "ray"), exist_ok=True)
            half = max(1, cores // 2)
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": half + 1})
            cluster.add_node(num_cpus=max(1, cores - half))
            ray.init(address=cluster.address)
        called = time.perf_counter()
        summary = segment_to_parquet(inputs, out, model=model, speed=speed,
                                     confidence=confidence, address="local",
                                     num_gpus=1 if device.startswith("cuda") else 0)
    finally:
        if cluster is not None:
            ray.shutdown()
            cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    print(json.dumps({"first_result_s": summary.first_result_s, "images": summary.images,
                      "errors": summary.errors, "workers": cores,
                      "started_s": called - started,
                      "summary": f"{summary.images} images, {summary.objects} objects"}))


def table(results: dict, n: int, args) -> str:
    cli = results.get("cli")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    lines = [f"Measured {dt.date.today()} on {platform.machine()}, "
             f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} "
             f"cores, {n} JPEG photos 640x480, model `{Path(args.model).name}`, speed "
             f"`{args.speed or 'default'}`, confidence {args.confidence or 'default'}, load "
             f"average after {load[0]:.2f}.", "",
             "| run | processes doing inference | wall s | images/s | vs CLI | first result s |"
             " peak memory per process MiB | result |",
             "|---|---|---|---|---|---|---|---|"]
    for key in PARTS:
        r = results.get(key)
        if r is None:
            continue
        rate = n / r["seconds"]
        ratio = f"{cli['seconds'] / r['seconds']:.2f}x" if cli else "-"
        first = "-" if r["first_result_s"] is None else f"{r['first_result_s']:.1f}"
        mem = ", ".join(map(str, r["memory_mib"])) or "-"
        lines.append(f"| {key} | {r['workers']} | {r['seconds']:.1f} | {rate:.2f} | {ratio} | "
                     f"{first} | {mem} | {', '.join(r['summary'].split(', ')[:2])} |")
    return "\n".join(lines)


def write_doc(text: str) -> None:
    from pixellib.media.files import write_text

    doc = DOC.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{DOC} has no {START} ... {END} block")
    write_text(DOC, pattern.sub(lambda _: f"{START}\n{text}\n{END}", doc))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--speed", choices=("fast", "rapid"), default=None)
    parser.add_argument("--device", default="cpu",
                        help="cpu, or cuda: the CLI on the GPU, one Ray actor per GPU")
    parser.add_argument("--confidence", type=float, default=None,
                        help="score threshold (default: the speed mode's)")
    parser.add_argument("--model", default=None,
                        help="checkpoint (default: the synthetic ResNet-50, written once)")
    parser.add_argument("--workdir", default="bench_out/ray")
    parser.add_argument("--print", action="store_true", help="print the table, write no file")
    parser.add_argument("--child", choices=("ray", "two-node"), help=argparse.SUPPRESS)
    parser.add_argument("--child-io", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, *args.child_io, args.model, args.speed, args.confidence,
                     args.device)
    work = Path(args.workdir).absolute()
    if args.model is None:
        from pixellib.checkpoint.synthetic import write_checkpoint

        ckpt = work / "pointrend_resnet50.pkl"
        if not ckpt.exists():
            write_checkpoint(ckpt, "resnet50", 0)
        args.model = str(ckpt)
    inputs = make_images(work / f"images-{args.images}", args.images)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = {}
    for part in [p for p in args.parts.split(",") if p]:
        if part not in PARTS:
            raise SystemExit(f"unknown part {part!r}: expected {', '.join(PARTS)}")
        out = work / f"out-{stamp}-{part}"
        results[part] = (run_cli(inputs, out, args) if part == "cli"
                         else run_ray(inputs, out, args, two_nodes=part == "two-node"))
        print(part, json.dumps(results[part]), flush=True)
    text = table(results, args.images, args)
    print(text)
    if not args.print:
        write_doc(text)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
