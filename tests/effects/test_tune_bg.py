"""``pixellib.tune_bg.alter_bg``: every Python block of PixelLib's two background tutorials
runs with only the model file name changed.

``tests/data/change_image_bg.md`` and ``change_video_bg.md`` are copies of PixelLib's
tutorials. Each file's blocks share one namespace, in order (later excerpts use
``change_bg`` from earlier blocks), in a folder holding the pictures and the small clip they
name. The one change to the code: ``"xception_pascalvoc.pb"`` (a TensorFlow model) becomes
``"pointrend_resnet50.pkl"`` (a synthetic PointRend checkpoint). What the test supplies
instead of hardware: ``cv2.VideoCapture(0)`` opens the clip (there is no camera),
``cv2.imshow`` shows nothing and ``cv2.waitKey`` answers ``q`` (there is no display or
keyboard), and an excerpt that reuses a camera the previous block released gets a fresh one.
Indented excerpts are dedented. The model runs at ``detection_speed="rapid"`` and
``confidence=0.5`` (class-wide defaults) to keep the test short.
"""
from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from doc_blocks import python_blocks
from pixellib.classes import class_id
from pixellib.errors import EffectError, ModelFileError, PixellibError
from pixellib.tune_bg import alter_bg, detect_class_ids

DATA = Path(__file__).parents[1] / "data"
DOCS = ("change_image_bg.md", "change_video_bg.md")
OLD_MODEL, NEW_MODEL = '"xception_pascalvoc.pb"', '"pointrend_resnet50.pkl"'
BLOCKS = [(doc, i, line, code) for doc in DOCS
          for i, (line, code) in enumerate(python_blocks((DATA / doc).read_text("utf-8")))]
PICTURES = {"sample.jpg": "small.jpg", "sample2.jpg": "wide.jpg", "background.jpg": "street.jpg",
            "flowers.jpg": "street.jpg", "bg.jpg": "small.jpg"}
CLIP_SIZE = (96, 72)  # (width, height)


def test_the_tutorials_change_only_the_model_line():
    assert len(BLOCKS) == 41
    for doc, _, line, code in BLOCKS:
        if OLD_MODEL in code:  # the only line the test rewrites is the model line
            changed = [t for t in code.splitlines() if OLD_MODEL in t]
            assert all("load_pascalvoc_model(" in t for t in changed), (doc, line)


def test_detect_maps_pascal_voc_names_to_coco():
    assert detect_class_ids("aeroplane") == (class_id("airplane"),)
    assert detect_class_ids("sofa") == (class_id("couch"),)
    assert detect_class_ids("motorbike") == (class_id("motorcycle"),)
    assert detect_class_ids("diningtable") == (class_id("dining table"),)
    assert detect_class_ids("tv") == detect_class_ids("monitor") == (class_id("tv"),)
    assert detect_class_ids("laptop") == (class_id("laptop"),)  # any COCO class also works
    assert len(detect_class_ids(None)) == 20
    with pytest.raises(EffectError, match="aeroplane"):
        detect_class_ids("unicorn")
    assert detect_class_ids(["person", "car"]) == (class_id("person"), class_id("car"))
    # Not names: said so ("'int' object is not iterable"; bytes were read number by number).
    for wrong, named in ((5, "int 5"), (b"person", "bytes b'person'"),
                         (["person", 3], "int 3")):
        with pytest.raises(TypeError, match=re.escape(named)):
            detect_class_ids(wrong)


def test_a_wrong_detect_stops_load_pascalvoc_model_before_it_loads(r50_checkpoint):
    """The model was loaded (a download, for a released name) and kept, then the call
    failed, leaving the new model with the old target class."""
    change = alter_bg()
    change.load_pascalvoc_model(str(r50_checkpoint), detect="car")
    loaded = change.predictor
    with pytest.raises(EffectError, match="persn"):
        change.load_pascalvoc_model("nowhere/model.pkl", detect="persn")  # not even looked up
    assert change.predictor is loaded and change.detect == "car"


@pytest.mark.parametrize("name", ["xception_pascalvoc.pb", "deeplabv3_xception_tf_dim_ordering"
                                  "_tf_kernels.h5"])
def test_tensorflow_models_are_refused_saying_what_to_load(name):
    with pytest.raises(ModelFileError) as info:
        alter_bg(model_type="pb").load_pascalvoc_model(name)
    assert isinstance(info.value, PixellibError) and name in str(info.value)
    assert "pointrend_resnet50.pkl" in str(info.value) and "resnet50" in str(info.value)


def test_blur_needs_a_level_and_calls_need_a_model(tmp_path):
    with pytest.raises(EffectError, match="low=True, moderate=True or extreme=True"):
        alter_bg().blur_bg(str(DATA / "images" / "small.jpg"))
    with pytest.raises(EffectError, match="no model loaded"):
        alter_bg().gray_bg(str(DATA / "images" / "small.jpg"))
    with pytest.raises(EffectError, match="low must be True or False, got 'no'"):
        alter_bg().blur_bg(str(DATA / "images" / "small.jpg"), low="no")  # it blurred


def test_verbose_says_frame_for_the_frame_calls(r50_checkpoint, capsys):
    change = alter_bg()
    change.load_pascalvoc_model(str(r50_checkpoint))
    frame = cv2.imread(str(DATA / "images" / "small.jpg"))
    for call in (lambda: change.gray_frame(frame, verbose=True),
                 lambda: change.color_frame(frame, (0, 0, 255), verbose=True),
                 lambda: change.blur_frame(frame, low=True, verbose=True),
                 lambda: change.change_frame_bg(frame, str(DATA / "images" / "wide.jpg"),
                                                verbose=True)):
        assert call().shape == frame.shape
        assert capsys.readouterr().out == "processing frame......\n"  # as PixelLib
    change.gray_bg(str(DATA / "images" / "small.jpg"), verbose=True)
    assert capsys.readouterr().out == "processing image......\n"


def test_output_names_are_checked_before_the_inference(tmp_path):
    from pixellib.errors import InvalidArgumentError
    from pixellib.torchbackend.instance import instanceSegmentation

    photo = str(DATA / "images" / "small.jpg")
    # No model is loaded: the name is refused before anything would need one.
    for name in ("out.xyz", "out", tmp_path):
        with pytest.raises(InvalidArgumentError, match="cannot write"):
            alter_bg().gray_bg(photo, output_image_name=str(name))
    ins = instanceSegmentation()
    ins._predictor = object()  # "loaded": the check must come before reading the image
    with pytest.raises(InvalidArgumentError, match="unknown image extension '.xyz'"):
        ins.segmentImage(str(tmp_path / "not there.jpg"), output_image_name="out.xyz")


def test_a_mistyped_model_path_is_not_replaced_by_a_download(tmp_path, monkeypatch):
    """Only a bare released file name stands for the download; "modles/pointrend_resnet50.pkl"
    is a path the user meant, and must say it is missing."""
    from pixellib.checkpoint import hub
    from pixellib.errors import ModelNotFoundError

    monkeypatch.setattr(hub, "download_model", lambda *a, **k: pytest.fail("downloaded"))
    monkeypatch.setenv("PIXELLIB_HOME", str(tmp_path / "cache"))
    typo = tmp_path / "modles" / "pointrend_resnet50.pkl"
    with pytest.raises(ModelNotFoundError, match="modles"):
        alter_bg().load_pascalvoc_model(str(typo))


def test_device_defaults_like_instance_segmentation(r50_checkpoint):
    import torch

    tuner = alter_bg(detection_speed="rapid")
    assert tuner.device is None
    tuner.load_pascalvoc_model(str(r50_checkpoint))
    assert tuner.predictor.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    cpu = alter_bg(detection_speed="rapid", device="cpu")
    cpu.load_pascalvoc_model(str(r50_checkpoint))
    assert cpu.predictor.device.type == "cpu"


def test_the_kept_model_is_shared_and_can_be_turned_off_or_released(r50_checkpoint,
                                                                     monkeypatch):
    """The last model loaded is kept for scripts that build alter_bg per call; it held
    ~0.5 GB after every instance was gone, with no public way to let it go."""
    import gc
    import weakref

    alter_bg.release_model()
    first, second = alter_bg(detection_speed="rapid"), alter_bg(detection_speed="rapid")
    first.load_pascalvoc_model(str(r50_checkpoint))
    second.load_pascalvoc_model(str(r50_checkpoint))
    assert first.predictor is second.predictor  # loaded once
    kept = weakref.ref(first.predictor)
    del first, second
    gc.collect()
    assert kept() is not None  # kept for the next instance
    alter_bg.release_model()
    gc.collect()
    assert kept() is None  # released: freed with its instances
    from concurrent.futures import ThreadPoolExecutor

    def load(_):
        tuner = alter_bg(detection_speed="rapid")
        tuner.load_pascalvoc_model(str(r50_checkpoint))
        return tuner.predictor

    with ThreadPoolExecutor(3) as pool:  # threads loading at once: one load, shared
        assert len({id(p) for p in pool.map(load, range(3))}) == 1
    monkeypatch.setattr(alter_bg, "keep_model", False)
    own = alter_bg(detection_speed="rapid")
    own.load_pascalvoc_model(str(r50_checkpoint))
    other = alter_bg(detection_speed="rapid")
    other.load_pascalvoc_model(str(r50_checkpoint))
    assert own.predictor is not other.predictor
    mine = weakref.ref(own.predictor)
    del own
    gc.collect()
    assert mine() is None  # not kept: freed with the instance


def test_video_calls_check_detect_before_the_first_frame(r50_checkpoint, tmp_path):
    tuner = alter_bg(detection_speed="rapid")
    tuner.load_pascalvoc_model(str(r50_checkpoint))
    missing = str(tmp_path / "not there.mp4")  # opening it would raise InputNotFoundError
    with pytest.raises(EffectError, match="unicorn"):
        tuner.gray_video(missing, detect="unicorn")
    with pytest.raises(EffectError, match="detect names no class"):
        tuner.color_video(missing, colors=(0, 0, 0), detect=[])
    with pytest.raises(EffectError, match="no model loaded"):
        alter_bg().blur_video(missing, low=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, r50_checkpoint):
    from pixellib.media.video import VideoWriter

    root = tmp_path_factory.mktemp("tune_bg")
    shutil.copyfile(r50_checkpoint, root / "pointrend_resnet50.pkl")
    for name, photo in PICTURES.items():
        image = cv2.imread(str(DATA / "images" / photo))
        cv2.imwrite(str(root / name), cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA))
    frame = cv2.resize(cv2.imread(str(DATA / "images" / "small.jpg")), CLIP_SIZE)
    with VideoWriter(root / "sample_video.mp4", 10, CLIP_SIZE) as writer:
        for shift in range(3):
            writer.write(np.roll(frame, 4 * shift, axis=1))
    return {"root": root, "namespaces": {doc: {"__name__": "__tutorial__"} for doc in DOCS},
            "next": {doc: 0 for doc in DOCS}}


@pytest.fixture
def no_hardware(workspace, monkeypatch):
    real = cv2.VideoCapture
    clip = str(workspace["root"] / "sample_video.mp4")

    def capture(source, *args):
        return real(clip) if source == 0 else real(source, *args)

    monkeypatch.setattr(cv2, "VideoCapture", capture)
    from pixellib.torchbackend.instance import streams

    monkeypatch.setattr(streams, "gui_available", lambda: True)  # as on a desktop
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "imshow", lambda *a: None)
    monkeypatch.setattr(cv2, "waitKey", lambda *a: ord("q"))
    monkeypatch.setattr(cv2, "destroyWindow", lambda *a: None)
    monkeypatch.setattr(alter_bg, "detection_speed", "rapid")
    monkeypatch.setattr(alter_bg, "confidence", 0.5)
    monkeypatch.chdir(workspace["root"])
    return capture


def _outputs(code: str) -> list[str]:
    return re.findall(r'output_(?:image|video)_name\s*=\s*"([^"]+)"', code)


def _run(workspace: dict, doc: str, index: int, line: int, code: str, camera) -> None:
    root, ns = workspace["root"], workspace["namespaces"][doc]
    workspace["next"][doc] = index + 1  # later blocks go on even if this one fails
    for name, value in list(ns.items()):  # an excerpt reusing a camera the last call released
        if type(value).__name__ == "VideoCapture" and not value.isOpened():
            ns[name] = camera(0)
    for out in _outputs(code):
        (root / out).unlink(missing_ok=True)
    source = textwrap.dedent(code).replace(OLD_MODEL, NEW_MODEL)
    exec(compile(source, f"{doc} (block {index}, line {line})", "exec"), ns)


@pytest.mark.slow
@pytest.mark.parametrize("doc, index, line, code", BLOCKS,
                         ids=[f"{d.split('.')[0]}-block{i:02d}-line{n}" for d, i, n, _ in BLOCKS])
def test_tutorial_block_runs(doc, index, line, code, workspace, no_hardware):
    root, ns = workspace["root"], workspace["namespaces"][doc]
    earlier = [b for b in BLOCKS if b[0] == doc and workspace["next"][doc] <= b[1] < index]
    for block in earlier:  # a selected block needs the ones before it
        _run(workspace, *block, no_hardware)
    _run(workspace, doc, index, line, code, no_hardware)

    for out in _outputs(code):
        path = root / out
        assert path.is_file(), f"{doc} line {line} did not write {out}"
        if out.endswith(".jpg"):
            assert cv2.imread(str(path)).shape == (120, 160, 3)
        else:
            capture = cv2.VideoCapture(str(path))
            ok, frame = capture.read()
            capture.release()
            assert ok and frame.shape == (CLIP_SIZE[1], CLIP_SIZE[0], 3)
    if "output =" in code:
        output = ns["output"]
        assert isinstance(output, np.ndarray) and output.dtype == np.uint8
        assert output.ndim == 3 and output.shape[2] == 3
    match = re.search(r'output = change_bg\.color_bg\("(\w+\.jpg)", colors = \((\d+), (\d+), '
                      r'(\d+)\)', code)
    if match:  # every pixel is either the RGB colour (as BGR) or the input's own pixel
        image = cv2.imread(str(root / match[1]))
        bgr = np.array([int(match[4]), int(match[3]), int(match[2])], np.uint8)
        output = ns["output"]
        assert ((output == bgr).all(-1) | (output == image).all(-1)).all()


@pytest.mark.slow
def test_alter_bg_is_apply_effect_on_the_target_class(r50_checkpoint, tmp_path):
    """color_bg / blur_bg with detect= equal the core effect on that class's detections."""
    from pixellib.effects import apply_effect
    from pixellib.media.images import read_image

    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), cv2.resize(cv2.imread(str(DATA / "images" / "small.jpg")), (160, 120)))
    tuner = alter_bg(model_type="pb", detection_speed="rapid", confidence=0.5)
    tuner.load_pascalvoc_model(str(r50_checkpoint))
    image = read_image(path)
    det = tuner.predictor(image)
    target = det.class_names[0] if len(det) else "person"
    mine = det.with_classes([class_id(target)])
    out = tuner.color_bg(str(path), colors=(0, 0, 255), detect=target,
                         output_image_name=str(tmp_path / "blue.png"))
    assert np.array_equal(out, apply_effect(image, mine, "color-bg=0,0,255"))
    assert np.array_equal(cv2.imread(str(tmp_path / "blue.png")), out)
    outside = ~mine.masks.any(0)
    assert (out[outside] == (255, 0, 0)).all()  # RGB blue, written as BGR
    blurred = tuner.blur_frame(image, low=True, moderate=True, detect=target)  # strongest wins
    assert np.array_equal(blurred, apply_effect(image, mine, "blur-bg=moderate"))


def test_an_output_named_like_an_input_picture_is_refused(tmp_path):
    """blur_bg('fg.jpg', output_image_name='fg.jpg') replaced the photo (and change_bg_img
    could replace its background picture) with the result."""
    from pixellib.errors import InvalidArgumentError

    photo, background = tmp_path / "fg.jpg", tmp_path / "bg.jpg"
    shutil.copy(DATA / "images" / "small.jpg", photo)
    shutil.copy(DATA / "images" / "small.jpg", background)
    before = photo.read_bytes()
    # No model is loaded: the name is refused before anything would need one.
    with pytest.raises(InvalidArgumentError, match="it is the input image itself"):
        alter_bg().blur_bg(str(photo), low=True, output_image_name=str(photo))
    with pytest.raises(InvalidArgumentError, match="it is the input image itself"):
        alter_bg().change_bg_img(str(photo), str(background),
                                 output_image_name=str(background))
    assert photo.read_bytes() == before == background.read_bytes()
