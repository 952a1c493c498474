"""Benchmark pixellib against PixelLib 0.7.1, side by side, and write ``docs/benchmarks.md``.

    .venv/bin/python benchmarks/bench.py                       # ours alone
    .venv/bin/python benchmarks/bench.py --reference /root/.cache/pixellib-reference/bin/python
    .venv/bin/python benchmarks/bench.py --quick --reference ...  # smoke test, a few minutes

Every measurement runs in fresh worker processes (``_worker.py``), one per implementation,
loaded and warmed up once, then timed repetition by repetition, alternating ours and the
reference (ABBA order), so that both see the same machine state. See ``benchmarks/README.md``
for what each figure means.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import _parity  # noqa: E402
import _report  # noqa: E402

WORKER = HERE / "_worker.py"
IMAGES = ROOT / "tests" / "data" / "images"
GOLDEN_IMAGES = ("street.jpg", "small.jpg", "small_gray.png", "wide.jpg", "car_rgba.png")
X101_IMAGES = ("street.jpg", "small.jpg")  # the golden X101 cases
MODES = ("default", "fast", "rapid")
PARTS = ("image", "model", "crowded", "batch", "video", "matmul", "peers")
CHECKPOINTS = {"r50": ("resnet50", 0, "resnet50"), "x101": ("resnext101_32x8d", 1, "resnet101")}
CROWDED_IMAGE, CROWDED_CONFIDENCE = "street.jpg", 0.05


@dataclass
class Job:
    """One measurement: the same work done by each implementation in its own fresh process."""

    key: str
    task: str  # image | model | batch | matmul (what _worker.py runs)
    model: str | None = "r50"
    mode: str = "default"
    confidence: float | None = None
    images: list[str] = field(default_factory=list)
    folder: str | None = None
    video: str | None = None
    impls: tuple[str, ...] = ("ours",)
    runs: int = 5
    warmup: int = 1
    flops: bool = False
    save: bool = False
    autocast: str | None = None
    results: dict = field(default_factory=dict)
    parity: list = field(default_factory=list)


# --------------------------------------------------------------------------- workers


class WorkerError(RuntimeError):
    pass


class Worker:
    """A ``_worker.py`` process speaking JSON lines; its stderr goes to a log file."""

    def __init__(self, python: str, spec: dict, env: dict, run_dir: Path):
        name = f"{spec['key'].replace('/', '_')}.{spec['impl']}"
        out_dir = run_dir / "work" / name
        out_dir.mkdir(parents=True, exist_ok=True)
        spec = {**spec, "out_dir": str(out_dir)}
        spec_path = run_dir / "specs" / f"{name}.json"
        spec_path.parent.mkdir(exist_ok=True)
        spec_path.write_text(json.dumps(spec, indent=1))
        self.log_path = run_dir / "logs" / f"{name}.log"
        self.log_path.parent.mkdir(exist_ok=True)
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [python, str(WORKER), str(spec_path)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, cwd=out_dir, env=env, text=True,
        )

    def ask(self, command: str | None = None) -> dict:
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.log.flush()
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-15:] or [""]
            raise WorkerError(f"worker exited ({self.proc.returncode}): {tail[-1]} "
                              f"(log: {self.log_path})\n    " + "\n    ".join(tail))
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


def worker_env(impl: str, args) -> dict:
    env = dict(os.environ)
    threads = str(args.threads)
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
    if impl == "ours":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    else:
        env.pop("PYTHONPATH", None)  # `pixellib` must be PixelLib 0.7.1 there, not ours
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # PixelLib picks CUDA by itself when it sees one
    return env


def run_job(job: Job, args, ckpts: dict, run_dir: Path) -> None:
    """Start each implementation's worker, alternate the repetitions, collect everything."""
    pythons = {"ours": args.python, "ref": args.reference}
    workers: dict[str, Worker] = {}
    for impl in job.impls:
        res = job.results.setdefault(impl, {"reps": []})
        spec = {
            "key": job.key, "impl": impl, "task": job.task, "mode": job.mode,
            "confidence": job.confidence, "images": job.images, "folder": job.folder,
            "video": job.video,
            "threads": args.threads, "device": args.device, "warmup": job.warmup,
            "count_flops": job.flops, "autocast": job.autocast,
            "matmul_n": args.matmul_n,
            "save_outputs": str(run_dir / "outputs" / job.key / impl) if job.save else None,
        }
        if job.model:
            arch, _, backbone = CHECKPOINTS[job.model]
            spec.update(checkpoint=str(ckpts[job.model]), backbone=backbone)
        try:
            worker = Worker(pythons[impl], spec, worker_env(impl, args), run_dir)
        except OSError as exc:
            res["error"] = str(exc)
            continue
        try:
            msg = worker.ask()
        except WorkerError as exc:
            res["error"] = str(exc)
            worker.close()
            continue
        if msg["event"] == "unsupported":
            res["unsupported"] = msg["reason"]
            worker.close()
            continue
        res.update(load_s=msg["load_s"], versions=msg["versions"])
        workers[impl] = worker
        where = msg["versions"].get("pixellib_path")
        if where and (Path(where).is_relative_to(ROOT)) != (impl == "ours"):
            res["error"] = f"the {impl} worker imported the wrong pixellib: {where}"
            workers.pop(impl).close()
    try:
        for rep in range(job.runs):
            order = list(job.impls) if rep % 2 == 0 else list(reversed(job.impls))
            line = []
            for impl in order:
                if impl not in workers:
                    continue
                try:
                    msg = workers[impl].ask("run")
                except WorkerError as exc:
                    job.results[impl]["error"] = str(exc)
                    workers.pop(impl).close()
                    continue
                job.results[impl]["reps"].append({"times": msg["times"], "counts": msg["counts"]})
                line.append(f"{impl} {sum(msg['times']):.2f} s")
            if line:
                progress(f"  {job.key}: rep {rep + 1}/{job.runs}  " + "  ".join(line))
        for impl, worker in workers.items():
            try:
                msg = worker.ask("finish")
                msg.pop("event")
                job.results[impl]["done"] = msg
            except WorkerError as exc:
                job.results[impl]["error"] = str(exc)
    finally:
        for worker in workers.values():
            worker.close()
    for impl, res in job.results.items():
        for what in ("error", "unsupported"):
            if what in res:
                progress(f"  {job.key} [{impl}] {what}: {res[what]}")


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- inputs


def checkpoints(models: list[str], cache_dir: Path) -> dict[str, Path]:
    """Synthetic checkpoints (``pixellib.checkpoint.synthetic``), cached under a digest of
    the generator."""
    sys.path.insert(0, str(ROOT))
    from pixellib.checkpoint import synthetic as testing

    recipe = hashlib.sha256(Path(testing.__file__).read_bytes()).hexdigest()[:12]
    out = {}
    for model in models:
        arch, seed, _ = CHECKPOINTS[model]
        path = cache_dir / f"{arch}_seed{seed}_{recipe}.pkl"
        if not path.exists():
            progress(f"writing the synthetic {arch} checkpoint (seed {seed}) to {path}")
            testing.write_checkpoint(path, arch, seed)
        out[model] = path
    return out


def make_batch_folder(folder: Path, images: list[str], count: int) -> Path:
    """``count`` photos made from the golden ones: flipped and/or centre-cropped copies."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        name = images[i % len(images)]
        image = cv2.imread(str(IMAGES / name))
        variant = i // len(images)
        if variant % 2:
            image = image[:, ::-1]
        keep = max(0.5, 1.0 - 0.1 * (variant // 2))  # 100 %, 90 %, 80 %... of each side
        h, w = image.shape[:2]
        ch, cw = int(h * keep), int(w * keep)
        y, x = (h - ch) // 2, (w - cw) // 2
        image = image[y:y + ch, x:x + cw]
        cv2.imwrite(str(folder / f"{i:03d}_{Path(name).stem}.jpg"), image,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


def make_clip(path: Path, image: str, frames: int) -> Path:
    """A ``frames``-frame 1280x720 clip (MPEG-4 through OpenCV, which both sides read): a
    slow pan and zoom over a golden photo, so that every frame differs."""
    import cv2

    photo = cv2.imread(str(IMAGES / image))
    h, w = photo.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (1280, 720))
    try:
        for i in range(frames):
            t = i / max(1, frames - 1)
            keep = 0.9 - 0.15 * t
            ch, cw = int(h * keep), int(w * keep)
            y, x = int((h - ch) * 0.5), int((w - cw) * t)
            writer.write(cv2.resize(photo[y:y + ch, x:x + cw], (1280, 720),
                                    interpolation=cv2.INTER_AREA))
    finally:
        writer.release()
    return path


def plan(args, run_dir: Path) -> list[Job]:
    """The jobs the options ask for, in running order."""
    impls = ("ours", "ref") if args.reference else ("ours",)
    images = [str(IMAGES / name) for name in args.images]
    common = {"impls": impls, "runs": args.runs, "warmup": args.warmup}
    models = ["r50"] + (["x101"] if args.x101 else [])
    jobs = []
    if "matmul" in args.parts:
        jobs.append(Job("matmul", "matmul", model=None, impls=impls, runs=args.matmul_runs,
                        warmup=1))
    for model in models:
        imgs = images if model == "r50" else [p for p in images if Path(p).name in X101_IMAGES]
        if not imgs:
            continue
        for mode in args.modes:
            if "model" in args.parts:
                jobs.append(Job(f"{model}/model/{mode}", "model", model, mode, images=imgs,
                                flops=not args.no_flops, save=True, **common))
            if "image" in args.parts:
                jobs.append(Job(f"{model}/image/{mode}", "image", model, mode, images=imgs,
                                **common))
    if args.autocast:
        for mode in args.modes:
            jobs.append(Job(f"r50/model-{args.autocast}/{mode}", "model", "r50", mode,
                            images=images, save=True, autocast=args.autocast,
                            runs=args.runs, warmup=args.warmup))
    if "crowded" in args.parts:
        crowded = [str(IMAGES / CROWDED_IMAGE)]
        jobs.append(Job("r50/crowded-model/default", "model", "r50", "default",
                        CROWDED_CONFIDENCE, crowded, flops=not args.no_flops, save=True,
                        **common))
        jobs.append(Job("r50/crowded-image/default", "image", "r50", "default",
                        CROWDED_CONFIDENCE, crowded, **common))
    if "batch" in args.parts:
        folder = make_batch_folder(run_dir / "batch_in", list(args.images), args.batch_size)
        jobs.append(Job("r50/batch/default", "batch", "r50", "default", folder=str(folder),
                        impls=impls, runs=args.batch_runs, warmup=args.warmup))
    if "video" in args.parts:
        clip = make_clip(run_dir / "clip.mp4", CROWDED_IMAGE, args.video_frames)
        jobs.append(Job("r50/video/default", "video", "r50", "default", video=str(clip),
                        impls=impls, runs=args.batch_runs, warmup=args.warmup))
    if "matmul" in args.parts and len(jobs) > 1:
        # Again at the end: the best of both is kept, so a busy moment does not set the peak.
        jobs.append(Job("matmul/end", "matmul", model=None, impls=impls,
                        runs=args.matmul_runs, warmup=1))
    return jobs


# --------------------------------------------------------------------------- parity


def run_peers(args, run_dir: Path) -> dict:
    """``peers.py`` in its own process with our interpreter: its figures, or the error."""
    out = run_dir / "peers.json"
    cmd = [args.python, str(HERE / "peers.py"), "--threads", str(args.threads),
           "--runs", str(max(args.runs, 3)), "--json", str(out)]
    cmd += ["--quick"] if args.quick else []
    log = run_dir / "peers.log"
    with open(log, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode or not out.exists():
        tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
        return {"error": f"peers.py exited with {done.returncode}: {tail[0]} (log: {log})"}
    return json.loads(out.read_text())


def check_parity(job: Job, run_dir: Path) -> None:
    if not job.save:
        return
    dirs = {impl: run_dir / "outputs" / job.key / impl for impl in job.impls}
    ours = dirs.get("ours")
    ours = ours if ours and ours.exists() else None
    ref = dirs.get("ref")
    if job.autocast:  # reduced precision: against the reference's fp32 run of the same mode
        ref = run_dir / "outputs" / f"{job.model}/model/{job.mode}" / "ref"
    ref = ref if ref and ref.exists() else None
    stems = [Path(p).stem for p in job.images]
    job.parity = _parity.compare_dirs(job.model, job.mode, job.confidence is None, ours, ref,
                                      stems)


# --------------------------------------------------------------------------- machine


def machine_info() -> dict:
    info = {"platform": platform.platform(), "cpu": platform.processor() or "?",
            "logical_cpus": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines()
                 if ln.startswith("model name")]
        if names:
            info["cpu"] = names[0]
        flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines()
                      if ln.startswith("flags")), [])
        info["simd"] = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
                                if f in flags)
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
        info["memory_gib"] = round(int(mem[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def source_state() -> str:
    """The commit and the number of changed files of the tree measured (read-only git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain"],
                                 cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    n = len(changed.splitlines())
    return f"{head}" + (f" with {n} uncommitted change(s)" if n else "")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="bench.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Figures and caveats: benchmarks/README.md.",
    )
    p.add_argument("--reference", metavar="PYTHON",
                   default=os.environ.get("PIXELLIB_REFERENCE_PYTHON"),
                   help="interpreter of a PixelLib 0.7.1 environment "
                        "(default: $PIXELLIB_REFERENCE_PYTHON); measured side by side")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for our side (default: this one)")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every worker (2)")
    p.add_argument("--runs", type=int, help="timed repetitions per measurement (5)")
    p.add_argument("--warmup", type=int, help="untimed passes before timing (1)")
    p.add_argument("--modes", default=",".join(MODES), help="comma list of default,fast,rapid")
    p.add_argument("--images", help="comma list of golden photos (default: all five)")
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"comma list of {','.join(PARTS)} (default: all)")
    p.add_argument("--batch-size", type=int, help="photos in the segmentBatch folder (20)")
    p.add_argument("--batch-runs", type=int, help="timed segmentBatch calls (2)")
    p.add_argument("--video-frames", type=int,
                   help="frames of the process_video clip (100; timed runs: --batch-runs)")
    p.add_argument("--matmul-n", type=int, default=4096, help="matmul size for the fp32 peak")
    p.add_argument("--matmul-runs", type=int, help="matmul timings, best is kept (5)")
    p.add_argument("--x101", action="store_true", help="also the ResNeXt-101 checkpoint")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP counting passes")
    p.add_argument("--bf16", dest="autocast", action="store_const", const="bfloat16",
                   help="also our model with Predictor(precision=\"bfloat16\") (autocast)")
    p.add_argument("--fp16", dest="autocast", action="store_const", const="float16",
                   help="likewise with float16 (for CUDA)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 run, no warm-up, street.jpg only, a batch of 4; "
                        "writes no file unless --out is given")
    p.add_argument("--out", help="markdown file to write (default docs/benchmarks.md)")
    p.add_argument("--json", help="also write every raw figure to this JSON file")
    p.add_argument("--add-to", metavar="RUN_DIR",
                   help="measure what the options ask into an earlier run: its results.json "
                        "keeps its other jobs, a job measured again replaces its old figures, "
                        "and the report covers them all")
    p.add_argument("--workdir", default=str(ROOT / "bench_out"),
                   help="checkpoints, logs, outputs (default ./bench_out)")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"runs": (1, 5), "warmup": (0, 1), "batch_size": (4, 20), "batch_runs": (1, 2),
                "video_frames": (4, 100),
                "matmul_runs": (2, 5)}
    for name, (q, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, q if quick else full)
    args.images = (args.images.split(",") if args.images
                   else ["street.jpg"] if quick else list(GOLDEN_IMAGES))
    args.modes = args.modes.split(",")
    args.parts = args.parts.split(",")
    for what, allowed in (("modes", MODES), ("parts", PARTS), ("images", GOLDEN_IMAGES)):
        bad = [v for v in getattr(args, what) if v not in allowed]
        if bad:
            p.error(f"--{what}: unknown {bad}; choose from {', '.join(allowed)}")
    if args.out is None and not quick:
        args.out = str(ROOT / "docs" / "benchmarks.md")
    if args.add_to and not (Path(args.add_to) / "results.json").is_file():
        p.error(f"--add-to: {args.add_to} has no results.json")
    if args.reference and not Path(args.reference).exists():
        p.error(f"--reference: {args.reference} does not exist")
    if args.runs < 1 or args.threads < 1:
        p.error("--runs and --threads must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    workdir = Path(args.workdir).resolve()  # workers run in their own folders
    workdir.mkdir(parents=True, exist_ok=True)
    if args.add_to:
        run_dir = Path(args.add_to).resolve()
        earlier = json.loads((run_dir / "results.json").read_text())
    else:
        run_dir = Path(tempfile.mkdtemp(prefix=started.strftime("run-%Y%m%d-%H%M%S-"),
                                        dir=workdir))
        earlier = None
    progress(f"bench: working in {run_dir}")
    load_before = load_average()
    models = ["r50"] + (["x101"] if args.x101 else [])
    needs_model = any(p != "matmul" for p in args.parts) or args.autocast
    ckpts = checkpoints(models, workdir / "checkpoints") if needs_model else {}
    jobs = plan(args, run_dir)
    meta = {
        "command": " ".join(["benchmarks/bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(), "load_before": load_before, "source": source_state(),
        "threads": args.threads, "device": args.device, "runs": args.runs,
        "warmup": args.warmup, "quick": args.quick, "reference": args.reference,
        "matmul_n": args.matmul_n, "run_dir": str(run_dir),
    }

    if earlier:  # the earlier run's header stands; what this command added is noted in it
        meta = {**earlier["meta"], "added": earlier["meta"].get("added", []) + [
                    {k: meta[k] for k in ("command", "started", "source", "load_before")}]}
        redone = {job.key for job in jobs}
        kept = [job for job in earlier["jobs"] if job["key"] not in redone]
    else:
        kept = []

    def save() -> dict:
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        if earlier:
            meta["added"][-1].update(finished=now, load_after=load_average())
        else:
            meta.update(finished=now, load_after=load_average())
        data = {"meta": meta, "jobs": kept + [asdict(job) for job in jobs]}
        (run_dir / "results.json").write_text(json.dumps(data, indent=1))
        return data

    if "peers" in args.parts:
        progress("peers: our backbone + FPN against torch.compile, ONNX Runtime, OpenVINO")
        meta["peers"] = run_peers(args, run_dir)
        save()
    for i, job in enumerate(jobs, 1):
        progress(f"[{i}/{len(jobs)}] {job.key} ({', '.join(job.impls)}; {job.runs} runs, "
                 f"{job.warmup} warm-up)")
        run_job(job, args, ckpts, run_dir)
        try:
            check_parity(job, run_dir)
        except Exception as exc:  # a broken comparison must not lose the timings
            job.results.setdefault("ours", {})["error"] = f"parity check failed: {exc!r}"
            progress(f"  {job.key}: parity check failed: {exc!r}")
        save()
    data = save()
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1))
    markdown = _report.render(data)
    print("# Benchmarks\n\n" + markdown)
    if args.out:
        _report.write(Path(args.out), markdown)
        progress(f"bench: wrote {args.out}")
    failed = [j.key for j in jobs for r in j.results.values() if "error" in r]
    if "error" in (meta.get("peers") or {}):
        failed.append("peers")
    if failed:
        progress(f"bench: {len(failed)} measurement(s) failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
