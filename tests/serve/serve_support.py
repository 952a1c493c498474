"""Helpers for the ``pixellib serve`` tests: apps run by uvicorn in a thread (sharing one
in-process Predictor, so each starts without loading a model) and result comparisons."""
from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "tests" / "data" / "images" / "small.jpg"
API_KEY = "test-key-0123456789"


@dataclass
class Server:
    url: str
    key: str | None = None
    readyz_seen: list = field(default_factory=list)
    proc: subprocess.Popen | None = None

    def headers(self, key: str | None = "default") -> dict:
        key = self.key if key == "default" else key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", headers=self.headers(), timeout=10).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)


def wait_until_ready(proc, url: str, timeout: float = 300) -> list[int]:
    """Poll ``url``/readyz until it answers 200; the statuses seen. Fails (with the
    server's output) when ``proc`` exits first or ``timeout`` passes."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"pixellib serve exited with {proc.returncode}: {output}")
        try:
            status = httpx.get(url + "/readyz", timeout=5).status_code
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        seen.append(status)
        if status == 200:
            return seen
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("pixellib serve did not become ready")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def thread_server(settings, predictors, **options):
    """Run ``create_app(settings, predictors=...)`` with uvicorn in a thread; yield a Server.
    ``options`` go to ``uvicorn.Config``."""
    import uvicorn

    from pixellib.serve.app import create_app
    from pixellib.serve.protocol import uvicorn_config

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(settings, predictors=predictors)
    config = uvicorn_config(app, settings, log_level="warning", lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError("the test server did not become ready")
        yield Server(url, settings.api_key)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def assert_same_detections(payload: dict, det) -> None:
    """A /v1/segment answer holds exactly ``det`` (RLE masks decoded and compared)."""
    from pixellib.export import rle_to_mask

    h, w = det.image_size
    assert payload["image"] == {"width": w, "height": h}
    assert payload["count"] == len(payload["objects"]) == len(det)
    for k, obj in enumerate(payload["objects"]):
        assert obj["class_id"] == int(det.class_ids[k])
        assert obj["class_name"] == det.class_names[k]
        assert np.float32(obj["score"]) == det.scores[k]
        assert np.array_equal(np.float32(obj["box"]), det.boxes[k])
        mask = rle_to_mask(obj["mask"])
        assert np.array_equal(mask, det.masks[k])
        assert obj["area"] == int(det.masks[k].sum())
