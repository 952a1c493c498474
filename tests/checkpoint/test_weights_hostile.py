"""Hostile and broken model files: nothing runs, and every error names the file.

Each hostile file carries a payload that would create a marker file if any of it were executed;
the tests check the error type *and* that the marker does not exist afterwards.
"""

from __future__ import annotations

import builtins
import importlib
import io
import json
import os
import pickle
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.testing._private.utils import runstring
from safetensors.torch import save_file

from pixellib.checkpoint import state_dict as weights
from pixellib.checkpoint.state_dict import inspect_checkpoint, read_checkpoint
from pixellib.config import MODEL_URLS
from pixellib.errors import ModelFileError, ModelNotFoundError, UnsafeModelFileError

PROBE = "backbone.bottom_up.res2.0.conv2.weight"
POINT = "roi_heads.mask_head.point_head.fc1.weight"


class Call:
    """Pickles as ``func(*args)``; ``func`` may itself be a Call, giving chains."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # pickle insists that a reduce callable be callable
        raise AssertionError("never called while pickling")


class Custom:
    """A harmless class that is still not array data."""

    def __init__(self):
        self.value = 3


def model_file(payload) -> dict:
    """A model-zoo layout with the payload hidden among real arrays."""
    return {
        "model": {PROBE: np.zeros((2, 2), np.float32), "evil.weight": payload},
        "__author__": "attacker",
    }


def os_system_by_name(marker: Path) -> bytes:
    # os.system pickles as posix.system; spell the global "os.system" as a hand-made file would.
    data = pickle.dumps(model_file(Call(os.system, f"touch {marker}")), protocol=2)
    return data.replace(b"cposix\nsystem\n", b"cos\nsystem\n")


def protocol0_os_system(marker: Path) -> bytes:
    return f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()


def _payloads(marker: Path) -> dict:
    cmd = f"touch {marker}"
    code = f"__import__('os').system({cmd!r})"
    inner = pickle.dumps(Call(os.system, cmd), protocol=2)
    npy = marker.with_name("evil.npy")
    return {
        "posix.system": Call(os.system, cmd),
        "builtins.eval": Call(builtins.eval, code),
        "builtins.exec": Call(builtins.exec, code),
        "builtins.__import__+getattr": Call(Call(getattr, Call(__import__, "os"), "system"), cmd),
        "numpy-internal-exec": Call(runstring, code, {}),
        "subprocess.Popen": Call(subprocess.Popen, ["touch", str(marker)]),
        "subprocess.check_call": Call(subprocess.check_call, ["touch", str(marker)]),
        "importlib.import_module": Call(
            Call(getattr, Call(importlib.import_module, "os"), "system"), cmd
        ),
        "pickle.loads-nested": Call(pickle.loads, inner),
        "object-array-with-payload": np.array([Call(os.system, cmd), 1.0], dtype=object),
        "object-array-with-nested-pickle": np.array([inner], dtype=object),
        "numpy.load-allow-pickle": Call(np.load, str(npy), None, True),
        "torch-internals": Call(torch._utils._rebuild_tensor_v2, None, 0, (1,), (1,), False, {}),
        "custom-class": Custom(),
    }


PAYLOAD_NAMES = list(_payloads(Path("/nonexistent/PWNED")))


@pytest.fixture
def marker(tmp_path) -> Path:
    marker = tmp_path / "PWNED"
    # The file the numpy.load gadget would open: itself a hostile pickle.
    inner = pickle.dumps(Call(os.system, f"touch {marker}"), protocol=2)
    np.save(
        tmp_path / "evil.npy",
        np.array([inner, Call(os.system, f"touch {marker}")], dtype=object),
        allow_pickle=True,
    )
    return marker


def assert_refused(path: Path, marker: Path, error=UnsafeModelFileError) -> str:
    with pytest.raises(error) as err:
        read_checkpoint(path)
    time.sleep(0.01)  # a Popen'd child, had there been one, would have run by now
    assert not marker.exists(), "the payload ran"
    assert path.name in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("ext", [".pkl", ".pth"])
@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_hostile_pickles_are_refused(tmp_path, marker, name, protocol, ext):
    payload = _payloads(marker)[name]
    path = tmp_path / f"hostile{ext}"
    path.write_bytes(pickle.dumps(model_file(payload), protocol=protocol))
    text = assert_refused(path, marker)
    assert "Nothing in it was run" in text
    # tensors pickled with plain pickle.dump ask for torch's rebuild: say how to save them
    assert ("torch.save(state_dict" in text) == (name == "torch-internals")


@pytest.mark.parametrize("ext", [".pkl", ".pth"])
@pytest.mark.parametrize("make", [os_system_by_name, protocol0_os_system])
def test_os_system_spelled_out_is_refused(tmp_path, marker, make, ext):
    path = tmp_path / f"hostile{ext}"
    path.write_bytes(make(marker))
    assert "'os.system'" in assert_refused(path, marker)


@pytest.mark.parametrize("ext", [".pkl", ".pth"])
def test_refused_global_is_named(tmp_path, marker, ext):
    path = tmp_path / f"hostile{ext}"
    path.write_bytes(pickle.dumps(model_file(_payloads(marker)["builtins.eval"]), protocol=4))
    assert "'builtins.eval'" in assert_refused(path, marker)


def _dtype_with_object_flags() -> bytes:
    # numpy's dtype.__setstate__ takes the flags from the file: a "V8" dtype that claims to hold
    # Python objects would make the array's raw bytes be read as object pointers.
    data = pickle.dumps({"model": {PROBE: np.zeros(1, dtype="V8")}}, protocol=2)
    old = b"NNNK\x08K\x01K\x00t"
    assert data.count(old) == 1
    return data.replace(old, b"NNNK\x08K\x01K?t")


def _float_dtype_with_object_flags() -> bytes:
    data = pickle.dumps({"model": {PROBE: np.zeros(2, np.float32)}}, protocol=2)
    old = b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
    assert data.count(old) == 1
    return data.replace(old, b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK?t")


def _build_on_ordereddict() -> bytes:
    # OrderedDict() then BUILD {"__class__": ...}: pickle would setattr on the instance.
    return b"\x80\x02ccollections\nOrderedDict\n)R}X\t\x00\x00\x00__class__N\x86b."


def _codecs_other_encoding() -> bytes:
    return b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R."


@pytest.mark.parametrize("ext", [".pkl", ".pth"])
@pytest.mark.parametrize(
    "make",
    [
        _dtype_with_object_flags,
        _float_dtype_with_object_flags,
        _build_on_ordereddict,
        _codecs_other_encoding,
    ],
)
def test_hostile_array_plumbing_is_refused(tmp_path, marker, make, ext):
    path = tmp_path / f"hostile{ext}"
    path.write_bytes(make())
    assert_refused(path, marker)
    assert np.dtype(np.float32).hasobject is False  # numpy's singleton was not edited


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("ext", [".pth", ".pkl"])
@pytest.mark.parametrize("zip_", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("payload", ["os.system", "custom-class"])
def test_torch_save_with_objects_is_refused(tmp_path, marker, payload, zip_, ext):
    obj = Evil(marker) if payload == "os.system" else Custom()
    path = tmp_path / f"trainer{ext}"
    torch.save(
        {"model": {PROBE: torch.zeros(2)}, "extra": obj}, path, _use_new_zipfile_serialization=zip_
    )
    text = assert_refused(path, marker)
    assert "posix.system" in text or "Custom" in text
    assert "weights_only" not in text  # no advice to turn the safety off


def _torch_zip(data_pkl: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/.format_version", "1")
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


@pytest.mark.parametrize("ext", [".pth", ".pkl"])
@pytest.mark.parametrize(
    "name, refused",
    [
        ("posix.system", "posix.system"),
        ("builtins.eval", "eval"),
        ("subprocess.check_call", "subprocess.check_call"),
        ("importlib.import_module", "getattr"),
        ("object-array-with-payload", "numpy._core.multiarray._reconstruct"),
    ],
)
def test_handmade_torch_zip_is_refused(tmp_path, marker, name, refused, ext):
    """A zip laid out like torch's, whose ``data.pkl`` is the payload (no tensors needed)."""
    path = tmp_path / f"handmade{ext}"
    obj = {"model": {"evil.weight": _payloads(marker)[name]}}
    path.write_bytes(_torch_zip(pickle.dumps(obj, protocol=2, fix_imports=False)))
    text = assert_refused(path, marker)
    assert f"it asks for {refused}," in text


@pytest.mark.parametrize("name", ["posix.system", "builtins.exec"])
def test_handmade_torch_zip_protocol4_is_refused(tmp_path, marker, name):
    """torch's weights-only unpickler stops at the first protocol-4 opcode: still our error."""
    path = tmp_path / "handmade.pth"
    obj = {"model": {"evil.weight": _payloads(marker)[name]}}
    path.write_bytes(_torch_zip(pickle.dumps(obj, protocol=4)))
    with pytest.warns(UserWarning, match="pickle protocol 4"):
        text = assert_refused(path, marker, error=ModelFileError)
    assert "Unsupported operand" in text and "weights_only" not in text


# --- broken files ---------------------------------------------------------------------------


def _real_pkl(path: Path) -> None:
    arrays = {PROBE: np.arange(64, dtype=np.float32).reshape(8, 8), "b": np.ones(5, np.float32)}
    path.write_bytes(pickle.dumps({"model": arrays, "__author__": "x"}, protocol=4))


def _real_pth(path: Path) -> None:
    torch.save({"model": {PROBE: torch.arange(64.0).reshape(8, 8)}, "iteration": 1}, path)


def _real_safetensors(path: Path) -> None:
    save_file({PROBE: torch.arange(64.0).reshape(8, 8), "b": torch.ones(5)}, str(path))


REAL = {".pkl": _real_pkl, ".pth": _real_pth, ".safetensors": _real_safetensors}


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("ext", list(REAL))
def test_truncated_files(tmp_path, ext, fraction):
    path = tmp_path / f"model{ext}"
    REAL[ext](path)
    assert read_checkpoint(path)  # the whole file is fine
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * fraction))])
    with pytest.raises(ModelFileError) as err:
        read_checkpoint(path)
    assert path.name in str(err.value) and "truncated or corrupt" in str(err.value)
    assert type(err.value) is ModelFileError


PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


def _random_bytes() -> bytes:
    data = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    return b"\x13" + data[1:]


def _plain_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.md", "not a checkpoint")
    return buffer.getvalue()


def _pickled(obj) -> bytes:
    return pickle.dumps(obj, protocol=4)


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


BROKEN = {
    "empty": (".pkl", b"", "is empty"),
    "empty-pth": (".pth", b"", "is empty"),
    "png-renamed": (".pkl", PNG + bytes(200), "not a model file"),
    "random-bytes": (".pkl", _random_bytes(), "not a model file"),
    "text": (".pkl", b"hello, this is a README\n" * 10, "not a model file"),
    "yaml-config": (".pth", b"MODEL:\n  WEIGHTS: model.pkl\n", "not a model file"),
    "json": (".safetensors", json.dumps({"a": 1}).encode(), "not a model file"),
    "non-torch-zip": (".pth", _plain_zip(),
                      "a zip archive ('readme.md'), not a torch file: unzip it"),
    "safetensors-bad-header": (
        ".safetensors",
        (20).to_bytes(8, "little") + b"{not json at all}  ",
        "truncated or corrupt",
    ),
    "pickled-int": (".pkl", _pickled(42), "not a model file"),
    "pickled-list": (".pkl", _pickled([np.zeros(2)]), "not a model file"),
    "only-author": (".pkl", _pickled({"__author__": "x"}), "no weights found"),
    "empty-model": (".pkl", _pickled({"model": {}, "__author__": "x"}), "no weights found"),
    "model-is-a-string": (".pkl", _pickled({"model": "weights.pkl"}), "no weights found"),
    "trainer-without-model": (
        ".pth",
        _torch_bytes({"optimizer": {}, "iteration": 3}),
        "no weights found",
    ),
    "string-in-model": (".pkl", _pickled({"model": {PROBE: np.zeros(2), "name": "r50"}}), "'name'"),
    "nested-dict-in-model": (
        ".pkl",
        _pickled({"model": {PROBE: np.zeros(2), "sub": {"a": 1}}}),
        "'sub'",
    ),
    "python-float-in-model": (
        ".pth",
        _torch_bytes({"model": {PROBE: torch.zeros(2), "s": 0.5}}),
        "'s'",
    ),
    "complex-tensor": (
        ".pth",
        _torch_bytes({"model": {"c": torch.zeros(2, dtype=torch.cfloat)}}),
        "'c'",
    ),
    "string-array": (".pkl", _pickled({"model": {"names": np.array(["a", "b"])}}), "'<U1'"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_files(tmp_path, name):
    ext, data, message = BROKEN[name]
    path = tmp_path / f"{name}{ext}"
    path.write_bytes(data)
    with pytest.raises(ModelFileError) as err:
        read_checkpoint(path)
    text = str(err.value)
    assert path.name in text and message in text
    assert err.value.__cause__ is None  # one clear message, no chained traceback


@pytest.mark.parametrize("depth", [33, 1000, 300_000])
@pytest.mark.parametrize("top", [False, True])
def test_deeply_nested_keys_are_refused(tmp_path, depth, top):
    """A dict key nested 300,000 tuples deep (a 300 KB file) killed the process with a
    segfault while it was hashed, and 1,000 deep raised a RecursionError traceback."""
    deep = b"N" + b"\x85" * depth  # None in TUPLE1, depth times
    data = (b"\x80\x02}" + deep + b"K\x01s." if top else
            b"\x80\x02}X\x05\x00\x00\x00model}" + deep + b"K\x01ss.")
    path = tmp_path / "deep.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafeModelFileError, match="it asks for tuples over 10000 items or "
                                                   "nested over 32 deep"):
        read_checkpoint(path)
    nested = None
    for _ in range(32):  # 32 deep is a tuple key like any other
        nested = (nested,)
    path.write_bytes(pickle.dumps({nested: 1, "a": np.zeros(2, np.float32)}, protocol=2))
    with pytest.raises(ModelFileError, match="is a tuple, not a string"):
        read_checkpoint(path)


def _shared_tuple_key(levels: int) -> bytes:
    """A dict key of ``levels`` tuples, each holding the one below twice through the memo: a
    few hundred bytes whose hash takes 2**levels steps."""
    body = b"N"
    for k in range(levels):
        body += b"q" + bytes([k]) + b"h" + bytes([k]) + b"\x86"  # BINPUT k, BINGET k, TUPLE2
    return b"\x80\x02}X\x05\x00\x00\x00model}" + body + b"K\x01ss."


def test_a_key_that_repeats_a_shared_tuple_is_refused_before_it_is_hashed(tmp_path):
    """Depth alone let a 140-byte key through whose hash doubles with each of its 24 levels
    (the pickle memo repeats one tuple): refused by its size, counted through."""
    path = tmp_path / "shared.pkl"
    path.write_bytes(_shared_tuple_key(24))
    started = time.monotonic()
    with pytest.raises(UnsafeModelFileError, match="tuples over 10000 items"):
        read_checkpoint(path)
    assert time.monotonic() - started < 5


def _torch_with_data_pkl(tmp_path, data_pkl: bytes) -> Path:
    """A real torch.save zip whose data.pkl is replaced."""
    path = tmp_path / "real.pth"
    torch.save({"w": torch.zeros(2)}, path)
    with zipfile.ZipFile(path) as archive:
        entries = {e.filename: archive.read(e) for e in archive.infolist()}
    name = next(n for n in entries if n.endswith("/data.pkl"))
    entries[name] = data_pkl
    out = tmp_path / "swapped.pth"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for n, data in entries.items():
            archive.writestr(n, data)
    return out


@pytest.mark.parametrize("payload", ["deep", "shared"])
def test_torch_files_get_the_same_structure_limits(tmp_path, payload):
    """The limits were the .pkl reader's alone: the same 300 KB key in a .pth's data.pkl
    still segfaulted (torch's weights-only unpickler has none)."""
    data = (b"\x80\x02}" + b"N" + b"\x85" * 300_000 + b"K\x01s." if payload == "deep"
            else _shared_tuple_key(30))
    with pytest.raises(UnsafeModelFileError, match="unsafe torch file: it asks for tuples "
                                                   "over 10000 items"):
        read_checkpoint(_torch_with_data_pkl(tmp_path, data))


def test_a_legacy_torch_file_whose_bytes_look_like_a_zip_end_loads(tmp_path):
    """zipfile.is_zipfile is true for any file with 'PK\\x05\\x06' in its last 64 KiB: a
    legacy (non-zip) .pth holding the float 2.5e-35 was refused as a corrupt zip."""
    # the file ends with this tensor's bytes: a zip's end record 22 bytes before the end
    tail = bytes(10) + b"PK\x05\x06" + bytes(18)
    weight = torch.tensor(np.frombuffer(tail, np.float32).copy())
    path = tmp_path / "legacy.pth"
    torch.save({"w": weight}, path, _use_new_zipfile_serialization=False)
    assert zipfile.is_zipfile(path)
    assert torch.equal(read_checkpoint(path)["w"], weight)


def _zip_of(entries: dict, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            with archive.open(name, "w") as f:
                for start in range(0, len(data) if isinstance(data, bytes) else data, 1 << 20):
                    f.write(data[start:start + (1 << 20)] if isinstance(data, bytes)
                            else bytes(min(1 << 20, data - start)))
    return buffer.getvalue()


def test_a_compressed_torch_zip_is_refused_before_it_is_inflated(tmp_path):
    """A 1 MB .pth (torch.save of zeros, re-zipped with DEFLATE) took 1.3 GB of memory
    before its size was checked: now the zip's directory is read first."""
    data_pkl = pickle.dumps({"w": 1}, protocol=2)
    path = tmp_path / "bomb.pth"
    path.write_bytes(_zip_of({"archive/data.pkl": data_pkl, "archive/data/0": 200 << 20},
                             zipfile.ZIP_DEFLATED))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ModelFileError, match=r"its zip entries inflate to 200 MiB from a 0\.\d "
                                             r"MiB file .*a compression bomb") as err:
        read_checkpoint(path)
    assert path.name in str(err.value) and err.value.__cause__ is None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit's own
def test_a_torchscript_archive_is_named(tmp_path):
    """It was "truncated or corrupt torch file", quoting torch's advice about weights_only."""
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(ModelFileError, match="a TorchScript archive .torch.jit.save., not a "
                                             "checkpoint: save the model's state_dict"):
        read_checkpoint(path)


def test_links_pipes_and_long_names_are_named(tmp_path):
    """A symbolic-link loop raised RuntimeError from load_model (naming the other link) and
    "not found" elsewhere; a named pipe hung for ever; a name over the system's limit raised
    a bare OSError."""
    from pixellib.checkpoint.hub import resolve_model
    from pixellib.torchbackend.instance import instanceSegmentation

    (tmp_path / "loop1.pkl").symlink_to(tmp_path / "loop2.pkl")
    (tmp_path / "loop2.pkl").symlink_to(tmp_path / "loop1.pkl")
    for load in (read_checkpoint, lambda p: instanceSegmentation().load_model(str(p))):
        with pytest.raises(ModelFileError, match="loop1.pkl: a loop of symbolic links"):
            load(tmp_path / "loop1.pkl")
    (tmp_path / "dangling.pkl").symlink_to(tmp_path / "gone.pkl")
    with pytest.raises(ModelNotFoundError, match=r"dangling.pkl: model file not found \(a "
                                                 r"symbolic link to a missing file\)"):
        read_checkpoint(tmp_path / "dangling.pkl")
    os.mkfifo(tmp_path / "fifo.pkl")
    with pytest.raises(ModelFileError, match="fifo.pkl: not a regular file"):
        read_checkpoint(tmp_path / "fifo.pkl")  # at once: nothing is read from it
    long = str(tmp_path / ("x" * 300 + ".pkl"))
    for load in (read_checkpoint, resolve_model):
        with pytest.raises(ModelFileError, match=r"too long \(3\d\d characters\)"):
            load(long)
        with pytest.raises(ModelFileError, match="not a usable file name"):
            load(str(tmp_path / "a\x00b.pkl"))  # was a bare ValueError


def test_directory(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory") as err:
        read_checkpoint(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_missing_path_says_how_to_get_the_model(tmp_path):
    path = tmp_path / "pointrend_resnet50.pkl"
    with pytest.raises(ModelNotFoundError) as err:
        read_checkpoint(path)
    text = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert path.name in text and "pixellib download" in text
    assert MODEL_URLS["resnet50"] in text and MODEL_URLS["resnet101"] in text
    assert MODEL_URLS["resnet50"] == (
        "https://github.com/ayoolaolafenwa/PixelLib/releases/download/0.2.0/pointrend_resnet50.pkl"
    )


# --- valid files that are not the model ----------------------------------------------------


@pytest.fixture
def small_expected(monkeypatch):
    expected = {PROBE: (64, 64, 3, 3), POINT: (256, 336, 1), "roi_heads.box_head.fc1.bias": (4,)}
    monkeypatch.setattr(weights, "expected_shapes", lambda arch: expected)
    return expected


def _write(path: Path, shapes: dict) -> Path:
    arrays = {key: np.zeros(shape, np.float32) for key, shape in shapes.items()}
    path.write_bytes(pickle.dumps({"model": arrays, "__author__": "x"}, protocol=4))
    return path


def test_inspect_accepts_the_expected_shapes(tmp_path, small_expected):
    info = inspect_checkpoint(_write(tmp_path / "ok.pkl", small_expected))
    assert info.arch == "resnet50" and info.num_parameters == 64 * 64 * 9 + 256 * 336 + 4


def test_inspect_wrong_shapes_and_missing_keys(tmp_path, small_expected):
    shapes = dict(small_expected, **{POINT: (256, 335, 1)})
    del shapes["roi_heads.box_head.fc1.bias"]
    shapes["roi_heads.box_head.fc9.bias"] = (1,)
    path = _write(tmp_path / "wrong.pkl", shapes)
    with pytest.raises(ModelFileError) as err:
        inspect_checkpoint(path)
    text = str(err.value)
    assert text.startswith(str(path)) and "resnet50" in text
    assert f"{POINT}: file (256, 335, 1) vs model (256, 336, 1)" in text
    assert "missing (1): roi_heads.box_head.fc1.bias" in text
    assert "unexpected (1): roi_heads.box_head.fc9.bias" in text


def test_inspect_plain_mask_rcnn(tmp_path, small_expected):
    shapes = {PROBE: (64, 64, 3, 3), "roi_heads.mask_head.mask_fcn1.weight": (256, 256, 3, 3)}
    path = _write(tmp_path / "mask_rcnn_R_50_FPN_3x.pkl", shapes)
    with pytest.raises(ModelFileError, match="plain Mask R-CNN.*not a PointRend") as err:
        inspect_checkpoint(path)
    assert path.name in str(err.value)


def test_inspect_not_an_rcnn(tmp_path, small_expected):
    path = _write(tmp_path / "classifier.pkl", {"fc.weight": (10, 4)})
    with pytest.raises(ModelFileError, match="not a PointRend/R-CNN checkpoint") as err:
        inspect_checkpoint(path)
    assert path.name in str(err.value)
