"""Load and fault benchmark of ``pixellib serve``; writes docs/serving.md.

For each speed mode it starts ``pixellib serve`` (a subprocess, 127.0.0.1 only, with an API
key), measures the in-process :class:`~pixellib.Predictor` on the same images, then runs a
bounded async load generator (httpx) at each concurrency level for ``--duration`` seconds:
throughput, p50/p95/p99 latency, error rates (503 "busy" counted apart: they are intended),
server RSS at start and end. ``--faults`` injects faults during the highest level and checks
that the next normal request gets the right answer; ``--soak S`` runs 2 clients for S seconds
and reports RSS growth.

Full run (about 20 min; on a quiet machine)::

    python benchmarks/serve_load.py --duration 60 --soak 600 --faults

Smoke run: ``python benchmarks/serve_load.py --duration 3 --levels 1,2 --modes rapid --faults``
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEY = "bench-key"
DEFAULT_IMAGES = ("tests/data/images/small.jpg", "tests/data/images/street.jpg",
                  "tests/data/images/wide.jpg")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, mode: str, workers: int, max_queue: int) -> tuple:
    port = free_port()
    cmd = [sys.executable, "-m", "pixellib", "serve", "--model", model, "--port", str(port),
           "--workers", str(workers), "--max-queue", str(max_queue), "--api-key", KEY,
           "--timeout", "600", "--upload-timeout", "5", "--log-level", "error"]
    if mode != "default":
        cmd += ["--speed", mode]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"pixellib serve exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("pixellib serve did not become ready")


def in_process(model: str, mode: str, images: list[bytes], duration: float) -> tuple:
    """Images per second of a plain Predictor loop, and its detections per image."""
    from pixellib.media.images import decode_image
    from pixellib.predictor import Predictor

    predictor = Predictor(model, speed=None if mode == "default" else mode)
    arrays = [decode_image(b, f"image {i}") for i, b in enumerate(images)]
    expected = [predictor(a) for a in arrays]  # also the warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < duration or done == 0:
        predictor(arrays[done % len(arrays)])
        done += 1
    return done / (time.perf_counter() - started), expected


def same(payload: dict, det) -> bool:
    from pixellib.export import rle_to_mask

    objs = payload.get("objects", [])
    return len(objs) == len(det) and all(
        o["class_id"] == int(det.class_ids[k]) and np.float32(o["score"]) == det.scores[k]
        and np.array_equal(rle_to_mask(o["mask"]), det.masks[k]) for k, o in enumerate(objs))


async def load_level(url: str, images: list[bytes], expected: list, clients: int,
                     duration: float) -> dict:
    latencies, codes, wrong = [], {}, 0
    stop = time.perf_counter() + duration
    auth = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        async def worker(n: int):
            nonlocal wrong
            i = n
            while time.perf_counter() < stop:
                k = i % len(images)
                i += 1
                t = time.perf_counter()
                try:
                    r = await client.post(url + "/v1/segment", content=images[k], headers=auth)
                    code = r.status_code
                except httpx.HTTPError as e:
                    code = type(e).__name__
                finished = time.perf_counter()
                codes[code] = codes.get(code, 0) + 1
                if code == 200:
                    if finished <= stop:
                        latencies.append(finished - t)
                    if not same(r.json(), expected[k]):
                        wrong += 1
                elif code == 503:
                    await asyncio.sleep(float(r.headers.get("retry-after", 1)))

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(clients)))
    q = np.percentile(latencies, [50, 95, 99]) if latencies else [float("nan")] * 3
    total = sum(codes.values())
    errors = sum(v for c, v in codes.items() if c not in (200, 503))
    return {"clients": clients, "ok": len(latencies), "rps": len(latencies) / duration,
            "p50": q[0], "p95": q[1], "p99": q[2], "busy_503": codes.get(503, 0),
            "errors": errors, "error_rate": errors / max(total, 1), "wrong": wrong,
            "codes": codes, "wall": time.perf_counter() - started}


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def raw(url: str, data: bytes, *, close_after: float = 0.0, read: bool = True) -> bytes:
    with socket.create_connection(address(url), timeout=30) as s:
        s.sendall(data)
        if close_after:
            time.sleep(close_after)
            return b""
        return s.recv(200) if read else b""


def head(length: int, key: str = KEY) -> bytes:
    return (f"POST /v1/segment HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {length}\r\n\r\n").encode()


def faults(url: str, image: bytes, det) -> list[tuple[str, str, bool]]:
    """Each fault, what the server answered, and whether the next normal request was right."""
    auth = {"Authorization": f"Bearer {KEY}"}
    slow = head(len(image)) + image[:1]

    def slow_upload():
        with socket.create_connection(address(url), timeout=30) as s:
            s.sendall(slow)
            for b in image[1:20]:
                s.sendall(bytes([b]))
                s.settimeout(1.0)
                try:
                    return s.recv(200)
                except TimeoutError:
                    continue
        return b""

    cases = {
        "disconnect mid-upload": lambda: raw(url, head(len(image)) + image[:500],
                                             close_after=0.1),
        "disconnect mid-inference": lambda: raw(url, head(len(image)) + image, close_after=0.5),
        "malformed multipart": lambda: httpx.post(
            url + "/v1/segment", headers={**auth, "Content-Type": "multipart/form-data; b=x"},
            content=b"--x\r\nbroken", timeout=600).status_code,
        "1 GB body": lambda: raw(url, head(1 << 30)),
        "slow upload (1 byte/s)": slow_upload,
        "truncated image": lambda: httpx.post(url + "/v1/segment", headers=auth,
                                              content=image[: len(image) // 2],
                                              timeout=600).status_code,
        "hostile image (PNG bomb header)": lambda: httpx.post(
            url + "/v1/segment", headers=auth, timeout=600,
            content=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01\x00\x00\x00\x01\x00\x00"
                    b"\x08\x02\x00\x00\x00").status_code,
        "wrong API key": lambda: httpx.post(url + "/v1/segment", content=image, timeout=600,
                                            headers={"Authorization": "Bearer no"}).status_code,
    }
    out = []
    for name, fn in cases.items():
        answer = fn()
        if isinstance(answer, bytes):
            answer = answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(closed)"
        # The next request behaves as a client should: on 503 busy (every place taken, e.g.
        # by the load clients and an abandoned inference still finishing) it waits for
        # Retry-After and tries again.
        busy = 0
        while True:
            r = httpx.post(url + "/v1/segment", headers=auth, content=image, timeout=600)
            if r.status_code != 503 or busy >= 20:
                break
            busy += 1
            time.sleep(float(r.headers.get("Retry-After", "1")))
        ok = r.status_code == 200 and same(r.json(), det)
        verdict = "yes" if ok else f"**NO** (HTTP {r.status_code})"
        out.append((name, str(answer), verdict + (f", after {busy} x 503 busy" if busy else "")))
    return out


async def load_with_faults(url, images, expected, clients: int, duration: float):
    level = asyncio.create_task(load_level(url, images, expected, clients, duration))
    found = await asyncio.to_thread(faults, url, images[0], expected[0])
    return await level, found


def report(args, results: dict) -> str:
    lines = ["# Serving: `pixellib serve` under load and faults", "",
             f"Generated by `python benchmarks/serve_load.py {' '.join(sys.argv[1:])}` on "
             f"{platform.node()} ({os.cpu_count()} CPUs, Python {platform.python_version()}); "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             f"Model: {args.model_label}; server: `--workers {args.workers} --max-queue "
             f"{args.max_queue}`, 127.0.0.1, API key on; {args.duration:g} s per level; "
             f"images: {', '.join(Path(p).name for p in args.images)}.", ""]
    for mode, res in results.items():
        best = max((lv["rps"] for lv in res["levels"]), default=0.0)
        ratio = best / res["in_process"] if res["in_process"] else float("nan")
        lines += [f"## Mode `{mode}`", "",
                  f"In-process Predictor: {res['in_process']:.3f} images/s. Best server "
                  f"throughput: {best:.3f} images/s = **{ratio:.0%}** of in-process "
                  f"(target >= 90%).", "",
                  f"Server RSS: {res['rss_start']:.0f} MB at start, {res['rss_end']:.0f} MB "
                  f"at end.", "",
                  "| clients | ok | images/s | p50 s | p95 s | p99 s | 503 busy | errors | "
                  "error rate | wrong results |", "|---|---|---|---|---|---|---|---|---|---|"]
        for lv in res["levels"]:
            lines.append(f"| {lv['clients']} | {lv['ok']} | {lv['rps']:.3f} | {lv['p50']:.3f} "
                         f"| {lv['p95']:.3f} | {lv['p99']:.3f} | {lv['busy_503']} | "
                         f"{lv['errors']} | {lv['error_rate']:.2%} | {lv['wrong']} |")
        if res.get("faults"):
            lines += ["", "Faults (injected during the highest level):", "",
                      "| fault | server answered | next normal request correct |",
                      "|---|---|---|"]
            lines += [f"| {n} | {a} | {verdict} |" for n, a, verdict in res["faults"]]
        if res.get("soak"):
            s = res["soak"]
            lines += ["", f"Soak: {s['seconds']:g} s at 2 clients, {s['ok']} requests; RSS "
                      f"{s['start']:.0f} -> {s['end']:.0f} MB (max {s['max']:.0f}): "
                      f"**{s['growth']:+.1%}** (target <= +10%).", ""]
        lines.append("")
    return "\n".join(lines)


async def soak(url: str, pid: int, images, expected, seconds: float) -> dict:
    samples = [rss_mb(pid)]
    task = asyncio.create_task(load_level(url, images, expected, 2, seconds))
    while not task.done():
        await asyncio.sleep(min(10, seconds / 10))
        samples.append(rss_mb(pid))
    result = await task
    # Growth from the first steady sample (after warm-up) to the end.
    start = samples[1] if len(samples) > 2 else samples[0]
    return {"seconds": seconds, "ok": result["ok"], "start": start, "end": samples[-1],
            "max": max(samples), "growth": samples[-1] / start - 1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="checkpoint (default: the synthetic R50, seed 0)")
    p.add_argument("--modes", default="rapid,default")
    p.add_argument("--levels", default="1,2,4,8")
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--soak", type=float, default=0.0, help="seconds of soak (600 = 10 min)")
    p.add_argument("--faults", action="store_true")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-queue", type=int, default=8)
    p.add_argument("--images", nargs="+", default=[str(ROOT / p) for p in DEFAULT_IMAGES])
    p.add_argument("--out", default=str(ROOT / "docs" / "serving.md"))
    args = p.parse_args()
    # A plain SIGTERM would skip the finally blocks that stop the server subprocess.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = tempfile.TemporaryDirectory()
    if args.model is None:
        from pixellib.checkpoint.synthetic import write_checkpoint

        args.model = str(write_checkpoint(Path(tmp.name) / "pointrend_resnet50.pkl",
                                          "resnet50", 0))
        args.model_label = "synthetic ResNet-50 (seed 0)"
    else:
        args.model_label = Path(args.model).name
    images = [Path(p).read_bytes() for p in args.images]
    results = {}
    for mode in args.modes.split(","):
        print(f"[{mode}] in-process Predictor ...", flush=True)
        rate, expected = in_process(args.model, mode, images, args.duration)
        proc, url = start_server(args.model, mode, args.workers, args.max_queue)
        try:
            res = {"in_process": rate, "rss_start": rss_mb(proc.pid), "levels": []}
            levels = [int(v) for v in args.levels.split(",")]
            for n in levels:
                print(f"[{mode}] {n} client(s) for {args.duration:g} s ...", flush=True)
                if n == levels[-1] and args.faults:
                    level, res["faults"] = asyncio.run(
                        load_with_faults(url, images, expected, n, args.duration))
                    res["levels"].append(level)
                else:
                    res["levels"].append(asyncio.run(
                        load_level(url, images, expected, n, args.duration)))
                print(f"    {res['levels'][-1]}", flush=True)
            if args.soak:
                print(f"[{mode}] soak {args.soak:g} s ...", flush=True)
                res["soak"] = asyncio.run(soak(url, proc.pid, images, expected, args.soak))
            res["rss_end"] = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        results[mode] = res
    from pixellib.media.files import write_text

    text = report(args, results)
    write_text(args.out, text)
    print(text)
    print(f"wrote {args.out}; median over levels: "
          f"{statistics.median(lv['rps'] for r in results.values() for lv in r['levels']):.3f}")


if __name__ == "__main__":
    main()
