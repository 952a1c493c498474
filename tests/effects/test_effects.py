"""Effects on hand-made detections, checked pixel by pixel against their definitions."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pixellib.classes import class_id
from pixellib.effects import (
    BLUR_LEVELS,
    EFFECTS,
    Effect,
    apply_effect,
    fit_background,
    load_background,
    parse_effect,
    pixelate,
)
from pixellib.errors import EffectError, ImageReadError, InputNotFoundError, PixellibError
from pixellib.media.images import read_image
from pixellib.structures import Detections

H, W = 60, 80


def make_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def make_detections() -> Detections:
    """A person (rectangle), a car (disc) and a low-score dog (small square)."""
    masks = np.zeros((3, H, W), bool)
    masks[0, 10:40, 8:30] = True
    yy, xx = np.mgrid[:H, :W]
    masks[1] = (yy - 30) ** 2 + (xx - 58) ** 2 <= 12 ** 2
    masks[2, 45:55, 35:45] = True
    return Detections(
        boxes=np.array([[8, 10, 30, 40], [46, 18, 71, 43], [35, 45, 45, 55]], np.float32),
        scores=np.array([0.9, 0.8, 0.3], np.float32),
        class_ids=np.array([class_id("person"), class_id("car"), class_id("dog")], np.int64),
        masks=masks,
        image_size=(H, W),
    )


@pytest.fixture
def scene():
    image, det = make_image(), make_detections()
    return image, det, image.copy(), det.masks.copy()


def _unchanged(image, det, image0, masks0):
    assert np.array_equal(image, image0) and np.array_equal(det.masks, masks0)


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text, expected", [
    ("blur-bg", Effect("blur-bg", kernel=39)),
    ("blur-bg=low", Effect("blur-bg", kernel=21)),
    ("blur-bg=moderate", Effect("blur-bg", kernel=39)),
    ("BLUR-BG=extreme", Effect("blur-bg", kernel=81)),
    ("blur-objects=31", Effect("blur-objects", kernel=31)),
    ("pixelate-objects=16", Effect("pixelate-objects", block=16)),
    ("pixelate-bg", Effect("pixelate-bg", block=16)),
    ("color-bg=#00ff00", Effect("color-bg", color=(0, 255, 0))),
    ("color-bg=#f80", Effect("color-bg", color=(255, 136, 0))),
    ("color-bg=0,0,255", Effect("color-bg", color=(0, 0, 255))),
    ("color-bg=green", Effect("color-bg", color=(0, 255, 0))),
    ("color-bg", Effect("color-bg", color=(0, 0, 0))),
    ("grey-bg", Effect("gray-bg")),
    ("replace-bg=beach.jpg", Effect("replace-bg", background="beach.jpg")),
    ("remove-bg", Effect("remove-bg")),
    ("replace-bg", Effect("replace-bg")),  # the picture then goes to apply_effect
])
def test_parse_effect(text, expected):
    assert parse_effect(text) == expected
    assert parse_effect(str(expected)) == expected  # the text form round-trips


def test_an_effect_made_by_hand_is_checked_and_its_unset_argument_defaulted(scene):
    """``Effect`` is public, and every field but the name defaults to None: apply_effect(...,
    Effect("color-bg")) was a TypeError ("cannot unpack non-iterable NoneType"), blur-bg
    "has no filter", and an unknown name got that message too."""
    image, det, *_ = scene
    for name in ("color-bg", "blur-bg", "blur-objects", "pixelate-bg", "pixelate-objects",
                 "gray-bg", "remove-bg", "grey-bg"):
        assert parse_effect(Effect(name)) == parse_effect(name)
        assert np.array_equal(apply_effect(image, det, Effect(name)),
                              apply_effect(image, det, name)), name
    for color in ((0.0, 255.0, 0.0), np.array([0, 255, 0], np.float32)):  # numbers, not text
        assert parse_effect(Effect("color-bg", color=color)) == parse_effect("color-bg=green")
    made = Effect("replace-bg", background=" my beach.jpg")  # a path is kept as given
    assert parse_effect(made) is made
    for bad, says in ((Effect("sharpen-bg"), "unknown effect 'sharpen-bg'"),
                      (Effect("blur-bg", kernel=30), "blur-bg=30"),
                      (Effect("color-bg", color=(300, 0, 0)), "color-bg")):
        with pytest.raises(EffectError, match=says):
            apply_effect(image, det, bad)


@pytest.mark.parametrize("text", [
    "sharpen-bg", "blur-bg=30", "blur-bg=huge", "blur-bg=", "pixelate-bg=0", "gray-bg=3",
    "color-bg=#12345", "color-bg=300,0,0", "remove-bg=yes",
])
def test_parse_effect_rejects_bad_text_naming_it(text):
    with pytest.raises(EffectError) as info:
        parse_effect(text)
    assert isinstance(info.value, (PixellibError, ValueError))
    assert repr(text) in str(info.value) or text.split("=")[0] in str(info.value)
    if text == "sharpen-bg":
        assert all(name in str(info.value) for name in EFFECTS)


# ----------------------------------------------------------------------------- background


def test_colour_sequences_are_three_whole_numbers():
    from pixellib.effects.spec import parse_color

    assert parse_color((0, 128, 255)) == (0, 128, 255)
    assert parse_color(np.array([10.0, 20.0, 30.0])) == (10, 20, 30)  # whole floats are fine
    assert parse_color([np.uint8(1), 2, 3]) == (1, 2, 3)
    with pytest.raises(EffectError, match=r"multiply them by 255"):
        parse_color((0.2, 0.5, 0.9))  # was read as (0, 0, 0): black, silently
    for bad in [(254.9, 0.7, 10.5), (True, False, True), {1, 2, 3}, (1, 2), (1, 2, 256), 7]:
        with pytest.raises(EffectError, match="three whole numbers"):
            parse_color(bad)
    with pytest.raises(EffectError, match=r"got \(0, 0\) \(2 numbers\)$"):  # not "0-1 values?"
        parse_color((0, 0))


def test_background_effects_change_only_the_background(scene):
    image, det, image0, masks0 = scene
    obj = det.masks[:2].any(0)  # person + car
    expected_bg = {
        "blur-bg=low": cv2.blur(image, (21, 21)),
        "blur-bg=7": cv2.blur(image, (7, 7)),
        "pixelate-bg=8": pixelate(image, 8),
        "gray-bg": np.repeat(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[:, :, None], 3, 2),
        "color-bg=#0080ff": np.broadcast_to(np.array([255, 128, 0], np.uint8), image.shape),
    }
    for text, bg in expected_bg.items():
        out = apply_effect(image, det, text, classes=["person", "car"])
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.array_equal(out[obj], image[obj]), text
        assert np.array_equal(out[~obj], bg[~obj]), text
    _unchanged(image, det, image0, masks0)


def test_blur_levels_are_pixellibs_box_filters():
    assert BLUR_LEVELS == {"low": 21, "moderate": 39, "extreme": 81}


def test_pixelate_fills_aligned_blocks_with_their_rounded_mean():
    image = make_image(3)
    out = pixelate(image, 8)
    for r0, c0 in [(0, 0), (8, 16), (56, 72)]:  # (56, 72): a partial 4x8 block at the edge
        block = image[r0:r0 + 8, c0:c0 + 8].astype(np.float64)
        mean = np.floor(block.mean(axis=(0, 1)) + 0.5)
        assert np.array_equal(out[r0:r0 + 8, c0:c0 + 8], np.broadcast_to(mean, block.shape))


def test_selection_by_class_and_score(scene):
    image, det, *_ = scene
    gray = apply_effect(image, det, "gray-bg", min_score=0.5)  # drops the dog
    dog = det.masks[2]
    assert not np.array_equal(gray[dog], image[dog])
    assert np.array_equal(gray[det.masks[0]], image[det.masks[0]])
    only_car = apply_effect(image, det, "gray-bg", classes=[class_id("car")])
    assert np.array_equal(only_car[det.masks[1]], image[det.masks[1]])
    assert not np.array_equal(only_car[det.masks[0]], image[det.masks[0]])
    with pytest.raises(EffectError, match="unknown class name"):
        apply_effect(image, det, "gray-bg", classes=["unicorn"])
    # A score equal to min_score is dropped, as a score equal to the model's confidence is
    # (it was kept: an effect with min_score=s and a model run with confidence=s differed).
    at = float(det.scores[1])  # the car's score: the person alone is above it
    assert np.array_equal(apply_effect(image, det, "gray-bg", min_score=at),
                          apply_effect(image, det[:1], "gray-bg"))


def test_no_selected_object_makes_everything_background(scene):
    image, det, *_ = scene
    out = apply_effect(image, det, "color-bg=#ffffff", classes=["bus"])
    assert (out == 255).all()


def test_remove_bg_is_bgra_with_alpha_equal_to_the_mask(scene):
    image, det, image0, masks0 = scene
    out = apply_effect(image, det, "remove-bg", classes=["person"])
    mask = det.masks[0]
    assert out.shape == (H, W, 4) and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 3], mask * np.uint8(255))
    assert np.array_equal(out[mask][:, :3], image[mask])
    assert (out[~mask] == 0).all()  # nothing of the background stays in the file
    _unchanged(image, det, image0, masks0)


def test_replace_bg_covers_without_stretching(scene, tmp_path):
    image, det, *_ = scene
    # A 2:1 picture with a distinct left / middle / right third: covering the 4:3 image
    # crops equal parts off both sides and keeps the aspect ratio.
    picture = np.zeros((30, 60, 3), np.uint8)
    picture[:, :20], picture[:, 20:40], picture[:, 40:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    path = tmp_path / "backdrop.png"
    cv2.imwrite(str(path), picture)
    fitted = fit_background(picture, (H, W))
    assert fitted.shape == (H, W, 3)
    assert (fitted[:, W // 2] == (0, 255, 0)).all()  # middle third is centred
    green_cols = np.flatnonzero(fitted[0, :, 1] >= 128)
    assert len(green_cols) == 40  # 20 px scaled by 2 (stretching would give 80 / 3)
    for source in (str(path), picture):
        out = apply_effect(image, det, "replace-bg=ignored.jpg" if source is picture else
                           f"replace-bg={path}", background=None if source is not picture
                           else picture)
        obj = det.masks.any(0)
        assert np.array_equal(out[obj], image[obj])
        assert np.array_equal(out[~obj], fitted[~obj])


def test_bad_background_pictures_are_named(scene, tmp_path):
    image, det, *_ = scene
    with pytest.raises(EffectError, match="needs a background picture"):
        apply_effect(image, det, "replace-bg")
    missing = tmp_path / "nope.jpg"
    with pytest.raises(InputNotFoundError, match="nope.jpg"):
        apply_effect(image, det, f"replace-bg={missing}")
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    with pytest.raises(ImageReadError, match="notes.jpg"):
        apply_effect(image, det, f"replace-bg={text}")
    # Not a picture at all: said so (it read "expected 8-bit pixels, got dtype object").
    from pixellib.effects import load_background

    for wrong in (None, b"beach.png", 123, [[1, 2], [3, 4]]):
        with pytest.raises(TypeError, match="must be a path or a numpy array, got "
                           + type(wrong).__name__):
            load_background(wrong)
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 3] = 128
    cv2.imwrite(str(tmp_path / "glass.png"), rgba)
    with pytest.raises(ImageReadError, match="glass.png.*transparent"):
        apply_effect(image, det, f"replace-bg={tmp_path / 'glass.png'}")
    # Decided: grey and opaque BGRA pictures are converted, not refused.
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((10, 10), 77, np.uint8))
    out = apply_effect(image, det, f"replace-bg={tmp_path / 'grey.png'}")
    assert (out[~det.masks.any(0)] == 77).all()
    rgba[..., 3] = 255
    rgba[..., 2] = 200
    assert np.array_equal(load_background(rgba), rgba[..., :3])
    cut = tmp_path / "cut.png"
    cut.write_bytes(cv2.imencode(".png", image)[1].tobytes()[:400])
    with pytest.raises(ImageReadError, match="cut.png.*truncated"):
        apply_effect(image, det, f"replace-bg={cut}")


def test_background_pictures_are_read_like_photos(tmp_path):
    """EXIF orientation applied (a phone's portrait stays upright) and the pixel limit read
    from the header, as for the photo itself."""
    from PIL import Image

    left_right = np.zeros((100, 400, 3), np.uint8)
    left_right[:, 200:] = 255
    upright = Image.fromarray(left_right)
    exif = upright.getexif()
    exif[0x0112] = 6  # stored sideways: "rotate 90 degrees clockwise to view"
    upright.save(tmp_path / "phone.jpg", exif=exif.tobytes())
    loaded = load_background(tmp_path / "phone.jpg")
    assert loaded.shape == (400, 100, 3)
    assert np.array_equal(loaded, read_image(tmp_path / "phone.jpg"))
    Image.new("RGB", (3000, 2000)).save(tmp_path / "large.png")
    with pytest.raises(ImageReadError, match="3000x2000"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PIXELLIB_MAX_PIXELS", "1000000")
            load_background(tmp_path / "large.png")


# ----------------------------------------------------------------------------- objects


@pytest.mark.parametrize("text", ["blur-objects=11", "pixelate-objects=8", "blur-objects=81"])
def test_object_effects_change_only_the_objects(scene, text):
    image, det, image0, masks0 = scene
    obj = det.masks[0] | det.masks[1]
    effect = parse_effect(text)
    whole = cv2.blur(image, (effect.kernel,) * 2) if effect.kernel else pixelate(image, 8)
    out = apply_effect(image, det, text, classes=("person", "car"))
    assert np.array_equal(out[~obj], image[~obj])
    assert np.array_equal(out[obj], whole[obj])  # same as filtering the whole image
    _unchanged(image, det, image0, masks0)


# ----------------------------------------------------------------------------- feathering


@pytest.mark.parametrize("text", ["blur-bg=low", "remove-bg", "pixelate-objects=4"])
def test_feathered_edges_stay_within_the_band(scene, text):
    image, det, *_ = scene
    band = 3
    hard = apply_effect(image, det, text, classes=["person"])
    soft = apply_effect(image, det, text, classes=["person"], feather=band)
    mask = det.masks[0].astype(np.uint8)
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform(1 - mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    far = np.where(mask > 0, inside - 0.5, outside - 0.5) >= band
    assert np.array_equal(soft[far], hard[far])  # outside the band: exactly the hard result
    near = ~far
    assert not np.array_equal(soft[near], hard[near])  # the band is really blended
    if text != "remove-bg":  # in the band: between the original and the filtered pixel
        full = cv2.blur(image, (21, 21)) if text.startswith("blur") else pixelate(image, 4)
        lo, hi = np.minimum(image, full), np.maximum(image, full)
        assert ((soft[near] >= lo[near]) & (soft[near] <= hi[near])).all()
    else:
        alpha = soft[:, :, 3]
        assert (alpha[near] > 0).any() and (alpha[near] < 255).any()


def test_a_feathered_cut_out_keeps_nothing_of_the_old_background():
    """A blue square on a green screen: the ramp was centred on the border, so pixels
    outside the mask kept up to half their alpha and all their green (a halo over white,
    green showing through a new background)."""
    image = np.zeros((40, 40, 3), np.uint8)
    image[:] = (0, 255, 0)
    image[10:30, 10:30] = (255, 0, 0)
    masks = np.zeros((1, 40, 40), bool)
    masks[0, 10:30, 10:30] = True
    det = Detections(np.array([[10, 10, 30, 30]], np.float32), np.ones(1, np.float32),
                     np.zeros(1, np.int64), masks, (40, 40))
    cut = apply_effect(image, det, "remove-bg", feather=4)
    outside = ~masks[0]
    assert (cut[outside] == 0).all()  # alpha 0 and no colour kept
    alpha = cut[:, :, 3]
    assert alpha[10, 20] < 255 and alpha[20, 20] == 255  # the ramp lies inside
    assert (cut[masks[0]][:, :3] == (255, 0, 0)).all()
    red = np.full((40, 40, 3), (0, 0, 255), np.uint8)
    replaced = apply_effect(image, det, "replace-bg", feather=4, background=red)
    assert (replaced[outside] == (0, 0, 255)).all()  # no green anywhere
    assert not (replaced[..., 1] > 0).any()


# ----------------------------------------------------------------------------- errors


def test_apply_effect_checks_its_inputs(scene):
    image, det, *_ = scene
    with pytest.raises(EffectError, match="detections are for"):
        apply_effect(image[:30], det, "gray-bg")
    with pytest.raises(EffectError, match="uint8 BGR"):
        apply_effect(image.astype(np.float32), det, "gray-bg")
    with pytest.raises(EffectError, match="feather"):
        apply_effect(image, det, "gray-bg", feather=-1)


def test_a_long_strip_background_is_cut_before_it_is_scaled():
    """A 1 x 5000 strip behind a 321 x 237 photo was scaled whole to 1,185,000 x 237 px
    (~0.9 GB) before the crop; now only the part that shows is scaled."""
    import tracemalloc

    from pixellib.effects.background import fit_background

    strip = np.zeros((1, 5000, 3), np.uint8)
    strip[0, :, 0] = np.arange(5000) % 256  # blue counts along the strip
    tracemalloc.start()
    try:
        fitted = fit_background(strip, (237, 321))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fitted.shape == (237, 321, 3)
    assert peak < 10 * fitted.nbytes
    # the centre of the strip, stretched: every row alike, columns from around x = 2500
    assert (fitted == fitted[:1]).all() and fitted[0, 0, 0] in strip[0, 2499:2501, 0]
    tall = fit_background(np.zeros((20000, 2, 3), np.uint8), (237, 321))
    assert tall.shape == (237, 321, 3)


def test_an_empty_grey_background_is_a_clear_error():
    from pixellib.effects.background import load_background
    from pixellib.errors import ImageReadError

    for empty in (np.zeros((0, 0), np.uint8), np.zeros((0, 5, 1), np.uint8)):
        with pytest.raises(ImageReadError, match="the picture is empty"):
            load_background(empty)
