"""A browser plays our videos: headless Chromium loads a page with a ``<video>`` of our H.264 MP4
(with its audio track) and of our transparent VP9 WebM, served from 127.0.0.1; the test reads
the page's report over the DevTools protocol: each loads without error, has the right
duration, shows the right colours (and transparency) when drawn on a canvas, and plays to its
``ended`` event.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from fractions import Fraction
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from test_video_pyav import make_clip

from browser import remove_profile
from pixellib.media.video import VideoWriter, run_frames

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PAGE = """<!doctype html><html><body><pre id="result">pending</pre><script>
function check(src) {
  return new Promise(done => {
    const v = document.createElement("video"), r = {src: src};
    const finish = () => { done(r); };
    v.muted = true; v.preload = "auto";
    v.onerror = () => { r.error = v.error ? v.error.code + " " + v.error.message : "?"; finish(); };
    v.onloadedmetadata = () => { r.duration = v.duration; r.width = v.videoWidth; };
    v.onloadeddata = () => {
      const c = document.createElement("canvas");
      c.width = v.videoWidth; c.height = v.videoHeight;
      const g = c.getContext("2d");
      // On a busy machine the first frame may not be paintable yet when loadeddata fires:
      // draw again until the left half (opaque in both videos) shows, then play.
      const sample = tries => {
        g.clearRect(0, 0, c.width, c.height);
        g.drawImage(v, 0, 0);
        r.left = Array.from(g.getImageData(8, c.height / 2, 1, 1).data);
        r.right = Array.from(g.getImageData(c.width - 8, c.height / 2, 1, 1).data);
        if (r.left[3] === 0 && tries > 0) { setTimeout(() => sample(tries - 1), 100); return; }
        v.playbackRate = 4;
        v.play().catch(e => { r.error = "play: " + e; finish(); });
      };
      sample(50);
    };
    v.onended = () => { r.ended = true; r.currentTime = v.currentTime; finish(); };
    setTimeout(() => { r.timeout = true; finish(); }, 15000);
    v.src = src;
    document.body.appendChild(v);
  });
}
Promise.all([check("clip.mp4"), check("cutout.webm"), check("hd.mp4")]).then(results => {
  document.getElementById("result").textContent = "RESULT" + JSON.stringify(results) + "END";
});
</script></body></html>
"""


@contextlib.contextmanager
def _serve(folder: Path):
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _page_result(url: str, profile: Path, timeout: float = 60.0) -> str:
    """Open ``url`` in a headless Chromium driven over its DevTools protocol, wait (in real
    time: media clocks do not run under ``--virtual-time-budget`` once there is audio) until
    the page has written its result, and return it. The browser is always ended."""
    from websockets.sync.client import connect

    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--mute-audio", "--remote-debugging-port=0", f"--user-data-dir={profile}",
               "--autoplay-policy=no-user-gesture-required", "about:blank"]
    browser = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        port_file = profile / "DevToolsActivePort"
        while not (port_file.exists() and port_file.read_text().strip()):
            assert browser.poll() is None, f"chromium exited with {browser.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            page = next(t for t in json.load(reply) if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            calls = itertools.count(1)

            def call(method: str, **params):
                ident = next(calls)
                ws.send(json.dumps({"id": ident, "method": method, "params": params}))
                while True:
                    message = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 1)))
                    if message.get("id") == ident:
                        return message["result"]

            call("Page.navigate", url=url)
            while time.monotonic() < deadline:
                value = call("Runtime.evaluate", returnByValue=True, expression=(
                    "(document.getElementById('result') || {}).textContent"))["result"]
                if str(value.get("value", "")).startswith("RESULT"):
                    return value["value"]
                time.sleep(0.2)
        raise AssertionError(f"the page wrote no result within {timeout} s")
    finally:
        with contextlib.suppress(ProcessLookupError):  # the browser and all its helpers
            os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()
        remove_profile(profile)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs the chromium package (.ci/run installs it)")
def test_chromium_plays_our_mp4_and_transparent_webm(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    # H.264 MP4 at 30000/1001 fps with an AAC track, through the frame loop
    source = make_clip(tmp_path / "source.mp4", n=30)

    def paint(frame, index):
        out = frame.copy()
        out[:, :32] = (0, 0, 255)  # red left half, blue right half
        out[:, 32:] = (255, 0, 0)
        return index, out

    run_frames(source, paint, output=site / "clip.mp4")
    # VP9 WebM with alpha: opaque green left half, transparent right half, 10 frames at 10 fps
    with VideoWriter(site / "cutout.webm", Fraction(10), (64, 48)) as writer:
        frame = np.zeros((48, 64, 4), np.uint8)
        frame[:, :32] = (0, 255, 0, 255)
        for _ in range(10):
            writer.write(frame)
    # HD H.264: a player that finds no colour tags guesses BT.709 from the size (FFmpeg
    # converts with BT.601): pure green then played as (0, 215, 0).
    with VideoWriter(site / "hd.mp4", Fraction(10), (1280, 720)) as writer:
        frame = np.zeros((720, 1280, 3), np.uint8)
        frame[:, :640] = (0, 255, 0)
        frame[:, 640:] = (0, 0, 255)
        for _ in range(3):
            writer.write(frame)
    (site / "index.html").write_text(PAGE)

    with _serve(site) as url:
        text = _page_result(f"{url}/index.html", tmp_path / "profile")
    mp4, webm, hd = json.loads(text.removeprefix("RESULT").removesuffix("END"))

    for result in (mp4, webm, hd):
        assert "error" not in result and "timeout" not in result, json.dumps(result)
        assert result.get("ended") is True, result
    assert mp4["width"] == webm["width"] == 64 and hd["width"] == 1280
    # the colours a viewer sees, within FFmpeg's own rounding (a few levels)
    assert np.abs(np.subtract(hd["left"][:3], (0, 255, 0))).max() <= 10, hd
    assert np.abs(np.subtract(hd["right"][:3], (255, 0, 0))).max() <= 10, hd
    assert mp4["duration"] == pytest.approx(30 * 1001 / 30000, abs=0.03)
    assert webm["duration"] == pytest.approx(1.0, abs=0.03)
    red, blue = mp4["left"], mp4["right"]  # RGBA from the canvas
    assert red[0] > 200 and red[2] < 60 and blue[2] > 200 and blue[0] < 60
    green, clear = webm["left"], webm["right"]
    assert green[1] > 200 and green[3] > 240  # opaque
    assert clear[3] < 15  # the browser decoded the alpha channel
