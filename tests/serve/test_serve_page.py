"""The web page at ``/`` in a real headless Chromium, driven through the DevTools protocol:
upload a photo, wait for the result, check the object list, the rendered image and a cut-out.
"""
from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time

import cv2
import numpy as np
import pytest
from serve_support import API_KEY, PHOTO, httpx

pytestmark = pytest.mark.slow
sync_client = pytest.importorskip("websockets.sync.client")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which(
    "google-chrome")


class DevTools:
    """A minimal DevTools protocol client for one page."""

    def __init__(self, ws_url: str):
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            sync_client.connect(ws_url, max_size=64 << 20, open_timeout=30))
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self):
        self._stack.close()


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip("no chromium installed (Debian: apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="pixellib-chromium-")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                pytest.fail("chromium exited at start")
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if match:
                port = int(match.group(1))
        assert port, "chromium did not open its DevTools port"
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json()
                 if t["type"] == "page"]
        tools = DevTools(pages[0]["webSocketDebuggerUrl"])
        try:
            yield tools
        finally:
            tools.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(tools: DevTools, expression: str, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = tools.eval(expression)
        if value:
            return value
        time.sleep(0.2)
    status = tools.eval("document.getElementById('status').textContent")
    pytest.fail(f"timed out waiting for {expression!r}; page status: {status!r}")


def _fetch_blob(tools: DevTools, url_expression: str) -> bytes:
    b64 = tools.eval(f"""(async () => {{
        const buf = await (await fetch({url_expression})).arrayBuffer();
        let s = ""; const b = new Uint8Array(buf);
        for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
        return btoa(s);
    }})()""")
    return base64.b64decode(b64)


def test_page_segments_a_photo(browser, cli_server, photo_bgr, reference):
    from pixellib.visualize import annotate

    tools = browser
    tools.call("Page.enable")
    tools.call("Page.navigate", url=cli_server.url + "/")
    _wait(tools, "document.readyState === 'complete' && !!document.getElementById('file')")
    tools.eval(f"sessionStorage.setItem('pixellib-api-key', {json.dumps(API_KEY)}); "
               "location.reload()")
    time.sleep(0.5)
    _wait(tools, "document.readyState === 'complete' && "
                 "document.getElementById('api-key').value.length > 0")
    _wait(tools, "document.getElementById('model-info').textContent.includes('resnet50')", 60)

    doc = tools.call("DOM.getDocument")
    node = tools.call("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#file")
    tools.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(PHOTO)])

    count = _wait(tools, "document.querySelectorAll('#objects li.object').length")
    assert count == len(reference)
    items = tools.eval("[...document.querySelectorAll('#objects li.object')]"
                       ".map(li => li.textContent)")
    for text, name, score in zip(items, reference.class_names, reference.scores):
        assert text.startswith(f"{name} {float(score) * 100:.1f}%"), text
    assert tools.eval("document.getElementById('status').textContent") == f"{count} object(s)"

    _wait(tools, "document.getElementById('rendered').complete && "
                 "document.getElementById('rendered').naturalWidth > 0")
    rendered = _fetch_blob(tools, "document.getElementById('rendered').src")
    got = cv2.imdecode(np.frombuffer(rendered, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(got, annotate(photo_bgr, reference, show_boxes=True))

    saved = json.loads(_fetch_blob(tools, "document.getElementById('download-json').href"))
    assert saved["count"] == len(reference)

    # The first cut-out, made in the page from the RLE mask: opaque exactly on the mask.
    png = _fetch_blob(tools, "document.querySelector('#objects li.object a').href")
    cut = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    x0, y0, x1, y1 = reference.boxes[0]
    x0, y0 = int(np.floor(x0)), int(np.floor(y0))
    x1, y1 = int(np.ceil(x1)), int(np.ceil(y1))
    assert cut.shape == (y1 - y0, x1 - x0, 4)
    assert np.array_equal(cut[:, :, 3] > 0, reference.masks[0][y0:y1, x0:x1])
