"""Checkpoint reading, key conversion, architecture sniffing and strict loading
(docs/design.md, "Checkpoint files")."""

from __future__ import annotations

import json
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pixellib.checkpoint import state_dict as weights
from pixellib.checkpoint import unpickler as _pickle
from pixellib.checkpoint.state_dict import (
    CheckpointInfo,
    ConversionReport,
    convert_checkpoint,
    convert_state_dict,
    detect_architecture,
    inspect_checkpoint,
    load_into,
    read_checkpoint,
    save_safetensors,
)
from pixellib.errors import ModelFileError

KEYS_JSON = Path(__file__).parents[1] / "data" / "pointrend_keys.json"
PROBE = "backbone.bottom_up.res2.0.conv2.weight"
CELL_ANCHORS = [f"proposal_generator.anchor_generator.cell_anchors.{i}" for i in range(5)]


def shapes_table(arch: str) -> dict[str, tuple[int, ...]]:
    """Reference state-dict shapes; resnet101 is resnet50 with res4 blocks 6..22 added."""
    table = json.loads(KEYS_JSON.read_text())
    if arch != "resnet101":
        return {key: tuple(shape) for key, shape in table[arch].items()}
    shapes = shapes_table("resnet50")
    prefix = "backbone.bottom_up.res4.5."
    for key, shape in list(shapes.items()):
        if key.startswith(prefix):
            for block in range(6, 23):
                shapes[f"backbone.bottom_up.res4.{block}." + key[len(prefix) :]] = shape
    return shapes


def meta_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Shape-only tensors: enough for sniffing and validation, no memory."""
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


def small_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        PROBE: rng.standard_normal((64, 64, 3, 3)).astype(np.float32),
        "backbone.bottom_up.stem.conv1.norm.running_var": rng.uniform(0.5, 1.5, 4).astype(
            np.float32
        ),
        "roi_heads.mask_head.point_head.fc1.weight": rng.standard_normal((3, 5, 1)).astype(
            np.float32
        ),
        "roi_heads.mask_head.coarse_head.fc1.bias": rng.standard_normal(3).astype(np.float32),
        "roi_heads.box_predictor.cls_score.bias": np.float32([1.5, -2.0]),
    }


def as_tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.array(value)) for key, value in arrays.items()}


def assert_same(got: dict[str, torch.Tensor], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for key, value in got.items():
        assert value.dtype == torch.float32 and value.device.type == "cpu", key
        assert value.is_contiguous(), key
        np.testing.assert_array_equal(value.numpy(), np.asarray(want[key], dtype=np.float32))


def write_pickle(path: Path, obj, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


# --- formats ---------------------------------------------------------------------------------


def _zoo(p, w):
    return write_pickle(p / "m.pkl", {"model": w, "__author__": "synthetic"})


WRITERS = {
    "zoo-pkl": _zoo,
    "zoo-pkl-protocol2": lambda p, w: write_pickle(
        p / "m.pkl", {"model": w, "__author__": "x"}, protocol=2
    ),
    "zoo-pkl-protocol3": lambda p, w: write_pickle(p / "m.pkl", {"model": w}, protocol=3),
    "zoo-pkl-protocol5": lambda p, w: write_pickle(p / "m.pkl", {"model": w}, protocol=5),
    "model-no-author-pkl": lambda p, w: write_pickle(p / "m.pkl", {"model": w}),
    "bare-pkl": lambda p, w: write_pickle(p / "m.pkl", w),
    "ordereddict-pkl": lambda p, w: write_pickle(p / "m.pkl", OrderedDict(w), protocol=2),
    "trainer-pth": lambda p, w: _torch_save(
        p / "m.pth",
        {"model": as_tensors(w), "optimizer": {"state": {}}, "scheduler": {}, "iteration": 89999},
    ),
    "bare-pth": lambda p, w: _torch_save(p / "m.pth", as_tensors(w)),
    "legacy-serialization-pth": lambda p, w: _torch_save(p / "m.pth", as_tensors(w), zip_=False),
    "safetensors": lambda p, w: _save_st(p / "m.safetensors", as_tensors(w)),
    # The content decides the format, not the extension.
    "zip-pth-named-pkl": lambda p, w: _torch_save(p / "m.pkl", as_tensors(w)),
    "pkl-named-pth": lambda p, w: write_pickle(p / "m.pth", {"model": w, "__author__": "x"}),
    "safetensors-named-bin": lambda p, w: _save_st(p / "m.bin", as_tensors(w)),
}


def _torch_save(path: Path, obj, zip_: bool = True) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=zip_)
    return path


def _save_st(path: Path, tensors) -> Path:
    save_file(tensors, str(path))
    return path


@pytest.mark.parametrize("layout", list(WRITERS))
def test_every_format_gives_the_same_tensors(tmp_path, layout):
    arrays = small_weights()
    assert_same(read_checkpoint(WRITERS[layout](tmp_path, arrays)), arrays)


def test_numpy1_style_pickle_loads_under_numpy2(tmp_path):
    arrays = small_weights()
    data = pickle.dumps({"model": arrays, "__author__": "numpy 1.x"}, protocol=2)
    assert b"numpy._core.multiarray" in data
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / "old.pkl").write_bytes(old)
    assert_same(read_checkpoint(tmp_path / "old.pkl"), arrays)


def _py2_array(array: np.ndarray) -> bytes:
    """A float32 array as Python 2's pickle wrote it: SHORT_BINSTRING names, BINSTRING data."""
    raw = array.tobytes()
    shape = b"".join(b"K" + bytes([n]) for n in array.shape)
    return (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
        + b"(K\x01("
        + shape
        + b"tcnumpy\ndtype\nU\x02f4K\x00K\x01\x87R"
        + b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
        + b"T"
        + len(raw).to_bytes(4, "little")
        + raw
        + b"tb"
    )


def test_python2_pickle_loads(tmp_path):
    """Caffe2-era pickles hold py2 ``str`` data, which ``encoding="latin1"`` turns back."""
    arrays = {PROBE: np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float32([0.5, 128])}
    items = b"".join(b"U" + bytes([len(k)]) + k.encode() + _py2_array(v) for k, v in arrays.items())
    data = b"\x80\x02}(U\x05model}(" + items + b"uU\n__author__U\x06Caffe2u."
    (tmp_path / "py2.pkl").write_bytes(data)
    assert_same(read_checkpoint(tmp_path / "py2.pkl"), arrays)


def test_values_become_float32(tmp_path):
    arrays = {
        "a.weight": np.arange(6, dtype=np.float64).reshape(2, 3),
        "b.weight": np.arange(3, dtype=np.float16),
        "c.num_batches_tracked": np.int64(7),
        "d.flag": np.array([True, False]),
    }
    got = read_checkpoint(write_pickle(tmp_path / "m.pkl", {"model": arrays}))
    assert all(v.dtype == torch.float32 for v in got.values())
    assert got["c.num_batches_tracked"].shape == () and got["c.num_batches_tracked"].item() == 7
    torch.save({"x": torch.arange(4, dtype=torch.bfloat16)}, tmp_path / "b.pth")
    assert read_checkpoint(tmp_path / "b.pth")["x"].dtype == torch.float32


def test_module_prefix_is_stripped_only_when_every_key_has_it(tmp_path):
    arrays = small_weights()
    prefixed = {f"module.{key}": value for key, value in arrays.items()}
    assert_same(read_checkpoint(write_pickle(tmp_path / "a.pkl", {"model": prefixed})), arrays)
    mixed = dict(prefixed, **{"other.weight": np.zeros(1, np.float32)})
    assert "module." + PROBE in read_checkpoint(write_pickle(tmp_path / "b.pkl", mixed))


# --- key conversion ------------------------------------------------------------------------

# docs/design.md, "Key names", written out by hand: (current name, legacy name).
LEGACY = [
    (
        "roi_heads.mask_head.coarse_head.reduce_spatial_dim_conv.weight",
        "roi_heads.mask_coarse_head.reduce_spatial_dim_conv.weight",
    ),
    (
        "roi_heads.mask_head.coarse_head.fc1.weight",
        "roi_heads.mask_coarse_head.coarse_mask_fc1.weight",
    ),
    (
        "roi_heads.mask_head.coarse_head.fc2.bias",
        "roi_heads.mask_coarse_head.coarse_mask_fc2.bias",
    ),
    (
        "roi_heads.mask_head.coarse_head.prediction.bias",
        "roi_heads.mask_coarse_head.prediction.bias",
    ),
    ("roi_heads.mask_head.point_head.fc3.weight", "roi_heads.mask_point_head.fc3.weight"),
    ("roi_heads.mask_head.point_head.predictor.bias", "roi_heads.mask_point_head.predictor.bias"),
]


def to_legacy(key: str) -> str:
    key = key.replace(
        "roi_heads.mask_head.coarse_head.fc", "roi_heads.mask_coarse_head.coarse_mask_fc"
    )
    key = key.replace("roi_heads.mask_head.coarse_head.", "roi_heads.mask_coarse_head.")
    return key.replace("roi_heads.mask_head.point_head.", "roi_heads.mask_point_head.")


@pytest.mark.parametrize("modern, legacy", LEGACY)
def test_legacy_table(modern, legacy):
    assert to_legacy(modern) == legacy
    converted, report = convert_state_dict({legacy: 1})
    assert converted == {modern: 1}
    assert report == ConversionReport(renamed={legacy: modern}, ignored=[])


@pytest.mark.parametrize("arch", ["resnet50", "resnext101_32x8d"])
def test_legacy_names_give_the_same_state_dict(arch):
    modern = {key: torch.full((1,), float(i)) for i, key in enumerate(shapes_table(arch))}
    legacy = {to_legacy(key): value for key, value in modern.items()}
    assert legacy.keys() != modern.keys()
    converted, report = convert_state_dict(legacy)
    assert converted == modern
    assert len(report.renamed) == 16 and report.ignored == []
    assert all(report.renamed[to_legacy(new)] == new for new in report.renamed.values())
    again, nothing = convert_state_dict(modern)
    assert again == modern and nothing == ConversionReport({}, [])


def test_old_coarse_fc_name_under_current_parent():
    converted, _ = convert_state_dict({"roi_heads.mask_head.coarse_head.coarse_mask_fc2.weight": 0})
    assert list(converted) == ["roi_heads.mask_head.coarse_head.fc2.weight"]


def test_unused_keys_are_dropped_quietly(caplog):
    raw = {PROBE: 0, "pixel_mean": 1, "pixel_std": 2, "backbone.x.norm.num_batches_tracked": 3}
    raw.update({key: 4 for key in CELL_ANCHORS})
    before = dict(raw)
    with caplog.at_level("INFO", logger="pixellib.checkpoint.state_dict"):
        converted, report = convert_state_dict(raw)
    assert converted == {PROBE: 0}
    assert sorted(report.ignored) == sorted(set(raw) - {PROBE})
    assert report.renamed == {} and raw == before
    assert not [r for r in caplog.records if r.levelno >= 20]


def test_legacy_and_current_name_for_one_tensor_is_an_error():
    raw = {
        "roi_heads.mask_point_head.fc1.weight": 0,
        "roi_heads.mask_head.point_head.fc1.weight": 1,
    }
    with pytest.raises(ModelFileError, match="roi_heads.mask_point_head.fc1.weight"):
        convert_state_dict(raw)


# --- architecture -------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["resnet50", "resnet101", "resnext101_32x8d"])
def test_detect_architecture(arch):
    assert detect_architecture(meta_state_dict(shapes_table(arch))) == arch


def test_plain_mask_rcnn_is_refused():
    shapes = {k: v for k, v in shapes_table("resnet50").items() if ".mask_head." not in k}
    shapes.update(
        {f"roi_heads.mask_head.mask_fcn{i}.weight": (256, 256, 3, 3) for i in range(1, 5)}
    )
    with pytest.raises(ModelFileError, match="plain Mask R-CNN.*not a PointRend"):
        detect_architecture(meta_state_dict(shapes))


def test_missing_probe_and_unknown_backbone():
    shapes = shapes_table("resnet50")
    with pytest.raises(ModelFileError, match="not a PointRend/R-CNN checkpoint"):
        detect_architecture(meta_state_dict({k: v for k, v in shapes.items() if k != PROBE}))
    shapes[PROBE] = (128, 4, 3, 3)
    with pytest.raises(ModelFileError, match=r"\(128, 4, 3, 3\)"):
        detect_architecture(meta_state_dict(shapes))


# --- strict loading ------------------------------------------------------------------------


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.add_module("fc1", torch.nn.Linear(3, 2))
        self.register_buffer("running_var", torch.ones(2))
        self.register_buffer("anchors", torch.zeros(4), persistent=False)


def tiny_weights() -> dict[str, torch.Tensor]:
    return {
        "fc1.weight": torch.full((2, 3), 0.5),
        "fc1.bias": torch.tensor([1.0, 2.0]),
        "running_var": torch.tensor([3.0, 4.0]),
    }


def test_load_into_succeeds_when_everything_matches():
    model = Tiny()
    load_into(model, tiny_weights())
    for key, value in tiny_weights().items():
        assert torch.equal(model.state_dict()[key], value)


def test_load_into_lists_missing_unexpected_and_misshapen_keys():
    state = tiny_weights()
    del state["fc1.bias"]
    state["fc1.weight"] = torch.zeros(3, 2)
    state["fc9.weight"] = torch.zeros(1)
    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ModelFileError) as err:
        load_into(model, state, path="ckpt.pkl")
    text = str(err.value)
    assert text.startswith("ckpt.pkl")
    assert "missing (1): fc1.bias" in text and "unexpected (1): fc9.weight" in text
    assert "fc1.weight: file (3, 2) vs model (2, 3)" in text
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_long_key_lists_are_truncated_with_a_count():
    model = torch.nn.Module()
    for i in range(30):
        model.register_buffer(f"b{i}", torch.zeros(1))
    with pytest.raises(ModelFileError, match=r"missing \(30\): .*\.\.\. and 20 more"):
        load_into(model, {})


# --- inspect, save, convert ----------------------------------------------------------------


@pytest.fixture
def reference_shapes(monkeypatch):
    monkeypatch.setattr(weights, "expected_shapes", shapes_table)


def test_inspect_full_size_resnet50(tmp_path, reference_shapes):
    shapes = shapes_table("resnet50")
    model = {key: np.zeros(shape, np.float32) for key, shape in shapes.items()}
    model.update({key: np.zeros((3, 4), np.float32) for key in CELL_ANCHORS})
    path = write_pickle(tmp_path / "pointrend_resnet50.pkl", {"model": model, "__author__": "x"})
    info = inspect_checkpoint(path)
    assert info == CheckpointInfo(path, "resnet50", 60_268_032, ConversionReport({}, CELL_ANCHORS))


def test_inspect_reports_legacy_renames(tmp_path, monkeypatch):
    arrays = small_weights()
    monkeypatch.setattr(
        weights, "expected_shapes", lambda arch: {k: v.shape for k, v in arrays.items()}
    )
    legacy = {to_legacy(k): v for k, v in arrays.items()}
    info = inspect_checkpoint(write_pickle(tmp_path / "old.pkl", {"model": legacy}))
    assert info.arch == "resnet50"
    assert info.num_parameters == sum(v.size for v in arrays.values())
    assert set(info.report.renamed.values()) == {
        "roi_heads.mask_head.point_head.fc1.weight",
        "roi_heads.mask_head.coarse_head.fc1.bias",
    }


def test_convert_checkpoint_roundtrip_without_pickle(tmp_path, monkeypatch):
    arrays = small_weights()
    monkeypatch.setattr(weights, "expected_shapes",
                        lambda arch: {k: v.shape for k, v in arrays.items()})
    legacy = {to_legacy(k): v for k, v in arrays.items()}
    legacy[CELL_ANCHORS[0]] = np.ones((3, 4), np.float32)
    src = write_pickle(tmp_path / "legacy.pkl", {"model": legacy, "__author__": "x"})
    info = convert_checkpoint(src, tmp_path / "out.safetensors")
    assert info.arch == "resnet50" and info.report.ignored == [CELL_ANCHORS[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["legacy.pkl", "out.safetensors"]
    # the umask's permissions, like every other output (safetensors' writer made it 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask

    def no_pickle(*args, **kwargs):
        raise AssertionError("a safetensors file must not be unpickled")

    monkeypatch.setattr(_pickle, "load_restricted", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    assert_same(read_checkpoint(tmp_path / "out.safetensors"), arrays)


def test_convert_checkpoint_bad_source_writes_nothing(tmp_path):
    (tmp_path / "bad.pkl").write_bytes(b"\x80\x04not really")
    (tmp_path / "out.safetensors").write_bytes(b"previous")
    with pytest.raises(ModelFileError, match="bad.pkl"):
        convert_checkpoint(tmp_path / "bad.pkl", tmp_path / "out.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pkl", "out.safetensors"]
    assert (tmp_path / "out.safetensors").read_bytes() == b"previous"


def test_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    import pixellib.media.files as files

    def full_disk(src, dst):  # the bytes were written; putting them in place fails
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", full_disk)
    with pytest.raises(OSError, match="disk full"):
        save_safetensors(as_tensors(small_weights()), tmp_path / "out.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_save_safetensors_handles_shared_tensors(tmp_path):
    shared = torch.arange(4.0)
    save_safetensors({"a": shared, "b": shared, "c": np.ones(2)}, tmp_path / "s.safetensors")
    got = read_checkpoint(tmp_path / "s.safetensors")
    assert torch.equal(got["a"], got["b"]) and got["c"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("arch", ["resnet50", "resnet101", "resnext101_32x8d"])
def test_model_shapes_match_the_reference_table(arch):
    """The real hook (built from the model) agrees with the model's state-dict inventory."""
    pytest.importorskip("pixellib.model.detector")
    assert weights.expected_shapes(arch) == shapes_table(arch)


def test_a_loaded_models_state_dict_loads_back(r50_model, r50_checkpoint, tmp_path):
    """``torch.save(model.state_dict())`` holds the folded weights (no batch norms): they
    were refused as "missing 212 keys"; and a ``{"model": ...}`` dict is unwrapped as the
    files are."""
    import cv2

    from pixellib.checkpoint.files import read_checkpoint
    from pixellib.predictor import Predictor, load_model

    saved = tmp_path / "mine.pth"
    torch.save(r50_model.state_dict(), saved)
    again = load_model(saved)
    image = cv2.imread(str(Path(__file__).parents[1] / "data" / "images" / "small.jpg"))
    want = Predictor(r50_model, speed="rapid")(image)
    got = Predictor(again, speed="rapid")(image)
    assert len(want) > 0
    for field in ("boxes", "scores", "class_ids", "masks"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), field)
    wrapped = load_model({"model": read_checkpoint(r50_checkpoint), "__author__": "x"})
    np.testing.assert_array_equal(Predictor(wrapped, speed="rapid")(image).masks, want.masks)
    info = inspect_checkpoint(saved)  # `pixellib info` refused what loads ("missing 212")
    assert info.arch == "resnet50"
    converted = convert_checkpoint(saved, tmp_path / "mine.safetensors")
    assert converted.arch == "resnet50"
    np.testing.assert_array_equal(
        Predictor(load_model(tmp_path / "mine.safetensors"), speed="rapid")(image).masks,
        want.masks)


def test_convert_refuses_a_checkpoint_that_would_not_load(tmp_path, monkeypatch):
    """It wrote such files and said "wrote": the user found out at load time."""
    arrays = small_weights()
    monkeypatch.setattr(weights, "expected_shapes",
                        lambda arch: {k: v.shape for k, v in arrays.items()})
    broken = dict(arrays)
    broken.pop(next(k for k in arrays if k != PROBE and ".point_head." not in k))
    src = write_pickle(tmp_path / "broken.pkl", {"model": broken})
    with pytest.raises(ModelFileError, match=r"(?s)broken.pkl: does not match.*missing \(1\)"):
        convert_checkpoint(src, tmp_path / "out.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pkl"]


def test_a_checkpoint_for_other_classes_is_said_in_words():
    shapes = shapes_table("resnet50")
    shapes["roi_heads.box_predictor.cls_score.weight"] = (4, 1024)
    shapes["roi_heads.box_predictor.cls_score.bias"] = (4,)
    text = weights._mismatch(shapes_table("resnet50"), meta_state_dict(shapes))
    assert "it was trained for 3 classes, and pixellib runs the 80-class COCO" in text
    assert "cls_score.weight: file (4, 1024) vs model (81, 1024)" in text
    # one line per kind, each but the last ending in ';': the CLI's one-line error (every
    # run of spaces and newlines made one space) still reads them apart
    assert " ".join(text.split()).startswith(
        "it was trained for 3 classes, and pixellib runs the 80-class COCO PointRend models "
        "(PixelLib's pointrend_resnet50.pkl / pointrend_resnet101.pkl); wrong shape (2): ")


def test_errors_about_the_architecture_name_the_file(tmp_path):
    """load_model said "a plain Mask R-CNN checkpoint..." without saying which file."""
    from pixellib.predictor import load_model

    shapes = {k: v for k, v in shapes_table("resnet50").items() if ".mask_head." not in k}
    arrays = {k: np.zeros(v, np.float32) for k, v in shapes.items() if k == PROBE}
    arrays["roi_heads.mask_head.mask_fcn1.weight"] = np.zeros((2, 2), np.float32)
    path = write_pickle(tmp_path / "maskrcnn.pkl", {"model": arrays})
    with pytest.raises(ModelFileError, match="maskrcnn.pkl: a plain Mask R-CNN checkpoint"):
        load_model(path)


def test_a_view_repeating_its_storage_is_refused_before_it_is_copied(tmp_path):
    """A 1.7 KB .pth declaring a 20000 x 20000 expanded tensor took 1.7 GB before being
    refused (and 4 TB gave a raw allocation error)."""
    from pixellib.checkpoint.files import to_tensor

    huge = torch.zeros(1).expand(10**6, 10**6)
    path = _torch_save(tmp_path / "s0.pth", {"model": {PROBE: huge}})
    assert path.stat().st_size < 10_000
    with pytest.raises(ModelFileError, match="s0.pth: its arrays declare .* MiB"):
        read_checkpoint(path)
    with pytest.raises(ModelFileError, match=f"'{PROBE}' declares \\(1000, 1000\\)"):
        to_tensor(torch.zeros(1).expand(1000, 1000), PROBE, path)


def test_one_array_under_many_names_is_refused_before_conversion(tmp_path):
    """A 10 MB pickle naming one array 60 times took 2.6 GB before being refused."""
    shared = np.zeros(2**20, np.uint8)
    path = write_pickle(tmp_path / "memo.pkl", {"model": {f"k{i}": shared for i in range(60)}})
    assert path.stat().st_size < 2 * 2**20
    with pytest.raises(ModelFileError, match="memo.pkl: its arrays declare 240 MiB"):
        read_checkpoint(path)


def test_nan_weights_are_refused(tmp_path):
    """A damaged file with NaN weights loaded silently and then found nothing."""
    arrays = small_weights()
    key = next(iter(arrays))
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] = np.nan
    path = write_pickle(tmp_path / "nan.pkl", {"model": arrays})
    with pytest.raises(ModelFileError, match=f"nan.pkl: '{key}' holds 1 NaN or infinite"):
        read_checkpoint(path)


def test_model_paths_expand_home_and_find_the_downloaded_file(r50_checkpoint, tmp_path,
                                                              monkeypatch, caplog):
    """`~/x.pkl` and PixelLib's bare `pointrend_resnet50.pkl` (downloaded with `pixellib
    download`) were "not found, download it", which then said it was already downloaded."""
    from pixellib.checkpoint.loading import load_model

    home, cache, work = tmp_path / "home", tmp_path / "cache", tmp_path / "work"
    for folder in (home, cache, work):
        folder.mkdir()
    (home / "mine.pkl").symlink_to(r50_checkpoint)
    (cache / "pointrend_resnet50.pkl").symlink_to(r50_checkpoint)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PIXELLIB_HOME", str(cache))
    monkeypatch.chdir(work)
    for source in ("~/mine.pkl", "pointrend_resnet50.pkl", "resnet50"):
        assert load_model(source).config.name == "resnet50", source
    with pytest.raises(FileNotFoundError, match=f"not found: 'gone.pkl'.*{cache}"):
        load_model("gone.pkl")
    caplog.set_level("WARNING")
    load_model("resnet50", backbone="resnet101")
    assert "(ResNeXt-101 32x8d) but" in caplog.text and "holds a ResNet-50 model" in caplog.text
