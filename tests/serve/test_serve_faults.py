"""The server under concurrent clients and faults: full queue, timeouts, clients that leave,
malformed and hostile uploads. After each fault a normal request gets the right answer.

One app (one replica, one queue place) runs in a thread with the shared in-process Predictor.
"""
from __future__ import annotations

import socket
import threading
import time

import pytest
import torch
from serve_support import PHOTO, assert_same_detections, httpx, thread_server
from test_serve_api import _png_header

pytestmark = pytest.mark.slow

KEY = "fault-key"


@pytest.fixture(scope="module")
def server(serve_predictor):
    from pixellib.serve.settings import ServeSettings

    settings = ServeSettings(replicas=1, max_queue=1, timeout=300, upload_timeout=1.0,
                             head_timeout=1.0,
                             max_upload_bytes=1 << 20, max_pixels=1_000_000, api_key=KEY,
                             torch_threads=torch.get_num_threads())
    with thread_server(settings, [serve_predictor]) as s:
        yield s


def _segment(server, body: bytes, **params):
    return httpx.post(server.url + "/v1/segment", content=body, params=params,
                      headers={**server.headers(), "Content-Type": "image/jpeg"}, timeout=300)


def _in_background(fn, *args, **kwargs):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", fn(*args, **kwargs)))
    thread.start()
    return thread, box


def _wait_for(server, name: str, value: float, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while server.metric(name) != value:
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        time.sleep(0.05)


def _socket(server, head: bytes) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    s.sendall(head)
    return s


def _trickle(s: socket.socket, data: bytes) -> bytes:
    """Send ``data`` a byte at a time, 0.3 s apart, until the server answers; its answer."""
    reply = b""
    for byte in data:
        try:
            s.sendall(bytes([byte]))
        except OSError:
            break
        s.settimeout(0.3)
        try:
            reply += s.recv(4096)
        except TimeoutError:
            continue
        if reply:
            break
    return reply


def _head(length: int, key: str = KEY) -> bytes:
    return (f"POST /v1/segment HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {length}\r\n\r\n").encode()


def test_concurrent_clients_and_a_full_queue(server, photo_bytes, reference):
    """Three clients at once on one replica with one queue place: two answered right, the
    third refused at once with 503 and Retry-After."""
    barrier = threading.Barrier(3)

    def client():
        barrier.wait()
        return _segment(server, photo_bytes)

    threads = [_in_background(client) for _ in range(3)]
    for t, _ in threads:
        t.join()
    answers = [box["r"] for _, box in threads]
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 200, 503], [r.text for r in answers]
    for r in answers:
        if r.status_code == 503:
            assert r.json()["error"] == "busy" and int(r.headers["retry-after"]) >= 1
        else:
            assert_same_detections(r.json(), reference)
    assert server.metric("pixellib_rejected_total") >= 1


def test_faults_during_an_inference(server, photo_bytes, reference):
    """While a request is being segmented: a client leaving mid-upload, malformed multipart,
    a 1 GB body, a 1 byte/s upload, truncated and hostile images, a wrong key."""
    busy, box = _in_background(_segment, server, photo_bytes)
    _wait_for(server, "pixellib_inferences_running", 1)
    url, h = server.url + "/v1/segment", server.headers()

    gone = server.metric("pixellib_disconnects_total")
    s = _socket(server, _head(50_000) + photo_bytes[:1000])  # leaves mid-upload
    s.close()
    _wait_for(server, "pixellib_disconnects_total", gone + 1)  # counted like any other leaver
    bad = httpx.post(url, headers={**h, "Content-Type": "multipart/form-data; boundary=zz"},
                     content=b"--zz\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n")
    assert bad.status_code == 400 and bad.json()["error"] == "malformed multipart"
    with _socket(server, _head(1 << 30)) as s:  # 1 GB declared: refused from the headers
        assert s.recv(100).startswith(b"HTTP/1.1 413")
    started = time.monotonic()
    with _socket(server, _head(len(photo_bytes)) + photo_bytes[:10]) as s:  # 1 byte/s
        reply = _trickle(s, photo_bytes[10:20])
        assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
    assert time.monotonic() - started < 5
    # Broken images take a queue place for their decoding: send them one at a time.
    truncated = _segment(server, photo_bytes[:-2000], timeout=60)
    assert truncated.status_code == 422 and "truncated" in truncated.json()["detail"]
    assert _segment(server, _png_header(1 << 16, 1 << 16)).status_code == 413
    assert _segment(server, b"\xff\xd8\xff\xe0" + b"\xff" * 5000).status_code in (415, 422)
    wrong = httpx.post(url, headers={"Authorization": "Bearer wrong"}, content=photo_bytes)
    assert wrong.status_code == 401
    busy.join()
    assert box["r"].status_code == 200
    assert_same_detections(box["r"].json(), reference)
    after = _segment(server, photo_bytes)
    assert after.status_code == 200
    assert_same_detections(after.json(), reference)


def test_timeouts_and_disconnects_free_their_place(server, photo_bytes, reference,
                                                    serve_predictor):
    # A request over its deadline gets 504; its inference is stopped at the model's next
    # stage boundary (it used to run to its end for nobody), not counted as an inference;
    # the next normal one is answered correctly.
    stopped = server.metric("pixellib_inferences_stopped_total")
    inferences = server.metric("pixellib_inference_seconds_count")
    late = _segment(server, photo_bytes, timeout=0.2)
    assert late.status_code == 504 and late.json()["error"] == "timeout"
    assert server.metric("pixellib_timeouts_total") >= 1
    _wait_for(server, "pixellib_inferences_stopped_total", stopped + 1)
    assert server.metric("pixellib_inference_seconds_count") == inferences
    after = _segment(server, photo_bytes)
    assert after.status_code == 200
    assert_same_detections(after.json(), reference)

    # A client leaving mid-inference: its result is dropped and counted. street.jpg keeps the
    # replica busy ~2.5x longer than the test photo (~1.4 s here at 2 threads), so the server's
    # 0.2 s check finds the closed socket before the inference ends, on any machine near ours.
    street = PHOTO.parent / "street.jpg"
    slow = street.read_bytes()
    before = server.metric("pixellib_disconnects_total")
    with _socket(server, _head(len(slow)) + slow):
        _wait_for(server, "pixellib_inferences_running", 1)
    deadline = time.monotonic() + 10
    while server.metric("pixellib_disconnects_total") == before:
        assert time.monotonic() < deadline, "the server did not notice the client leaving"
        time.sleep(0.05)
    _wait_for(server, "pixellib_inferences_stopped_total", stopped + 2)

    # A client waiting in the queue leaves (timeout) while another's inference runs: its place
    # frees at once, and the running one is answered.
    _wait_for(server, "pixellib_inferences_running", 0)
    running, box = _in_background(_segment, server, slow)
    _wait_for(server, "pixellib_inferences_running", 1)
    queued = _segment(server, photo_bytes, timeout=0.5)
    assert queued.status_code == 504
    assert server.metric("pixellib_queue_length") == 0
    running.join()
    assert box["r"].status_code == 200
    from pixellib.media.images import read_image

    assert_same_detections(box["r"].json(), serve_predictor(read_image(street)))
    after = _segment(server, photo_bytes)
    assert after.status_code == 200
    assert_same_detections(after.json(), reference)


def test_cors_only_when_asked(serve_predictor):
    from pixellib.serve.settings import ServeSettings

    settings = ServeSettings(cors_origins=("https://app.example",),
                             torch_threads=torch.get_num_threads())
    with thread_server(settings, [serve_predictor]) as s:
        preflight = {"Access-Control-Request-Method": "POST"}
        ok = httpx.options(s.url + "/v1/segment",
                           headers={"Origin": "https://app.example", **preflight})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(s.url + "/v1/segment",
                              headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers
        assert other.status_code == 400 and other.json() == {  # JSON, as every error
            "error": "bad request", "detail": "CORS preflight refused: Disallowed CORS origin"}
        # A script on that origin reads a 503's Retry-After only if it is exposed to it.
        info = httpx.get(s.url + "/v1/info", headers={"Origin": "https://app.example"})
        assert "retry-after" in info.headers["access-control-expose-headers"].lower()


class _Exploding:
    """The shared Predictor, except that every inference raises (a bug, as far as the server
    can tell): what reaches the client, and whether its connection survives."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __call__(self, image):
        raise RuntimeError("boom")


def test_internal_error_is_json_and_keeps_the_connection(serve_predictor):
    from pixellib.serve.settings import ServeSettings

    settings = ServeSettings(replicas=1, max_queue=1, timeout=60, api_key=KEY,
                             torch_threads=torch.get_num_threads())
    with thread_server(settings, [_Exploding(serve_predictor)]) as s, \
            httpx.Client(base_url=s.url, headers=s.headers()) as client:
        r = client.post("/v1/segment", content=PHOTO.read_bytes(),
                        headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 500, r.text
        assert r.json() == {"error": "internal error", "detail": "RuntimeError"}
        # The same keep-alive connection answers the next request (it used to be reset).
        assert client.get("/healthz").json() == {"status": "ok"}
        assert s.metric('pixellib_requests_total{method="POST",endpoint="/v1/segment",'
                        'status="500"}') == 1


def test_a_model_that_cannot_load_stops_the_server(tmp_path):
    """`pixellib serve` with a corrupt model file exits with status 1 and says why, rather
    than answering 503 'loading' for ever."""
    import os
    import subprocess
    import sys

    from serve_support import ROOT, free_port

    bad = tmp_path / "pointrend_resnet50.pkl"
    bad.write_bytes(b"\x80\x04 this is not a checkpoint")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-m", "pixellib", "serve", "--model", str(bad), "--port",
         str(free_port()), "--log-level", "critical"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    # a user error, as `pixellib segment` reports it: one line naming the file, no traceback
    said = [line for line in done.stderr.splitlines() if "failed to load" in line]
    assert len(said) == 1 and said[0].startswith("pixellib: error: the model failed to load: "
                                                 "ModelFileError: "), done.stderr
    assert "pointrend_resnet50.pkl" in said[0] and "Traceback" not in done.stderr


def test_not_ready_answers():
    from pixellib.serve.app import _State
    from pixellib.serve.settings import ServeSettings

    state = _State(ServeSettings())
    loading = state.not_ready()
    assert loading.status == 503 and loading.headers == {"Retry-After": "5"}
    state.error = "UnpicklingError: bad file"
    failed = state.not_ready()
    assert failed.status == 503 and not failed.headers and "bad file" in failed.detail


def _read_until_closed(s: socket.socket, limit: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started, reply = time.monotonic(), b""
    s.settimeout(limit)
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return reply, time.monotonic() - started
        reply += chunk


def test_a_late_request_head_does_not_hold_a_connection(server):
    """A client that connects and sends nothing, or its headers a byte at a time, was kept
    for ever, and uvicorn counts such connections against its concurrency limit (then 503
    for everyone). With head_timeout=1 they are closed; the server keeps serving."""
    late = 'pixellib_connection_answers_total{status="408"}'
    counted = server.metric(late)
    with _socket(server, b"") as idle:
        reply, took = _read_until_closed(idle)
    assert reply == b"" and 0.8 < took < 5  # nothing sent: closed quietly
    assert server.metric(late) == counted  # and not counted as an answer
    head = f"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n".encode()
    with _socket(server, head[:5]) as slow:
        started = time.monotonic()
        reply = _trickle(slow, head[5:])
        assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
        assert b'"error": "request timeout"' in reply and time.monotonic() - started < 5
    assert server.metric(late) == counted + 1  # the app never saw it: counted here
    # a keep-alive connection that sends its next request in time is served again
    def answer(sock) -> bytes:
        data = b""
        while not data.endswith(b"}"):  # the status line, the headers, then the JSON body
            data += sock.recv(4096)
        return data

    with _socket(server, head + b"\r\n") as alive:
        alive.settimeout(10)
        first = answer(alive)
        time.sleep(0.5)
        alive.sendall(head + b"\r\n")
        second = answer(alive)
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
    assert httpx.get(server.url + "/healthz").status_code == 200


def _cli_serve(checkpoint, *extra):
    """``pixellib serve`` in a subprocess, once ready: ``(process, url)``."""
    import os
    import subprocess
    import sys

    from serve_support import ROOT, free_port, wait_until_ready

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixellib", "serve", "--model", str(checkpoint), "--port",
         str(port), "--log-level", "warning", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(proc, url, timeout=120)
    return proc, url


def _stopped(proc, signals, gap: float = 0.5) -> str:
    """Send ``signals`` ``gap`` seconds apart; the process's output once it has exited."""
    try:
        for k, sig in enumerate(signals):
            if k:
                time.sleep(gap)
            proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            out, _ = proc.communicate()
    return out.decode(errors="replace")


def test_sigterm_during_an_abandoned_inference_exits_cleanly(r50_checkpoint, photo_bytes):
    """A request answered 504 leaves its inference running; SIGTERM then made the process
    exit with torch busy on the replica's thread, and it aborted ("terminate called without
    an active exception", status -6) instead of exiting 143."""
    import signal

    proc, url = _cli_serve(r50_checkpoint, "--speed", "rapid")
    late = httpx.post(url + "/v1/segment", params={"timeout": "0.3"}, content=photo_bytes,
                      headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert late.status_code == 504
    time.sleep(0.2)  # the inference goes on
    text = _stopped(proc, [signal.SIGTERM])
    assert proc.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), (proc.returncode, text)
    assert "terminate called" not in text


def test_a_second_ctrl_c_leaves_at_once_without_aborting(r50_checkpoint, photo_bytes):
    """uvicorn's "CTRL+C to force quit" during an inference aborted the process (status
    134/-6). Now it leaves without aborting: at once with 130 when uvicorn's run ends in an
    interrupt, or with 0 after the running inference when uvicorn returns normally (which of
    the two depends on when the signals land)."""
    import signal

    proc, url = _cli_serve(r50_checkpoint)
    busy, box = _in_background(_post_ignoring_errors, url, photo_bytes)
    time.sleep(1.0)  # the full-size inference takes seconds
    text = _stopped(proc, [signal.SIGINT, signal.SIGINT])
    busy.join(60)
    assert proc.returncode in (0, 130, -signal.SIGINT), (proc.returncode, text[-2000:])
    assert "terminate called" not in text
    if proc.returncode != 0:
        assert "pixellib: interrupted" in text
    # The request cut short got a plain-text 500 ("a bug of ours", README) and the log a
    # traceback per request: now a JSON 503 that says why, or no answer.
    answer = box.get("r")
    assert answer is None or answer.status_code == 200 or (
        answer.status_code == 503 and answer.json()["error"] == "shutting down"), (
        answer.status_code, answer.text)
    assert "Exception in ASGI application" not in text, text[:3000]
    # nor uvicorn's traceback of the lifespan task it cancelled on the way out
    assert "Traceback" not in text, text[:3000]


def _post_ignoring_errors(url, body):
    try:
        return httpx.post(url + "/v1/segment", content=body,
                          headers={"Content-Type": "image/jpeg"}, timeout=60)
    except httpx.TransportError:
        return None


def test_an_early_answer_does_not_time_out_the_body_or_the_next_request(server):
    """A 404 sent before the upload ended: the rest of the body is not the next request's
    head (it earned the next request a 408), and the next request in time is served."""
    body = b"x" * 200_000
    head = (f"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode()
    get = f"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode()
    for gap, served in ((0.3, True), (1.6, False)):  # head_timeout is 1 s here
        with _socket(server, head) as s:
            s.settimeout(10)
            first = b""
            while not first.endswith(b"}"):  # the whole 404, headers and JSON body
                first += s.recv(4096)
            assert first.startswith(b"HTTP/1.1 404"), first[:80]
            for start in range(0, len(body), 50_000):  # the client goes on with its upload
                s.sendall(body[start:start + 50_000])
                time.sleep(0.1)
            time.sleep(gap)
            try:
                s.sendall(get)
                reply = b""
                while b"}" not in reply:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
            except OSError:  # closed quietly after the deadline: fine
                reply = b""
        assert b"408" not in reply.split(b"\r\n", 1)[0], reply[:100]
        if served:
            assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
        else:
            assert reply == b""  # the idle connection was closed, without an answer
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_answers_given_without_the_app_are_in_the_metrics(server, serve_predictor):
    """uvicorn's own 400 (not HTTP) and 503 (over the connection limit) reached no
    middleware of ours, so /metrics did not show them."""
    from pixellib.serve.settings import ServeSettings

    bad = 'pixellib_connection_answers_total{status="400"}'
    counted = server.metric(bad)
    with _socket(server, b"NOT HTTP AT ALL\r\n\r\n") as s:
        reply, _ = _read_until_closed(s)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
    assert server.metric(bad) == counted + 1
    assert httpx.get(server.url + "/healthz").status_code == 200

    settings = ServeSettings(replicas=1, max_queue=1, head_timeout=30.0,
                             torch_threads=torch.get_num_threads())
    with thread_server(settings, [serve_predictor], limit_concurrency=2) as small:
        over = 'pixellib_connection_answers_total{status="503"}'
        assert small.metric(over) == 0
        with _socket(small, b""), _socket(small, b""):  # two idle connections fill it
            time.sleep(0.2)
            answer = httpx.get(small.url + "/healthz")
        assert answer.status_code == 503, answer.text  # uvicorn's own, in plain text
        assert small.metric(over) == 1
        assert httpx.get(small.url + "/healthz").status_code == 200


def test_an_over_long_head_is_431_in_json_however_it_arrives(server):
    """A request line and headers over 16 KiB got uvicorn's plain-text "Invalid HTTP
    request received." when they came in pieces (as over a network) and were served when
    they came in one write; bad framing got the same words. Now 431 (or 400 naming what
    h11 found) in the JSON error form, either way, and counted."""
    long_url = "/healthz?" + "a" * 20_000
    head = f"GET {long_url} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    too_large = 'pixellib_connection_answers_total{status="431"}'
    counted = server.metric(too_large)
    with _socket(server, b"") as s:
        for k in range(0, len(head), 1024):
            try:
                s.sendall(head[k:k + 1024])
            except OSError:
                break
            time.sleep(0.002)
        reply, _ = _read_until_closed(s)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert b"application/json" in reply and b"over 16 KiB" in reply
    assert server.metric(too_large) == counted + 1
    with _socket(server, head) as s:  # all in one write: the app's check, the same answer
        reply, _ = _read_until_closed(s)  # (closed by the 1 s head timeout after)
    assert reply.startswith(b"HTTP/1.1 431 ") and b"over 16 KiB" in reply, reply[:200]
    with _socket(server, b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Length: abc"
                         b"\r\n\r\n") as s:
        reply, _ = _read_until_closed(s)
    assert reply.startswith(b"HTTP/1.1 400 ") and b'"error": "not valid HTTP"' in reply
    assert b"Content-Length" in reply, reply
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_busy_before_any_inference_ends_says_a_realistic_retry_after(serve_predictor,
                                                                       photo_bytes):
    """Until an inference had finished, a 503 said Retry-After: 1 (a mean over none),
    though one takes seconds on a CPU: the web page ran out of retries."""
    from pixellib.serve.app import _FIRST_INFERENCE_GUESS
    from pixellib.serve.settings import ServeSettings

    settings = ServeSettings(replicas=1, max_queue=0, timeout=300,
                             torch_threads=torch.get_num_threads())
    with thread_server(settings, [serve_predictor]) as busy:
        first = _in_background(httpx.post, busy.url + "/v1/segment", content=photo_bytes,
                               headers={"Content-Type": "image/jpeg"}, timeout=300)
        _wait_for(busy, "pixellib_inferences_running", 1)
        r = httpx.post(busy.url + "/v1/segment", content=photo_bytes,
                       headers={"Content-Type": "image/jpeg"}, timeout=300)
        first[0].join()
    assert first[1]["r"].status_code == 200
    assert r.status_code == 503 and int(r.headers["retry-after"]) == int(
        _FIRST_INFERENCE_GUESS) > 1, r.headers


def test_a_protocol_error_after_an_early_answer_adds_no_second_answer(server):
    """A request answered before its body ended (415 for a compressed body), then bad
    chunk framing: a second, unasked-for 400 followed the 415 on the connection."""
    head = (f"POST /v1/segment HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Type: image/jpeg\r\nContent-Encoding: gzip\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    with _socket(server, head) as s:
        s.settimeout(30)
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 415 "), first[:100]
        try:
            s.sendall(b"zz-not-a-chunk-size\r\n\r\n")
        except OSError:
            pass
        rest, _ = _read_until_closed(s)
    assert (first + rest).count(b"HTTP/1.1 ") == 1, first + rest
    assert httpx.get(server.url + "/healthz").status_code == 200
