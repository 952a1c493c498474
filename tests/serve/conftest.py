"""Fixtures for the ``pixellib serve`` tests: the real CLI in a subprocess, one in-process
Predictor and its detections for the test photo. Every inference costs real CPU, so the tests
share these and keep their requests few."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from serve_support import API_KEY, PHOTO, ROOT, Server, free_port, wait_until_ready


@pytest.fixture(scope="session")
def photo_bytes() -> bytes:
    return PHOTO.read_bytes()


@pytest.fixture(scope="session")
def photo_bgr():
    from pixellib.media.images import read_image

    return read_image(PHOTO)


@pytest.fixture(scope="session")
def serve_predictor(r50_checkpoint):
    from pixellib.predictor import Predictor

    return Predictor(r50_checkpoint, speed="rapid", confidence=0.5)


@pytest.fixture(scope="session")
def reference(serve_predictor, photo_bgr):
    """The in-process Predictor's detections for the test photo."""
    det = serve_predictor(photo_bgr)
    assert len(det) > 0, "the synthetic model should find something in the test photo"
    return det


@pytest.fixture(scope="session")
def cli_server(r50_checkpoint):
    """``pixellib serve`` in a subprocess, with an API key and small limits."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "pixellib", "serve", "--model", str(r50_checkpoint),
           "--speed", "rapid", "--confidence", "0.5", "--port", str(port),
           "--max-upload-mb", "1", "--max-megapixels", "1", "--max-queue", "4",
           "--timeout", "300", "--api-key", API_KEY, "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", API_KEY, proc=proc)
    try:
        server.readyz_seen.extend(wait_until_ready(proc, server.url))
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


