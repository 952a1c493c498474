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

from browser import remove_profile

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
        self.events: list[dict] = []  # events that arrived while a call waited

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            if "method" in message:
                self.events.append(message)

    def event(self, method: str, timeout: float = 60) -> dict:
        """The next event ``method`` (those of other kinds are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            while self.events:
                message = self.events.pop(0)
                if message["method"] == method:
                    return message["params"]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} event within {timeout} s")
            message = json.loads(self.ws.recv(timeout=left))
            if "method" in message:
                self.events.append(message)

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
        remove_profile(profile)


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


def _open_page(tools: DevTools, server) -> None:
    tools.call("Page.enable")
    tools.call("Page.navigate", url=server.url + "/")
    _wait(tools, "document.readyState === 'complete' && !!document.getElementById('file')")
    tools.eval(f"sessionStorage.setItem('pixellib-api-key', {json.dumps(API_KEY)}); "
               "location.reload()")
    time.sleep(0.5)
    _wait(tools, "document.readyState === 'complete' && "
                 "document.getElementById('api-key').value.length > 0")
    _wait(tools, "document.getElementById('model-info').textContent.includes('resnet50')", 60)


def _choose(tools: DevTools, path) -> None:
    doc = tools.call("DOM.getDocument")
    node = tools.call("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#file")
    tools.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(path)])


def _status(tools: DevTools) -> str:
    return tools.eval("document.getElementById('status').textContent")


def test_page_segments_a_photo(browser, cli_server, photo_bgr, reference):
    from pixellib.visualize import annotate

    tools = browser
    _open_page(tools, cli_server)
    before = cli_server.metric("pixellib_inference_seconds_count")
    _choose(tools, PHOTO)

    count = _wait(tools, "document.querySelectorAll('#objects li.object').length")
    assert count == len(reference)
    # One inference gave the page both the image and the objects (it used to run two).
    assert cli_server.metric("pixellib_inference_seconds_count") == before + 1
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


def test_page_waits_out_a_busy_servers_retry_after(browser, cli_server):
    """A 503 with a Retry-After over 5 s ended the run with an error (the page retried only
    short waits). Here the browser's network layer answers the page's first request with a
    503 and Retry-After: 7 (what a busy CPU server sends); the page counts down, asks again
    and shows the real server's result."""
    tools = browser
    _open_page(tools, cli_server)
    tools.call("Fetch.enable", patterns=[{"urlPattern": "*/v1/render*"}])
    try:
        _choose(tools, PHOTO)
        first = tools.event("Fetch.requestPaused")
        body = json.dumps({"error": "busy", "detail": "all replicas are busy"}).encode()
        tools.call("Fetch.fulfillRequest", requestId=first["requestId"], responseCode=503,
                   responseHeaders=[{"name": "Retry-After", "value": "7"},
                                    {"name": "Content-Type", "value": "application/json"}],
                   body=base64.b64encode(body).decode())
        answered = time.monotonic()
        _wait(tools, "document.getElementById('status').textContent.includes('trying again')",
              10)
        assert re.fullmatch(r"the server is busy; trying again in [1-7] s…", _status(tools))
        again = tools.event("Fetch.requestPaused", timeout=30)
        assert time.monotonic() - answered > 6
        tools.call("Fetch.continueRequest", requestId=again["requestId"])
        count = _wait(tools, "document.querySelectorAll('#objects li.object').length")
        assert _status(tools) == f"{count} object(s)"
    finally:
        tools.call("Fetch.disable")


_LINKS = ("[document.getElementById('download-json').href, "
          "document.getElementById('download-image').href, "
          "...[...document.querySelectorAll('#objects li.object a')].map(a => a.href)]")


def _fetchable(tools: DevTools) -> list[bool]:
    return tools.eval(f"""Promise.all({_LINKS}.map(u => fetch(u).then(r => r.ok, () => false)))""")


def test_page_keeps_the_last_result_usable_after_a_failed_run(browser, cli_server, tmp_path):
    """A failed run revoked the result still on screen: its downloads failed to fetch."""
    tools = browser
    _open_page(tools, cli_server)
    _choose(tools, PHOTO)
    count = _wait(tools, "document.querySelectorAll('#objects li.object').length")
    assert _status(tools) == f"{count} object(s)"
    assert all(_fetchable(tools))
    # replace-bg without its background: refused in the page, before any request
    tools.eval("const e = document.getElementById('effect'); e.value = 'replace-bg'; "
               "e.dispatchEvent(new Event('change')); document.getElementById('run').click()")
    _wait(tools, "document.getElementById('status').classList.contains('error')")
    assert "choose a background photo" in _status(tools)
    # a file the server refuses (415)
    tools.eval("document.getElementById('effect').value = ''")
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a photo")
    _choose(tools, fake)
    _wait(tools, "document.getElementById('status').classList.contains('error')", 120)
    assert "415" in _status(tools)
    assert tools.eval("document.querySelectorAll('#objects li.object').length") == count
    links = _fetchable(tools)
    assert len(links) == count + 2 and all(links), links


def test_page_shows_the_newest_photo_when_chosen_mid_run(browser, cli_server, photo_bgr,
                                                         tmp_path):
    """A second photo chosen during a run mixed the two results (the first run's JSON with
    cut-outs of the second photo's pixels, or the second run's error over the first)."""
    tools = browser
    _open_page(tools, cli_server)
    second = tmp_path / "second.png"
    cv2.imwrite(str(second), cv2.resize(photo_bgr, (200, 150)))
    _choose(tools, PHOTO)
    _wait(tools, "document.getElementById('status').textContent === 'segmenting…'", 60)
    _choose(tools, second)
    _wait(tools, "document.getElementById('status').textContent.endsWith('object(s)')")
    time.sleep(3)  # let the first run's answers arrive: they must change nothing
    saved = json.loads(_fetch_blob(tools, "document.getElementById('download-json').href"))
    assert saved["image"] == {"width": 200, "height": 150}
    assert _status(tools) == f"{saved['count']} object(s)"
    assert tools.eval("document.querySelectorAll('#objects li.object').length") == saved["count"]
    rendered = _fetch_blob(tools, "document.getElementById('rendered').src")
    assert cv2.imdecode(np.frombuffer(rendered, np.uint8), cv2.IMREAD_COLOR).shape == (150, 200, 3)
    assert not tools.eval("document.getElementById('run').disabled")


def test_page_lists_objects_of_a_photo_the_browser_cannot_draw(browser, cli_server, photo_bgr,
                                                               reference, tmp_path):
    """A TIFF went through both calls, then the page failed with "The source image could
    not be decoded" and listed nothing."""
    tools = browser
    _open_page(tools, cli_server)
    tiff = tmp_path / "photo.tif"
    cv2.imwrite(str(tiff), photo_bgr)
    _choose(tools, tiff)
    _wait(tools, "document.getElementById('status').textContent.includes('object(s)')")
    assert "cannot show this photo's format" in _status(tools)
    assert tools.eval("document.querySelectorAll('#objects li.object').length") == len(reference)
    assert tools.eval("document.querySelectorAll('#objects li.object a').length") == 0


def test_page_says_what_to_do_about_the_api_key(browser, cli_server):
    """A 401 showed the server's text for API clients ("send 'Authorization: Bearer
    <key>'") to the person at the page."""
    tools = browser
    _open_page(tools, cli_server)
    for i, (key, says) in enumerate((("wrong-key", "refused this API key"),
                                     ("", "needs an API key"))):
        tools.eval("{ const k = document.getElementById('api-key'); "
                   f"k.value = {json.dumps(key)}; k.dispatchEvent(new Event('change')); }}")
        _wait(tools, "document.getElementById('model-info').textContent"
                     f".includes({json.dumps(says)})", 30)
        if i == 0:
            _choose(tools, PHOTO)
        else:
            tools.eval("document.getElementById('run').click()")
        _wait(tools, f"document.getElementById('status').textContent.includes({json.dumps(says)})",
              60)
        assert tools.eval("document.getElementById('status').classList.contains('error')")
        assert "Authorization" not in _status(tools)
