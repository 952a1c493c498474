"""Model download and cache (pixellib.checkpoint.hub) against a local HTTP server on 127.0.0.1.

Most tests swap the checkpoint validator for one that accepts a tiny marker file, so no
240 MB checkpoint is needed; ``test_real_validator_*`` keep the real one.
"""
from __future__ import annotations

import pickle
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pixellib.checkpoint import hub
from pixellib.errors import ModelFileError, ModelNotFoundError, PixellibError

MARKER = b"PIXELLIB-TEST-CHECKPOINT "
GOOD = MARKER + b"resnet50\n" + bytes(range(256)) * 64  # 16 KiB: several reads


class _Handler(BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802 - http.server's naming
        kind, body = self.routes.get(self.path, ("404", b""))
        if kind == "404":
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        if kind == "short":  # promise more than is sent, then close: an interrupted download
            self.send_header("Content-Length", str(len(body) + 10_000))
        elif kind != "no-length":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    """Base URL of a server whose routes tests fill in through ``_Handler.routes``."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def routes():
    _Handler.routes = {}
    yield _Handler.routes
    _Handler.routes = {}


@pytest.fixture
def home(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("PIXELLIB_HOME", str(folder))
    for name in hub.MODEL_URLS:
        monkeypatch.delenv(f"PIXELLIB_MODEL_URL_{name.upper()}", raising=False)
    return folder


@pytest.fixture
def fake_validator(monkeypatch):
    """Accept files starting with MARKER + arch; record the paths validated."""
    import pixellib.checkpoint.state_dict as weights

    seen = []

    def inspect(path):
        path = Path(path)
        seen.append((path, path.exists()))
        data = path.read_bytes()
        if not data.startswith(MARKER):
            raise ModelFileError(f"{path}: not a checkpoint")
        arch = data[len(MARKER):].split(b"\n", 1)[0].decode()
        return SimpleNamespace(path=path, arch=arch, num_parameters=1)

    monkeypatch.setattr(weights, "inspect_checkpoint", inspect)
    return seen


def _cache_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_cache_dir_order(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELLIB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "home"
    monkeypatch.delenv("PIXELLIB_HOME")
    assert hub.cache_dir() == tmp_path / "xdg" / "pixellib"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert hub.cache_dir() == Path.home() / ".cache" / "pixellib"


def test_model_url_override_order(monkeypatch):
    monkeypatch.delenv("PIXELLIB_MODEL_URL_RESNET101", raising=False)
    assert hub.model_url("resnet101") == hub.MODEL_URLS["resnet101"]
    assert hub.MODEL_URLS["resnet101"].endswith("/0.2.0/pointrend_resnet101.pkl")
    monkeypatch.setenv("PIXELLIB_MODEL_URL_RESNET101", "http://127.0.0.1:1/x.pkl")
    assert hub.model_url("resnet101") == "http://127.0.0.1:1/x.pkl"
    assert hub.model_url("ResNet101", "http://127.0.0.1:2/y.pkl") == "http://127.0.0.1:2/y.pkl"


@pytest.mark.parametrize("kind", ["plain", "no-length"])
def test_download_validates_then_renames(server, routes, home, fake_validator, kind):
    routes["/m.pkl"] = (kind, GOOD)
    path = hub.download_model("resnet50", url=f"{server}/m.pkl", progress=False)
    assert path == home / "pointrend_resnet50.pkl"
    assert path.read_bytes() == GOOD
    assert _cache_files(home) == ["pointrend_resnet50.pkl"]
    # Validated under a temporary name in the cache folder, before the rename.
    [(validated, existed)] = fake_validator
    assert existed and validated.parent == home and validated != path


def test_env_url_is_used(server, routes, home, fake_validator, monkeypatch):
    routes["/env.pkl"] = ("plain", GOOD)
    monkeypatch.setenv("PIXELLIB_MODEL_URL_RESNET50", f"{server}/env.pkl")
    assert hub.download_model("resnet50", progress=False).read_bytes() == GOOD


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("short", GOOD, f"interrupted: got {len(GOOD)} of {len(GOOD) + 10_000} bytes"),
        ("plain", b"\x00garbage" * 1000, "not a valid PointRend checkpoint"),
        ("404", b"", "HTTP 404"),
        ("plain", b"", "empty file"),
        ("plain", MARKER + b"resnext101_32x8d\n", "holds a resnext101_32x8d model"),
    ],
    ids=["interrupted", "garbage", "404", "empty", "wrong-arch"],
)
def test_failed_download_leaves_nothing(server, routes, home, fake_validator, kind, body,
                                        message):
    routes["/bad.pkl"] = (kind, body)
    url = f"{server}/bad.pkl"
    with pytest.raises(hub.ModelDownloadError) as info:
        hub.download_model("resnet50", url=url, progress=False)
    assert url in str(info.value) and message in str(info.value)
    assert isinstance(info.value, PixellibError)
    assert _cache_files(home) == []


def test_failed_download_keeps_previous_cached_file(server, routes, home, fake_validator):
    home.mkdir()
    (home / "pointrend_resnet50.pkl").write_bytes(GOOD)
    routes["/bad.pkl"] = ("short", b"x" * 100)
    with pytest.raises(hub.ModelDownloadError):
        hub.download_model("resnet50", url=f"{server}/bad.pkl", progress=False)
    assert _cache_files(home) == ["pointrend_resnet50.pkl"]
    assert (home / "pointrend_resnet50.pkl").read_bytes() == GOOD


def test_connection_refused_is_clear(home, fake_validator):
    url = "http://127.0.0.1:9/none.pkl"  # discard port: nothing listens
    with pytest.raises(hub.ModelDownloadError, match="download of http://127.0.0.1:9/none.pkl"):
        hub.download_model("resnet50", url=url, progress=False)
    assert _cache_files(home) == []


@pytest.mark.parametrize("url, says", [
    ("notaurl", "cannot download 'notaurl': not a URL"),
    ("http://[::1", "not a URL \\(Invalid IPv6 URL\\)"),
    ("", "the model URL given is empty"),
    ("http://a b/", "cannot download 'http://a b/': not a URL"),  # it was "interrupted"
])
def test_a_url_that_is_not_one_is_a_clear_error(home, fake_validator, url, says):
    """It ended in a ValueError traceback ("unknown url type"); '' fetched the default."""
    with pytest.raises(hub.ModelDownloadError, match=says):
        hub.download_model("resnet50", url=url, progress=False)
    assert _cache_files(home) == []


def test_resolve_model(server, routes, home, fake_validator, tmp_path):
    own = tmp_path / "mine.pkl"
    own.write_bytes(b"anything")
    assert hub.resolve_model(own) == own  # an existing path is returned as is
    with pytest.raises(ModelNotFoundError, match="pixellib download resnet50"):
        hub.resolve_model("resnet50", download=False)
    routes["/m.pkl"] = ("plain", GOOD)
    # The function argument has no URL: first use downloads from the env override.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIXELLIB_MODEL_URL_RESNET50", f"{server}/m.pkl")
        path = hub.resolve_model("resnet50", progress=False)
    assert path == home / "pointrend_resnet50.pkl"
    routes.clear()  # second use: from the cache, no request made
    assert hub.resolve_model("RESNET50") == path
    assert len(fake_validator) == 1


@pytest.mark.parametrize("name", ["resnet152", "pointrend_resnet50.pkl", "no/such/file.pth"])
def test_resolve_unknown_model(home, name):
    with pytest.raises(ModelNotFoundError) as info:
        hub.resolve_model(name, download=False)
    text = str(info.value)
    assert name in text and "resnet50" in text and str(home) in text
    assert isinstance(info.value, FileNotFoundError)


def test_download_unknown_name(home):
    with pytest.raises(ModelNotFoundError, match="expected one of resnet50, resnet101"):
        hub.download_model("resnet18")


# ----------------------------------------------------------------------------- real validator


@pytest.mark.parametrize(
    "body",
    [
        b"\x80\x04garbage that is not a pickle" * 10,
        pickle.dumps({"model": {"backbone.fpn_output2.weight": np.zeros((2, 2), np.float32)}}),
    ],
    ids=["garbage", "wrong-keys"],
)
def test_real_validator_rejects(server, routes, home, body):
    routes["/real.pkl"] = ("plain", body)
    with pytest.raises(hub.ModelDownloadError, match="not a valid PointRend checkpoint") as e:
        hub.download_model("resnet50", url=f"{server}/real.pkl", progress=False)
    assert _cache_files(home) == []
    assert ".tmp" not in str(e.value)  # its temporary name, deleted: not named


def test_real_validator_is_called(server, routes, home, monkeypatch):
    import pixellib.checkpoint.state_dict as weights

    calls = []
    real = weights.inspect_checkpoint

    def spy(path):
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(weights, "inspect_checkpoint", spy)
    routes["/real.pkl"] = ("plain", b"not a checkpoint")
    with pytest.raises(hub.ModelDownloadError):
        hub.download_model("resnet50", url=f"{server}/real.pkl", progress=False)
    assert len(calls) == 1 and calls[0].parent == home
