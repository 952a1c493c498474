"""``pixellib serve`` over HTTP: the real CLI in a subprocess, called with httpx."""
from __future__ import annotations

import json
import socket
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from serve_support import API_KEY, assert_same_detections, httpx

pytestmark = pytest.mark.slow


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` and holds almost nothing (a pixel bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _raw_request(url: str, head: str, body: bytes = b"", wait: float = 10.0) -> bytes:
    """Send ``head`` (+ ``body``) on a raw socket and return what the server answers."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as s:
        s.sendall(head.encode() + body)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return data


def test_readyz_503_until_loaded_then_200(cli_server):
    seen = cli_server.readyz_seen
    assert seen[-1] == 200
    assert 503 in seen, f"/readyz never answered 503 while the model loaded: {seen}"
    assert seen.index(503) < seen.index(200)
    assert httpx.get(cli_server.url + "/healthz").json() == {"status": "ok"}


def test_segment_multipart_matches_predictor(cli_server, photo_bytes, reference):
    r = httpx.post(cli_server.url + "/v1/segment", headers=cli_server.headers(),
                   files={"image": ("photo.jpg", photo_bytes, "image/jpeg")}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert_same_detections(r.json(), reference)


def test_segment_raw_body_with_options(cli_server, photo_bytes, reference):
    from pixellib.export import mask_polygons

    name = reference.class_names[0]
    params = {"classes": name, "max_detections": "1", "polygons": "true",
              "confidence": str(float(reference.scores.min()) - 1e-6)}
    r = httpx.post(cli_server.url + "/v1/segment", params=params, content=photo_bytes,
                   headers={**cli_server.headers(), "Content-Type": "image/jpeg"}, timeout=300)
    assert r.status_code == 200, r.text
    payload = r.json()
    expected = reference.with_classes([int(reference.class_ids[0])])[:1]
    polygons = [obj.pop("polygons") for obj in payload["objects"]]
    assert_same_detections(payload, expected)
    assert polygons == [[p.tolist() for p in mask_polygons(expected.masks[0])]]


def test_render_is_the_annotated_image(cli_server, photo_bytes, photo_bgr, reference):
    from pixellib.visualize import annotate

    r = httpx.post(cli_server.url + "/v1/render", headers=cli_server.headers(),
                   files={"image": ("p.jpg", photo_bytes)},
                   data={"boxes": "true", "format": "png"}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    got = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(got, annotate(photo_bgr, reference, show_boxes=True))


def _form_parts(response) -> dict:
    """The parts of a multipart/form-data answer: ``name -> (content type, filename, data)``."""
    from email.parser import BytesParser
    from email.policy import HTTP

    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + response.content)
    assert message.is_multipart()
    return {part.get_param("name", header="content-disposition"):
            (part.get_content_type(), part.get_filename(), part.get_payload(decode=True))
            for part in message.iter_parts()}


def test_render_with_detections_is_one_answer_for_both(cli_server, photo_bytes, photo_bgr,
                                                       reference):
    """The web page needed two inferences per photo (segment, then render)."""
    from pixellib.export import mask_polygons
    from pixellib.visualize import annotate

    url, h = cli_server.url + "/v1/render", cli_server.headers()
    before = cli_server.metric("pixellib_inference_seconds_count")
    r = httpx.post(url, headers=h, files={"image": ("p.jpg", photo_bytes)},
                   data={"boxes": "true", "format": "png", "detections": "true",
                         "polygons": "true"}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert cli_server.metric("pixellib_inference_seconds_count") == before + 1
    parts = _form_parts(r)
    assert set(parts) == {"detections", "image"}
    kind, _, data = parts["detections"]
    assert kind == "application/json"
    payload = json.loads(data)
    polygons = [obj.pop("polygons") for obj in payload["objects"]]
    assert_same_detections(payload, reference)
    assert polygons == [[p.tolist() for p in mask_polygons(m)] for m in reference.masks]
    kind, filename, data = parts["image"]
    assert (kind, filename) == ("image/png", "result.png")
    got = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(got, annotate(photo_bgr, reference, show_boxes=True))
    # Outlines come only with the detections.
    r = httpx.post(url, headers=h, files={"image": ("p.jpg", photo_bytes)},
                   data={"polygons": "true"}, timeout=60)
    assert r.status_code == 422 and "detections=true" in r.json()["detail"], r.text


def test_auth_checked_before_the_upload(cli_server):
    url = cli_server.url
    for headers in ({}, cli_server.headers("wrong-key"), {"Authorization": API_KEY}):
        r = httpx.get(url + "/v1/info", headers=headers)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
    # A 1 GB upload with a wrong key: answered 401 from the headers alone (no body sent).
    started = time.monotonic()
    answer = _raw_request(url, "POST /v1/segment HTTP/1.1\r\nHost: x\r\n"
                          "Authorization: Bearer nope\r\nContent-Type: image/jpeg\r\n"
                          f"Content-Length: {1 << 30}\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert time.monotonic() - started < 5
    for path in ("/healthz", "/readyz", "/"):
        assert httpx.get(url + path).status_code == 200
    assert httpx.get(url + "/v1/info", headers=cli_server.headers()).status_code == 200


def _error(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "detail"} and body["detail"], body
    return body


def test_bad_requests_get_json_errors(cli_server, photo_bytes):
    url, h = cli_server.url + "/v1/segment", cli_server.headers()
    post = lambda **kw: httpx.post(url, headers={**h, **kw.pop("headers", {})}, timeout=60, **kw)  # noqa: E731
    # 413 from Content-Length, before any of the body is read.
    answer = _raw_request(cli_server.url, "POST /v1/segment HTTP/1.1\r\nHost: x\r\n"
                          f"Authorization: Bearer {API_KEY}\r\nContent-Length: {2 << 20}\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # 413 while streaming a chunked body with no Content-Length.
    def chunks():
        for _ in range(40):
            yield b"\0" * 65536
    assert "limit of 1 MiB" in _error(post(content=chunks()), 413)["detail"]
    _error(post(content=b""), 400)
    boundary = "b0und4ry"
    _error(post(files={"other": ("a.jpg", photo_bytes)}), 422)
    fields_only = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"confidence\""
                   f"\r\n\r\n0.9\r\n--{boundary}--\r\n")
    multipart = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    assert "image" in _error(post(content=fields_only.encode(), headers=multipart), 400)["detail"]
    _error(post(content=b"plain text, not a picture", headers={"Content-Type": "text/plain"}),
           415)
    says = _error(post(content=b'{"image": "x.jpg"}',
                       headers={"Content-Type": "application/json"}), 415)["detail"]
    assert says.startswith("the request body is not an image") and "'image'" in says, says
    empty_bg = _error(httpx.post(cli_server.url + "/v1/render", headers=h,
                                 data={"effect": "replace-bg"},
                                 files={"image": ("a.jpg", photo_bytes),
                                        "background": ("b.jpg", b"")}), 400)
    assert "'background' is empty" in empty_bg["detail"]
    # An empty file field was told to send the image as that very field.
    empty = _error(post(files={"image": ("zero.jpg", b"")}), 400)["detail"]
    assert "'image' is empty" in empty and "'zero.jpg'" in empty, empty
    # Text and sound that happen to start like BMP ("BM") or WebP ("RIFF") are not images
    # (415), where a broken image is 422.
    wav = b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00" + bytes(40)
    for body in (b"BMW 320i, for sale, good condition", wav):
        _error(post(content=body, headers={"Content-Type": "application/octet-stream"}), 415)
    webp = cv2.imencode(".webp", cv2.imdecode(np.frombuffer(photo_bytes, np.uint8), 1))[1]
    bmp = cv2.imencode(".bmp", cv2.imdecode(np.frombuffer(photo_bytes, np.uint8), 1))[1]
    for broken in (webp.tobytes()[:60], bmp.tobytes()[:60]):
        _error(post(content=broken), 422)
    assert "truncated" in _error(post(content=photo_bytes[: len(photo_bytes) // 2]), 422)["detail"]
    avif = cv2.imencode(".avif", cv2.imdecode(np.frombuffer(photo_bytes, np.uint8), 1))[1]
    _error(post(content=avif.tobytes()[:800]), 422)  # a cut AVIF is a broken image, not 415
    assert "over the limit" in _error(post(content=_png_header(100_000, 100_000)), 413)["detail"]
    assert "1200x1000" in _error(post(content=_png_header(1200, 1000)), 413)["detail"]
    malformed = f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc"
    _error(post(content=malformed.encode(), headers=multipart), 400)
    for endpoint, params, says in (
            ("segment", {"confidence": "abc"}, "not a number: 'abc'"),
            ("segment", {"confidence": "0.1"}, "below the server's threshold"),
            ("segment", {"classes": "dragon"}, "dragon"),
            ("segment", {"classes": "\u00b2"}, "unknown class name"),  # isdigit(), not int()
            ("render", {"classes": "person,\u2460"}, "unknown class name"),
            ("segment", {"max_detections": "-1"}, "between 0 and"),
            ("segment", {"max_detections": "two"}, "not an integer: 'two'"),
            ("segment", {"polygons": "maybe"}, "true or false"),
            ("segment", {"polygons": ""}, "got no value (write polygons=true)"),
            ("segment", {"timeout": "1e9"}, "--timeout"),
            ("segment", {"feather": "1"}, "unknown option; this endpoint takes"),
            ("segment", {"foo": "1"}, "unknown option"),
            ("render", {"feather": "soft"}, "not a number: 'soft'"),
            ("render", {"feather": "nan"}, "between 0 and 100")):
        body = _error(httpx.post(f"{cli_server.url}/v1/{endpoint}", headers=h, params=params,
                                 content=photo_bytes, timeout=60), 422)
        assert body["error"] == "invalid option", body
        assert body["detail"].startswith(next(iter(params)) + ":") and says in body["detail"], body
    _error(httpx.post(cli_server.url + "/v1/render", headers=h, params={"format": "gif"},
                      content=photo_bytes), 422)
    # An option given twice (query, form, or one of each) is ambiguous: 422 naming it.
    for params, data in (([("max_detections", "1"), ("max_detections", "2")], None),
                         ({"max_detections": "1"}, {"max_detections": "4"})):
        body = _error(httpx.post(url, headers=h, params=params, data=data,
                                 files={"image": ("a.jpg", photo_bytes)}), 422)
        assert body["detail"] == "max_detections: given twice", body
    field = f"--{boundary}\r\nContent-Disposition: form-data; name=\"polygons\"\r\n\r\n1\r\n"
    image = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
             f"filename=\"a.jpg\"\r\n\r\n")
    twice = (2 * field + image).encode() + photo_bytes + f"\r\n--{boundary}--\r\n".encode()
    assert _error(post(content=twice, headers=multipart), 422)["detail"] == "polygons: given twice"
    _error(httpx.get(cli_server.url + "/nowhere"), 404)
    _error(httpx.get(cli_server.url + "/static/../../etc/passwd"), 404)
    assert httpx.get(cli_server.url + "/healthz").status_code == 200


def test_odd_shapes_and_format_limits(cli_server):
    """A 1000x1 strip is segmented (its short side would round to 0 px); a WebP past the
    format's 16383 px a side is refused with a 422, and the default format of the same image
    (JPEG, 65500 px) is fine."""
    h = cli_server.headers()
    strip = cv2.imencode(".png", np.full((1, 1000, 3), 128, np.uint8))[1].tobytes()
    r = httpx.post(cli_server.url + "/v1/segment", headers=h, content=strip, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["image"] == {"width": 1000, "height": 1}
    long = cv2.imencode(".png", np.full((2, 16384, 3), 128, np.uint8))[1].tobytes()
    body = _error(httpx.post(cli_server.url + "/v1/render", headers=h, params={"format": "webp"},
                             content=long, timeout=120), 422)
    assert body["detail"].startswith("format:") and "16383" in body["detail"], body
    r = httpx.post(cli_server.url + "/v1/render", headers=h, content=long, timeout=120)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape == (2, 16384, 3)


def test_probes_answer_head_and_methods_are_labelled(cli_server):
    for path in ("/healthz", "/readyz", "/", "/static/app.js"):
        r = httpx.head(cli_server.url + path)
        assert r.status_code == 200 and r.content == b"", (path, r.status_code)
    r = httpx.post(cli_server.url + "/healthz")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}
    for method in ("XABC", "XDEF"):
        httpx.request(method, cli_server.url + "/healthz")
    text = httpx.get(cli_server.url + "/metrics", headers=cli_server.headers()).text
    assert 'method="XABC"' not in text and 'method="other",endpoint="/healthz"' in text
    assert 'pixellib_requests_total{method="HEAD",endpoint="/healthz",status="200"}' in text


def test_info_metrics_docs(cli_server):
    h = cli_server.headers()
    info = httpx.get(cli_server.url + "/v1/info", headers=h).json()
    assert info["architecture"] == "resnet50" and info["speed"] == "rapid"
    assert info["confidence"] == 0.5 and info["auth"] is True
    assert info["limits"]["max_upload_bytes"] == 1 << 20
    assert info["limits"]["max_pixels"] == 1_000_000
    assert info["versions"]["pixellib"]
    text = httpx.get(cli_server.url + "/metrics", headers=h).text
    assert "# TYPE pixellib_requests_total counter" in text
    assert 'pixellib_requests_total{method="GET",endpoint="/v1/info",status="200"}' in text
    assert "pixellib_queue_length 0" in text
    assert httpx.get(cli_server.url + "/metrics").status_code == 401
    assert "swagger" in httpx.get(cli_server.url + "/docs").text.lower()
    paths = httpx.get(cli_server.url + "/openapi.json").json()["paths"]
    assert {"/v1/segment", "/v1/render", "/healthz", "/readyz", "/v1/info"} <= set(paths)
    ids = [op["operationId"] for path in paths.values() for op in path.values()]
    assert len(ids) == len(set(ids)), ids  # a valid description: client generators need it
    render = paths["/v1/render"]["post"]["responses"]
    assert {"image/jpeg", "image/png", "image/webp"} <= set(render["200"]["content"])
    for route in (paths["/v1/render"]["post"], paths["/v1/segment"]["post"]):
        for status in ("400", "401", "413", "415", "422", "503", "504"):
            error = route["responses"][status]["content"]["application/json"]["schema"]
            assert error["required"] == ["error", "detail"], (status, error)
    page = httpx.get(cli_server.url + "/")
    assert "<html" in page.text and "default-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(cli_server.url + "/static/app.js").status_code == 200


_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool,
               "integer": int, "number": (int, float), "null": type(None)}


def _conforms(value, schema: dict, where: str = "answer") -> None:
    """``value`` has the types, required keys and item types ``schema`` gives (the part of
    JSON Schema the API description uses)."""
    kinds = schema.get("type") or []
    if kinds:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        assert any(isinstance(value, _JSON_TYPES[kind]) and not (
            kind in ("integer", "number") and isinstance(value, bool)) for kind in kinds), (
            where, value, kinds)
    if "enum" in schema:
        assert value in schema["enum"], (where, value)
    for key in schema.get("required", ()):
        assert key in value, (where, key)
    for key, sub in schema.get("properties", {}).items():
        if isinstance(value, dict) and key in value:
            _conforms(value[key], sub, f"{where}.{key}")
    if "items" in schema:
        for k, item in enumerate(value):
            _conforms(item, schema["items"], f"{where}[{k}]")


def test_the_api_description_says_the_types_the_answer_and_the_key(cli_server, photo_bytes):
    """/openapi.json typed every option as a string, described /v1/segment's answer as {},
    and never said that a keyed server wants 'Authorization: Bearer': /docs had no
    "Authorize" and its every "Try it out" got 401."""
    from pixellib.serve.app import create_app
    from pixellib.serve.settings import ServeSettings

    api = httpx.get(cli_server.url + "/openapi.json").json()
    assert api["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": api["components"][
            "securitySchemes"]["apiKey"]["description"]}
    for path, method in (("/v1/segment", "post"), ("/v1/render", "post"),
                         ("/v1/info", "get"), ("/metrics", "get")):
        assert api["paths"][path][method]["security"] == [{"apiKey": []}], path
    assert "security" not in api["paths"]["/healthz"]["get"]
    segment = api["paths"]["/v1/segment"]["post"]
    types = {p["name"]: p["schema"]["type"] for p in segment["parameters"]}
    assert types == {"confidence": "number", "classes": "string", "max_detections": "integer",
                     "timeout": "number", "polygons": "boolean"}
    render = {p["name"]: p["schema"] for p in api["paths"]["/v1/render"]["post"]["parameters"]}
    assert render["boxes"]["type"] == "boolean" and "webp" in render["format"]["enum"]
    form = segment["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert form["confidence"]["type"] == "number"
    schema = segment["responses"]["200"]["content"]["application/json"]["schema"]
    answer = httpx.post(cli_server.url + "/v1/segment", params={"polygons": "true"},
                        files={"image": ("a.jpg", photo_bytes, "image/jpeg")},
                        headers=cli_server.headers(), timeout=300).json()
    assert answer["objects"], "the synthetic model should find something"
    _conforms(answer, schema)
    assert set(answer["objects"][0]) == set(schema["properties"]["objects"]["items"][
        "properties"])  # every field described, none left out
    keyless = create_app(ServeSettings(model="unused.pkl")).openapi()
    assert "securitySchemes" not in keyless.get("components", {})
    assert all("security" not in op for ops in keyless["paths"].values() for op in ops.values())


def test_the_api_description_gives_this_servers_bounds_and_every_answer(cli_server):
    """schemathesis found requests the description allowed and the server refused (422):
    max_detections=101, a confidence under the server's threshold, a timeout past its
    --timeout, unknown form fields, an empty class list; and answers it left out: a 431 on
    every route, the bodies of /healthz, /readyz and /v1/info ("string" in /docs)."""
    from pixellib.serve.app import create_app
    from pixellib.serve.settings import ServeSettings

    api = httpx.get(cli_server.url + "/openapi.json").json()
    info = httpx.get(cli_server.url + "/v1/info", headers=cli_server.headers()).json()
    assert info["confidence"] == 0.5 and info["limits"]["timeout_s"] == 300
    for path in ("/v1/segment", "/v1/render"):
        operation = api["paths"][path]["post"]
        form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert form["additionalProperties"] is False
        for schema in ({p["name"]: p["schema"] for p in operation["parameters"]},
                       form["properties"]):
            assert schema["confidence"]["minimum"] == info["confidence"]
            assert schema["max_detections"]["maximum"] == info["max_detections"] == 100
            assert schema["timeout"]["maximum"] == 300
            assert schema["classes"]["minLength"] == 1
    # each bound is the server's: one past it is refused, the bound itself taken
    for option, past, at in (("max_detections", 101, 100), ("confidence", 0.49, 0.5),
                             ("timeout", 300.5, 300)):
        for value, status in ((past, 422), (at, 415)):  # 415: the body is no image
            r = httpx.post(cli_server.url + "/v1/segment", params={option: value},
                           files={"image": ("a.jpg", b"not an image", "image/jpeg")},
                           headers=cli_server.headers(), timeout=60)
            assert r.status_code == status, (option, value, r.text)
    assert all("431" in op["responses"] for ops in api["paths"].values()
               for op in ops.values())
    r = httpx.get(cli_server.url + "/healthz", headers={"X-Big": "a" * 17000})
    assert r.status_code == 431
    for path, body in (("/healthz", httpx.get(cli_server.url + "/healthz").json()),
                       ("/readyz", httpx.get(cli_server.url + "/readyz").json()),
                       ("/v1/info", info)):
        schema = api["paths"][path]["get"]["responses"]["200"]["content"][
            "application/json"]["schema"]
        _conforms(body, schema, path)
        assert set(body) <= set(schema["properties"]), path
    # before the model has loaded its bounds are unknown, and not claimed
    loading = create_app(ServeSettings(model="unused.pkl")).openapi()
    parameters = {p["name"]: p["schema"]
                  for p in loading["paths"]["/v1/segment"]["post"]["parameters"]}
    assert parameters["confidence"]["minimum"] == 0
    assert "maximum" not in parameters["max_detections"]


def test_a_compressed_upload_is_named_as_such(cli_server, photo_bytes):
    """A gzip body was called "not an image"; the Content-Encoding was the cause."""
    import gzip

    r = httpx.post(cli_server.url + "/v1/segment", content=gzip.compress(photo_bytes),
                   headers={**cli_server.headers(), "Content-Type": "image/jpeg",
                            "Content-Encoding": "gzip"}, timeout=60)
    assert r.status_code == 415 and "Content-Encoding 'gzip' is not supported" in r.json()[
        "detail"], r.text
    r = httpx.post(cli_server.url + "/v1/segment", content=photo_bytes, timeout=300,
                   headers={**cli_server.headers(), "Content-Type": "image/jpeg",
                            "Content-Encoding": "identity"})
    assert r.status_code == 200, r.text


def test_no_cors_by_default(cli_server):
    r = httpx.options(cli_server.url + "/v1/segment", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers


def test_public_host_needs_a_key(r50_checkpoint, capsys, monkeypatch):
    from pixellib.cli.main import main

    monkeypatch.delenv("PIXELLIB_API_KEY", raising=False)
    assert main(["serve", "--model", str(r50_checkpoint), "--host", "0.0.0.0"]) == 1
    assert "--api-key" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["cl\u00e9", "two words", "tab\there"])
def test_api_key_must_be_printable_ascii(key):
    from pixellib.serve.settings import ServeOptionError, ServeSettings

    with pytest.raises(ServeOptionError, match="printable ASCII"):
        ServeSettings(api_key=key)
    assert ServeSettings(api_key="Abc-123_~!").api_key == "Abc-123_~!"


def test_threads_option(r50_checkpoint):
    from pixellib.cli.main import build_parser
    from pixellib.serve.settings import ServeOptionError, ServeSettings

    args = build_parser().parse_args(["serve", "--model", str(r50_checkpoint), "--threads", "1"])
    assert args.threads == 1
    assert ServeSettings(torch_threads=1, replicas=2).threads_per_replica == 1
    with pytest.raises(ServeOptionError, match="--threads"):
        ServeSettings(torch_threads=0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--threads", "0"])


def test_common_request_mistakes_say_what_to_do(cli_server, photo_bytes):
    """An image sent as a text field under another name was answered "form field 'photo' is
    over 4096 bytes" (as if it were too large); color-bg=#00ff00 in a URL (the '#' starts
    the fragment, never sent) "has an empty argument"."""
    h = cli_server.headers()
    body = _error(httpx.post(cli_server.url + "/v1/segment", headers=h,
                             files={"photo": (None, "x" * 5000)}), 413)
    assert "form field 'photo'" in body["detail"] and "file field named 'image'" in body["detail"]
    body = _error(httpx.post(cli_server.url + "/v1/render?effect=color-bg=#00ff00", headers=h,
                             files={"image": ("p.jpg", photo_bytes)}), 422)
    assert "%23" in body["detail"] and "color-bg=00ff00" in body["detail"], body
    r = httpx.post(cli_server.url + "/v1/render?effect=color-bg%3D%2300ff00", headers=h,
                   files={"image": ("p.jpg", photo_bytes)}, timeout=300)
    assert r.status_code == 200, r.text


def test_infinite_timeouts_are_null_in_the_limits():
    """``serve --timeout inf``: /v1/info answered 500 (inf is not JSON), and the web page,
    which reads it first, broke."""
    import json

    from pixellib.serve.settings import ServeSettings

    limits = ServeSettings(timeout=float("inf"), upload_timeout=float("inf"),
                           head_timeout=5.0).limits()
    assert json.loads(json.dumps(limits, allow_nan=False))["timeout_s"] is None
    assert limits["upload_timeout_s"] is None and limits["head_timeout_s"] == 5.0
