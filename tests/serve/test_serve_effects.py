"""``POST /v1/render`` with the effects of :mod:`pixellib.effects`: the server's image equals
``apply_effect`` on the in-process detections; a background comes only as an upload."""
from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
from serve_support import PHOTO, httpx

pytestmark = pytest.mark.slow
BACKGROUND = PHOTO.parent / "small_gray.png"


def _render(server, photo_bytes, data: dict, files: dict | None = None):
    return httpx.post(server.url + "/v1/render", headers=server.headers(), timeout=300,
                      files={"image": ("p.jpg", photo_bytes), **(files or {})}, data=data)


def _decode(content: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)


def test_render_effects_match_apply_effect(cli_server, photo_bytes, photo_bgr, reference):
    from pixellib.media.images import read_image

    effects = importlib.import_module("pixellib.effects")
    apply_effect, parse_effect = effects.apply_effect, effects.parse_effect

    r = _render(cli_server, photo_bytes, {"effect": "blur-bg", "format": "png"})
    assert r.status_code == 200, r.text
    expected = apply_effect(photo_bgr, reference, parse_effect("blur-bg"))
    assert np.array_equal(_decode(r.content), expected)

    r = _render(cli_server, photo_bytes, {"effect": "remove-bg"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    got = _decode(r.content)
    assert got.shape == (*photo_bgr.shape[:2], 4)
    assert np.array_equal(got, apply_effect(photo_bgr, reference, parse_effect("remove-bg")))
    # boxes=true on a transparent result: drawn on the colours and made opaque where drawn
    # (over the transparent background they did not show), the rest's alpha kept.
    boxed = _decode(_render(cli_server, photo_bytes, {"effect": "remove-bg",
                                                      "boxes": "true"}).content)
    assert boxed.shape == got.shape
    drawn = (boxed[..., :3] != got[..., :3]).any(axis=2)
    assert drawn.any() and (boxed[..., 3][drawn] == 255).all()
    assert (got[..., 3][drawn] == 0).any()  # some of them over the removed background
    assert (boxed[..., 3] >= got[..., 3]).all()

    background = BACKGROUND.read_bytes()
    r = _render(cli_server, photo_bytes, {"effect": "replace-bg", "format": "png"},
                {"background": ("bg.png", background)})
    assert r.status_code == 200, r.text
    expected = apply_effect(photo_bgr, reference, parse_effect("replace-bg=x"),
                            background=read_image(BACKGROUND))
    assert np.array_equal(_decode(r.content), expected)


def _half_clear_png() -> bytes:
    picture = np.zeros((20, 20, 4), np.uint8)
    picture[:, :10] = (255, 0, 0, 255)
    picture[:, 10:] = (255, 0, 255, 0)  # magenta under alpha 0
    return cv2.imencode(".png", picture)[1].tobytes()


def test_render_effect_errors(cli_server, photo_bytes):
    cases = [
        ({"effect": "sparkle-bg"}, None, "blur-bg"),  # lists the valid effects
        ({"effect": "blur-bg=4"}, None, "odd"),
        ({"effect": f"replace-bg={BACKGROUND}"}, None, "not as a path"),
        ({"effect": "replace-bg"}, None, "background"),
        ({"effect": "remove-bg", "format": "jpeg"}, None, "png"),
        ({"effect": "gray-bg", "feather": "1000"}, None, "feather"),
        ({"feather": "2"}, None, "give an effect too"),  # would be silently ignored
        ({}, {"background": ("bg.png", b"x")}, "replace-bg"),
        # A half-transparent background showed its hidden colours (the CLI refuses it).
        ({"effect": "replace-bg"}, {"background": ("clear.png", _half_clear_png())},
         "'clear.png' has transparent pixels"),
    ]
    for data, files, word in cases:
        r = _render(cli_server, photo_bytes, data, files)
        assert r.status_code == 422, (data, r.text)
        assert r.json()["error"] == "invalid option" and word in r.json()["detail"], r.text
