"""Reading model files safely: the format from the first bytes, then a restricted unpickler
(``.pkl``), ``torch.load(weights_only=True)`` (torch files) or safetensors, and the weights
taken out of whatever layout holds them (docs/design.md, "Safe loading").

Nothing in a file is ever executed, and every failure is a :class:`ModelFileError` (or
:class:`UnsafeModelFileError`, :class:`ModelNotFoundError`) that names the file.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import re
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from pixellib.checkpoint import unpickler as _pickle
from pixellib.config import MODEL_URLS
from pixellib.errors import ModelFileError, ModelNotFoundError, UnsafeModelFileError
from pixellib.wording import short_repr, shortened

PathLike = str | os.PathLike

_ZIP_MAGIC = b"PK\x03\x04"
# Files a failed or mistaken download leaves behind, named in the error.
_OTHER_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x1f\x8b": "a gzip archive",
    b"<!DOCTYPE": "an HTML page",
    b"<html": "an HTML page",
}
# torch's legacy (non-zip) format starts with its magic number pickled at protocol 2.
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def read_checkpoint(path: PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.pkl``/``.pth``/``.safetensors`` model file into ``{name: float32 CPU tensor}``.

    Accepts the detectron2 model-zoo layout ``{"model": {...}, "__author__": ...}``, trainer
    checkpoints ``{"model": state_dict, "optimizer": ...}`` and bare state dicts. A ``module.``
    prefix on every key is stripped. Keys are not renamed here
    (see :func:`pixellib.checkpoint.state_dict.convert_state_dict`).
    Raises ModelNotFoundError, UnsafeModelFileError or ModelFileError, each naming the file.
    """
    file, kind = _sniff(path)
    if kind == "safetensors":
        obj = _load_safetensors(file)
    elif kind in ("zip", "torch-legacy"):
        obj = _load_torch(file, kind)
    else:
        obj = _load_pickle(file, known=kind == "pickle")
    weights = _weights_of(obj, file)
    _check_declared_size(weights, file)
    tensors = {key: to_tensor(value, key, file) for key, value in weights.items()}
    if all(key.startswith("module.") for key in tensors):
        tensors = {key[len("module.") :]: value for key, value in tensors.items()}
    return tensors


def unusable_name(file: PathLike, exc: Exception) -> ModelFileError | None:
    """The error for a name the system refuses before looking: a NUL byte (``ValueError``)
    or an over-long name; ``None`` for any other ``exc``."""
    name = os.fspath(file)
    if isinstance(exc, ValueError):
        return ModelFileError(f"{name!r}: not a usable file name ({exc})")
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return ModelFileError(f"{name[:60]!r}...: the file name is too long "
                              f"({len(name)} characters)")
    return None


def _sniff(path: PathLike) -> tuple[Path, str]:
    """The file and its format from its first bytes: zip, torch-legacy, pickle, safetensors or
    unknown. Raises for a missing, empty or unreadable path and for well-known non-models."""
    file = Path(os.fspath(path))
    try:
        mode = os.stat(file).st_mode
    except (ValueError, OSError) as exc:
        unusable = unusable_name(file, exc)
        if unusable is not None:
            raise unusable from None
        if exc.errno == errno.ELOOP:
            raise ModelFileError(f"{file}: a loop of symbolic links, not a model file") from None
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise ModelFileError(f"{file}: cannot be read ({exc.strerror})") from None
        broken = " (a symbolic link to a missing file)" if os.path.islink(file) else ""
        raise ModelNotFoundError(
            f"{file}: model file not found{broken}. Download it with `pixellib download "
            f"resnet50` (or `pixellib download resnet101`), or from PixelLib's releases: "
            f"{MODEL_URLS['resnet50']} and {MODEL_URLS['resnet101']}"
        ) from None
    if stat.S_ISDIR(mode):
        raise ModelFileError(f"{file}: is a directory, not a model file")
    if not stat.S_ISREG(mode):  # a pipe would hang or lose the bytes read to sniff it
        raise ModelFileError(f"{file}: not a regular file (a pipe, socket or device); save "
                             "the model to a file and pass that")
    try:
        with open(file, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise ModelFileError(f"{file}: cannot be read ({exc.strerror})") from None
    if not head:
        raise ModelFileError(f"{file}: is empty, not a model file (an interrupted download?)")
    if head.startswith(_ZIP_MAGIC):
        return file, "zip"
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return file, "torch-legacy"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return file, "pickle"
    # safetensors: little-endian u64 header length, then a JSON object.
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1:
        return file, "safetensors"
    for magic, what in _OTHER_MAGIC.items():
        if head.lower().startswith(magic.lower()):
            raise ModelFileError(f"{file}: not a model file: it is {what}")
    return file, "unknown"


def _short(exc: BaseException) -> str:
    text = shortened(str(exc).strip().splitlines()[0], 160) if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_pickle(file: Path, *, known: bool) -> Any:
    try:
        with open(file, "rb") as f:
            _pickle.check_structure(f)
            f.seek(0)
            return _pickle.load_restricted(f)
    except _pickle.Refused as exc:
        hint = ""
        if "'torch." in str(exc.args[0]):  # tensors pickled with plain pickle.dump
            hint = (" If you wrote it with pickle.dump, save it with torch.save(state_dict, "
                    "'model.pth') or `pixellib convert` it from the original instead.")
        raise UnsafeModelFileError(
            f"{file}: refused to load an unsafe pickle: it asks for {exc.args[0]}, but a model "
            f"file only holds numeric arrays. Nothing in it was run.{hint}"
        ) from None
    except Exception as exc:
        if known:
            raise ModelFileError(f"{file}: truncated or corrupt pickle ({_short(exc)})") from None
        raise ModelFileError(
            f"{file}: not a model file (neither a pickle, a torch zip nor safetensors; it may "
            f"also be truncated or corrupt)"
        ) from None


def _torch_reason(message: str) -> tuple[bool, str]:
    """(refused, reason) from torch's weights-only error, without its advice to turn it off."""
    found = re.search(r"GLOBAL ([\w.]+)|(unrecognized function [^\n]*)|(Can only [^\n]*)", message)
    if found:
        return True, f"it asks for {found.group(1)}" if found.group(1) else found.group(0)
    found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", message)
    return False, found.group(1).strip() if found else "refused by the weights-only unpickler"


# What a torch zip's entries may inflate to beyond the file's size (torch stores them
# uncompressed; weights compress little).
_ZIP_SLACK = 64 << 20


def _check_torch_zip(file: Path) -> None:
    """Refuse, from the zip's directory alone, what torch.load would unpack first and fail
    on, or fill the memory with: a compressed bomb, a TorchScript archive, a plain zip; then
    check the structure of its ``data.pkl``."""
    try:
        with zipfile.ZipFile(file) as archive:
            entry = _torch_zip_pickle(file, archive.infolist())
            with archive.open(entry) as f:
                _check_torch_pickle(file, io.BytesIO(f.read()))
    except (UnsafeModelFileError, ModelFileError):
        raise
    except Exception as exc:  # noqa: BLE001 - BadZipFile, NotImplementedError, OSError...
        raise ModelFileError(f"{file}: truncated or corrupt zip ({_short(exc)})") from None


def _torch_zip_pickle(file: Path, entries: list[zipfile.ZipInfo]) -> zipfile.ZipInfo:
    """The ``data.pkl`` entry of a torch zip, or a :class:`ModelFileError` saying what the
    zip is instead."""
    names = [e.filename for e in entries]
    pickles = [e for e in entries if e.filename.endswith("/data.pkl") or e.filename == "data.pkl"]
    if not pickles:
        shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
        raise ModelFileError(f"{file}: a zip archive ({shown or 'empty'}), not a torch file: "
                             "unzip it and pass the model file inside")
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise ModelFileError(
            f"{file}: a TorchScript archive (torch.jit.save), not a checkpoint: save the "
            "model's state_dict() with torch.save, or pass the original checkpoint")
    inflated = sum(e.file_size for e in entries)
    size = file.stat().st_size
    if inflated > 4 * size + _ZIP_SLACK:
        raise ModelFileError(
            f"{file}: its zip entries inflate to {inflated / 2**20:.0f} MiB from a "
            f"{size / 2**20:.1f} MiB file (torch stores them uncompressed): a compression "
            "bomb or a corrupt file, not a model file")
    return pickles[0]


def _check_torch_pickle(file: Path, f: IO[bytes], count: int = 1) -> None:
    """The structure check of :func:`unpickler.check_structure` on the next ``count``
    pickles of ``f`` (torch's own weights-only unpickler has no such limits)."""
    for _ in range(count):
        try:
            _pickle.check_structure(f)
        except _pickle.Refused as exc:
            raise UnsafeModelFileError(
                f"{file}: refused to load an unsafe torch file: it asks for {exc.args[0]}, "
                "but a model file only holds tensors. Nothing in it was run.") from None


def _load_torch(file: Path, kind: str) -> Any:
    if kind == "zip":
        _check_torch_zip(file)
    else:  # legacy: magic number, protocol, system info, the object, storage keys
        try:
            with open(file, "rb") as f:
                _check_torch_pickle(file, f, count=4)
        except (UnsafeModelFileError, ModelFileError):
            raise
        except Exception as exc:  # noqa: BLE001 - malformed: torch says it below
            raise ModelFileError(f"{file}: truncated or corrupt torch file "
                                 f"({_short(exc)})") from None
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused, reason = _torch_reason(str(exc))
        if refused:
            raise UnsafeModelFileError(
                f"{file}: refused to load an unsafe torch file: {reason.rstrip('.')}, but a model "
                f"file only holds tensors. Nothing in it was run."
            ) from None
        raise ModelFileError(f"{file}: truncated or corrupt torch file ({reason})") from None
    except Exception as exc:
        raise ModelFileError(f"{file}: truncated or corrupt torch file ({_short(exc)})") from None


def _load_safetensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(file, device="cpu")
    except Exception as exc:
        raise ModelFileError(f"{file}: truncated or corrupt safetensors ({_short(exc)})") from None


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, np.generic, torch.Tensor))


def _weights_of(obj: Any, file: Path) -> Mapping:
    """The state dict inside a loaded object: ``obj["model"]`` if present, else ``obj``."""
    if not isinstance(obj, dict):
        raise ModelFileError(
            f"{file}: not a model file: it holds a {type(obj).__name__}, not a dict of weights"
        )
    if "model" in obj:
        weights = obj["model"]
        if not isinstance(weights, dict):
            raise ModelFileError(
                f"{file}: no weights found: 'model' holds a {type(weights).__name__}, "
                f"not a dict of arrays"
            )
    else:
        weights = obj
        if not any(_is_array(value) for value in obj.values()):
            keys = ", ".join(short_repr(key) for key in list(obj)[:8]) or "none"
            raise ModelFileError(f"{file}: no weights found (top-level keys: {keys})")
    if not weights:
        raise ModelFileError(f"{file}: no weights found ('model' is empty)")
    return weights


# What the float32 weights may take beyond 4x the file's bytes (a uint8 array becomes 4x its
# size as float32; nothing a model file stores becomes more).
_SIZE_SLACK = 64 << 20


def _check_declared_size(weights: Mapping, file: Path) -> None:
    """Refuse, before converting anything, weights that declare far more float32 data than
    the file holds: one array referred to under many names (a 10 MB pickle made 2.6 GB) or
    tensors viewing one storage over and over (a 1.7 KB .pth declared 1.6 GB)."""
    elements = sum(int(v.numel()) if isinstance(v, torch.Tensor) else int(np.size(v))
                   for v in weights.values() if _is_array(v))
    try:
        size = file.stat().st_size
    except OSError:
        return
    if 4 * elements > 4 * size + _SIZE_SLACK:
        raise ModelFileError(
            f"{file}: its arrays declare {4 * elements / 2**20:.0f} MiB of float32 weights, "
            f"far more than the {size / 2**20:.1f} MiB file stores: arrays "
            "repeated under several names or views repeating their data, not a model file")


def to_tensor(value: Any, key: Any, file: Path) -> torch.Tensor:
    """``value`` as a float32 CPU tensor; refuses non-numeric data, views that repeat their
    storage (stride 0 or overlapping) and NaN or infinite weights, naming the file and key."""
    if not isinstance(key, str):
        raise ModelFileError(f"{file}: key {short_repr(key)} is a "
                             f"{type(key).__name__}, not a string")
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_complex() or value.is_quantized:
            raise ModelFileError(f"{file}: '{key}' is not a dense real tensor ({value.dtype})")
        if value.numel() * value.element_size() > value.untyped_storage().nbytes():
            raise ModelFileError(
                f"{file}: '{key}' declares {tuple(value.shape)} but its storage holds "
                f"{value.untyped_storage().nbytes()} bytes: a view repeating its data, not "
                "weights")
        tensor = value.detach().to("cpu", torch.float32).contiguous()
    elif isinstance(value, (np.ndarray, np.generic)):
        if value.dtype.kind not in "biuf":
            raise ModelFileError(f"{file}: '{key}' is a {value.dtype} array, not numeric")
        array = np.asarray(value, dtype=np.float32, order="C")
        if not array.flags.writeable:
            array = array.copy()
        tensor = torch.from_numpy(array)
    else:
        raise ModelFileError(
            f"{file}: '{key}' holds a {type(value).__name__}, not an array of weights")
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ModelFileError(f"{file}: '{key}' holds {bad} NaN or infinite values: the file "
                             "is damaged (the model would find nothing)")
    return tensor
