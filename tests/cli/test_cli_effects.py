"""``pixellib segment --effect / --cutouts / --masks / --no-overlay`` end to end."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from pixellib.cli import main

PHOTO = Path(__file__).parents[1] / "data" / "images" / "small.jpg"


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_shows_effect_examples(capsys):
    code, out, _ = _cli(capsys, "segment", "--help")
    assert code == 0
    assert "examples:" in out
    for text in ("--effect blur-bg", "replace-bg=beach.jpg", "color-bg=#00ff00", "remove-bg",
                 "pixelate-objects", "--cutouts", "--masks", "--no-overlay"):
        assert text in out


@pytest.mark.parametrize("effect", ["sparkle-bg", "blur-bg=30", "color-bg=#zzz"])
def test_bad_effect_is_a_usage_error(capsys, effect):
    code, _, err = _cli(capsys, "segment", "a.jpg", "--effect", effect)
    assert code == 2 and "usage:" in err and effect in err


def test_bad_background_picture_stops_the_run_naming_it(capsys, tmp_path, r50_checkpoint):
    shutil.copyfile(PHOTO, tmp_path / "photo.jpg")
    (tmp_path / "beach.jpg").write_bytes(b"not a jpeg")
    for picture, needle in [(tmp_path / "beach.jpg", "not an image"),
                            (tmp_path / "missing.jpg", "not found")]:
        code, _, err = _cli(capsys, "segment", tmp_path / "photo.jpg", "--model", r50_checkpoint,
                            "--effect", f"replace-bg={picture}")
        assert code == 1, err
        assert picture.name in err and needle in err and "Traceback" not in err
    code, _, err = _cli(capsys, "segment", tmp_path / "photo.jpg", "--effect", "replace-bg")
    assert code == 1 and "replace-bg=PATH" in err
    assert not (tmp_path / "photo_segmented.jpg").exists()


@pytest.mark.slow
def test_remove_bg_with_cutouts_and_masks(capsys, tmp_path, r50_checkpoint):
    """One run writes a transparent PNG, cut-outs and masks that agree with each other."""
    image = cv2.resize(cv2.imread(str(PHOTO)), (200, 150), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "photo.jpg"), image)
    code, out, err = _cli(capsys, "segment", tmp_path / "photo.jpg", "--model", r50_checkpoint,
                          "--speed", "rapid", "--confidence", "0.3", "--effect", "remove-bg",
                          "--cutouts", tmp_path / "cut", "--masks", tmp_path / "masks")
    assert code == 0, err
    assert not (tmp_path / "photo_segmented.jpg").exists()  # JPEG has no alpha: PNG instead
    result = cv2.imread(str(tmp_path / "photo_segmented.png"), cv2.IMREAD_UNCHANGED)
    assert result.shape == (150, 200, 4)
    labels = cv2.imread(str(tmp_path / "masks" / "photo_segmented_labels.png"),
                        cv2.IMREAD_UNCHANGED)
    masks = sorted((tmp_path / "masks").glob("photo_segmented_mask_*.png"),
                   key=lambda p: int(p.name.split("_")[3]))
    n = len(masks)
    assert n > 0, "the synthetic model should find something in the photo"
    assert f"{n} objects" in out
    union = np.zeros((150, 200), bool)
    for k, path in enumerate(masks, start=1):
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) == 255
        union |= mask
        assert (labels[mask] <= k).all() and (labels[mask] > 0).all()
        cut = next((tmp_path / "cut").glob(f"photo_segmented_object_{k}_*.png"), None)
        if mask.any():
            rgba = cv2.imread(str(cut), cv2.IMREAD_UNCHANGED)
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            assert np.array_equal(rgba[:, :, 3] == 255, crop)
    assert np.array_equal(labels > 0, union)
    assert np.array_equal(result[:, :, 3] == 255, union)  # alpha = the objects
    assert (result[:, :, 3][~union] == 0).all()
    # Inside the objects, the picture is the input decoded as the CLI decoded it.
    decoded = cv2.imread(str(tmp_path / "photo.jpg"))
    assert np.array_equal(result[union][:, :3], decoded[union])


@pytest.mark.slow
def test_effect_on_a_folder_with_classes(capsys, tmp_path, r50_checkpoint):
    """color-bg with --classes: pixels outside the chosen objects get the colour."""
    folder = tmp_path / "in"
    folder.mkdir()
    image = cv2.resize(cv2.imread(str(PHOTO)), (200, 150), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(folder / "a.png"), image)
    code, out, err = _cli(capsys, "segment", folder, "-o", tmp_path / "out", "--model",
                          r50_checkpoint, "--speed", "rapid", "--confidence", "0.3",
                          "--effect", "color-bg=#00ff00", "--masks", tmp_path / "masks",
                          "--classes", "person,umbrella")
    assert code == 0, err
    result = cv2.imread(str(tmp_path / "out" / "a.png"))
    labels = cv2.imread(str(tmp_path / "masks" / "a_labels.png"), cv2.IMREAD_UNCHANGED)
    objects = labels > 0
    assert (result[~objects] == (0, 255, 0)).all()
    assert np.array_equal(result[objects], image[objects])


def test_a_background_effect_with_nothing_selected_says_so(capsys, tmp_path, r50_checkpoint):
    """remove-bg on a photo without the selected class wrote a fully transparent file with
    exit 0 and nothing said but "0 objects"."""
    image = cv2.resize(cv2.imread(str(PHOTO)), (200, 150), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "photo.jpg"), image)
    common = ("--model", r50_checkpoint, "--speed", "rapid", "--confidence", "0.3")
    code, out, err = _cli(capsys, "segment", tmp_path / "photo.jpg", *common,
                          "--effect", "remove-bg", "--classes", "toothbrush")
    result = cv2.imread(str(tmp_path / "photo_segmented.png"), cv2.IMREAD_UNCHANGED)
    assert code == 0 and (result[:, :, 3] == 0).all(), err
    assert "no object found (or selected) in 1 image, so --effect remove-bg left only " \
           "background there" in err and "photo_segmented.png" in err
    code, out, err = _cli(capsys, "segment", tmp_path / "photo.jpg", *common,
                          "--effect", "remove-bg")  # objects found: nothing to say
    assert code == 0 and "no object found" not in err
    code, out, err = _cli(capsys, "segment", tmp_path / "photo.jpg", *common, "--feather", "3")
    assert code == 0 and "--feather softens the border of an --effect" in err


def test_remove_bg_on_an_image_names_an_image_format(capsys, tmp_path):
    image = tmp_path / "photo.jpg"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    code, _, err = _cli(capsys, "segment", image, "--model", "nowhere.pkl", "-o",
                        tmp_path / "rb.jpg", "--effect", "remove-bg")
    assert code == 1
    assert "which .jpg cannot hold: name the output rb.png" in err and "video" not in err


def test_remove_bg_writes_every_format_that_holds_alpha(capsys, tmp_path, r50_checkpoint):
    """.bmp, .gif and .jp2 hold transparency (the library writes them so), yet the CLI
    refused them saying they cannot."""
    image = tmp_path / "photo.jpg"
    cv2.imwrite(str(image), cv2.imread(str(PHOTO)))
    png = tmp_path / "cut.png"
    code, _, err = _cli(capsys, "segment", image, "--model", r50_checkpoint, "--speed", "rapid",
                        "--confidence", "0.05", "-o", png, "--effect", "remove-bg")
    assert code == 0, err
    expected = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert expected.shape[2] == 4 and 0 < (expected[..., 3] == 0).sum() < expected[..., 3].size
    for ext in (".bmp", ".gif", ".jp2"):
        out = tmp_path / f"cut{ext}"
        code, _, err = _cli(capsys, "segment", image, "--model", r50_checkpoint, "--speed",
                            "rapid", "--confidence", "0.05", "-o", out, "--effect", "remove-bg")
        assert code == 0, (ext, err)
        got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert got.shape == expected.shape, ext
        if ext == ".jp2":  # lossy, alpha included: nearly the same
            assert np.mean((got[..., 3] > 127) == (expected[..., 3] > 127)) > 0.95
        else:
            assert np.array_equal(got[..., 3] > 0, expected[..., 3] > 0), ext


def test_replace_bg_picture_is_never_overwritten(capsys, tmp_path):
    image = tmp_path / "photo.jpg"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    picture = tmp_path / "beach.png"
    cv2.imwrite(str(picture), np.full((8, 8, 3), 200, np.uint8))
    before = picture.read_bytes()
    code, _, err = _cli(capsys, "segment", image, "--model", "nowhere.pkl", "-o", picture,
                        "--effect", f"replace-bg={picture}")
    assert code == 1
    assert "is the replace-bg picture" in err and "nowhere" not in err
    # a folder run whose outputs include it (photos/beach.png -> beach.png in the folder)
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "beach.png"), np.zeros((8, 8, 3), np.uint8))
    code, _, err = _cli(capsys, "segment", photos, "--model", "nowhere.pkl", "-o", tmp_path,
                        "--effect", f"replace-bg={picture}")
    assert code == 1 and "is the replace-bg picture" in err
    assert picture.read_bytes() == before


def test_remove_bg_on_video_needs_webm(capsys, tmp_path, r50_checkpoint):
    from pixellib.media.video import VideoWriter

    with VideoWriter(tmp_path / "clip.mp4", 10, (64, 48)) as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8))
    code, _, err = _cli(capsys, "segment", tmp_path / "clip.mp4", "--model", "nowhere.pkl",
                        "-o", tmp_path / "cut.mp4", "--effect", "remove-bg")
    assert code == 1  # refused before the model (here a missing file) is even looked at
    assert "remove-bg on video needs .webm output" in err and "cut.mp4" in err
    assert "nowhere" not in err
    assert not (tmp_path / "cut.mp4").exists()
    # Named by the command itself, the output gets the extension that holds transparency.
    code, _, err = _cli(capsys, "segment", tmp_path / "clip.mp4", "--model", r50_checkpoint,
                        "--effect", "remove-bg")
    assert code == 0, err
    assert (tmp_path / "clip_segmented.webm").is_file()
    assert not (tmp_path / "clip_segmented.mp4").exists()
    # in any letter case, as every other extension
    code, _, err = _cli(capsys, "segment", tmp_path / "clip.mp4", "--model", r50_checkpoint,
                        "-o", tmp_path / "CUT.WEBM", "--effect", "remove-bg")
    assert code == 0, err
    assert (tmp_path / "CUT.WEBM").is_file()


def test_messages_are_one_line_each_clear_of_the_progress_bar(capfd, tmp_path,
                                                              r50_checkpoint):
    """A library warning was glued onto the progress bar's line, and OpenCV printed its
    own "[ WARN:0@...] global grfmt_tiff.cpp" lines next to the one-line error."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "media"))
    from test_video_pyav import make_clip

    clip = make_clip(tmp_path / "voice.mp4", n=3, audio="aac")
    code = main(["segment", str(clip), "--model", str(r50_checkpoint), "--speed", "rapid",
                 "-o", str(tmp_path / "voice.avi")])
    err = capfd.readouterr().err
    assert code == 0, err
    # what the terminal shows of each line: the text after its last carriage return
    shown = [line.rsplit("\r", 1)[-1] for line in err.split("\n")]
    said = [line for line in shown if "re-encoding it to MP3" in line]
    assert said and all(line.startswith("pixellib: warning: ") for line in said), err

    image = tmp_path / "photo.jpg"
    cv2.imwrite(str(image), cv2.imread(str(PHOTO)))
    floats = tmp_path / "floats.tiff"
    cv2.imwrite(str(floats), np.random.default_rng(0).random((40, 60, 3), np.float32))
    code = main(["segment", str(image), "--model", str(r50_checkpoint), "-o",
                 str(tmp_path / "out.jpg"), "--effect", f"replace-bg={floats}"])
    err = capfd.readouterr().err
    assert code == 1
    assert err.startswith("pixellib: error: ") and "floats.tiff" in err, err
    assert err.count("\n") == 1 and "WARN" not in err, err
