"""A restricted unpickler for detectron2 model-zoo ``.pkl`` files (docs/design.md, "Safe loading").

detectron2 reads these files with a plain ``pickle.load(f, encoding="latin1")``, which runs
whatever callables the file names. A model-zoo file only needs numpy arrays inside dicts, so
this unpickler resolves a short allowlist of globals to *checked* stand-ins and refuses
everything else before it is called:

* ``find_class`` knows only numpy's array/dtype/scalar reconstruction, ``_codecs.encode``
  (protocol-2 pickles from Python 3 store bytes that way) and ``collections.OrderedDict``.
* dtypes must be plain bool/int/uint/float: object dtypes are refused when the dtype is built,
  so the elements of an object array (which could hold a nested payload) are never reached.
* ``BUILD`` is allowed only on arrays and dtypes, and the state is checked first: numpy lets a
  pickled dtype carry arbitrary flags, and an array whose dtype claims to hold Python objects
  would turn raw bytes into object pointers.

The pure-Python ``pickle._Unpickler`` is used because its opcode table can be extended; the
files hold a few hundred large byte strings, so speed is the same as the C unpickler.
"""

from __future__ import annotations

import collections
import pickle
from typing import IO, Any

import numpy as np

_PLAIN_KINDS = "biuf"  # bool, signed int, unsigned int, float
# dtype flags that mean "holds Python objects" (NPY_ITEM_REFCOUNT, NPY_LIST_PICKLE,
# NPY_ITEM_IS_POINTER); numpy's dtype.__setstate__ takes them from the file as they are.
_OBJECT_FLAGS = 0x01 | 0x02 | 0x04


class Refused(Exception):
    """The pickle asked for something that is not plain array data; ``args[0]`` names it."""


class _NdarrayToken:
    """Stands in for ``numpy.ndarray``: only ``_reconstruct`` accepts it, nothing can call it."""


_NDARRAY = _NdarrayToken()


def _plain_dtype(dtype: Any) -> np.dtype:
    if isinstance(dtype, np.dtype):
        _check_plain(dtype)
        return dtype
    return _make_dtype(dtype)


def _check_plain(dtype: np.dtype) -> None:
    if dtype.hasobject or dtype.kind not in _PLAIN_KINDS or dtype.fields or dtype.subdtype:
        raise Refused(f"an array of dtype {dtype.str!r}")


def _make_dtype(obj: Any, align: bool = False, copy: bool = True) -> np.dtype:
    """``numpy.dtype(obj, align, copy)``, always copying so BUILD never edits numpy's singletons."""
    if not isinstance(obj, (str, bytes)):
        raise Refused(f"a dtype built from {type(obj).__name__}")
    try:
        text = obj.decode("latin1") if isinstance(obj, bytes) else obj
        result = np.dtype(text, bool(align), True)
    except TypeError as exc:
        raise Refused(f"dtype {obj!r}") from exc
    _check_plain(result)
    return result


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct``: the empty placeholder that BUILD then fills."""
    if subtype is not _NDARRAY:
        raise Refused("an array of a subclass other than numpy.ndarray")
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise Refused(f"an array placeholder of shape {shape!r}")
    if np.prod(shape) != 0:
        raise Refused(f"a non-empty array placeholder of shape {shape!r}")
    return np.empty(shape, dtype=_plain_dtype(dtype))


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """``numpy.core.numeric._frombuffer``: how numpy pickles arrays at protocol 5."""
    if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, np.dtype):
        raise Refused("a protocol-5 array built from non-bytes data")
    _check_plain(dtype)
    if not isinstance(shape, tuple) or order not in ("C", "F"):
        raise Refused(f"a protocol-5 array with shape {shape!r} and order {order!r}")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _scalar(dtype: Any, data: Any) -> np.generic:
    """``numpy.core.multiarray.scalar``: a numpy scalar from its raw bytes."""
    if not isinstance(dtype, np.dtype):
        raise Refused("a numpy scalar without a dtype")
    _check_plain(dtype)
    if isinstance(data, str):
        data = data.encode("latin1")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise Refused("a numpy scalar built from non-bytes data")
    return np.frombuffer(data, dtype=dtype)[0]


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode(text, "latin1")``: protocol-2 pickles store ``bytes`` this way."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {("collections", "OrderedDict"): collections.OrderedDict}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _reconstruct
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = _scalar
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _frombuffer
_ALLOWED[("numpy", "ndarray")] = _NDARRAY
_ALLOWED[("numpy", "dtype")] = _make_dtype
_ALLOWED[("_codecs", "encode")] = _encode


def _check_array_state(state: Any) -> None:
    # ndarray.__setstate__ takes (version, shape, dtype, is_fortran, data) or the 4-tuple
    # without version; object arrays pickle ``data`` as a list, plain ones as bytes.
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise Refused("an array with an unexpected pickled state")
    dtype, data = state[-3], state[-1]
    if not isinstance(dtype, np.dtype):
        raise Refused("an array without a dtype")
    _check_plain(dtype)
    if not isinstance(data, (bytes, bytearray, str)):
        raise Refused(f"an array whose data is a {type(data).__name__}")


def _check_dtype_state(state: Any) -> None:
    # dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags, ...)
    if not isinstance(state, tuple) or len(state) < 8:
        raise Refused("a dtype with an unexpected pickled state")
    if state[2:5] != (None, None, None):
        raise Refused("a structured dtype")
    flags = state[7]
    if type(flags) is not int or flags & _OBJECT_FLAGS:
        raise Refused(f"a dtype with object flags {flags!r}")


#: How deep tuples and frozensets may nest (a model file's are flat). Hashing one nested
#: hundreds of thousands deep, as a dict key, overflows the C stack: the process dies.
MAX_NESTING = 32

_TUPLE_OPCODES = (pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.FROZENSET)


class _RestrictedUnpickler(pickle._Unpickler):
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # id -> (object, depth) of each tuple and frozenset built (kept alive: ids stay
        # unique); anything else counts as depth 0.
        self._nesting: dict[int, tuple[Any, int]] = {}

    def _depth(self, obj: Any) -> int:
        entry = self._nesting.get(id(obj))
        return entry[1] if entry is not None and entry[0] is obj else 0

    def _checked_nesting(self, opcode_load) -> None:
        opcode_load(self)
        built = self.stack[-1]
        if isinstance(built, (tuple, frozenset)) and built:
            depth = 1 + max(self._depth(item) for item in built)
            if depth > MAX_NESTING:
                raise Refused(f"tuples nested over {MAX_NESTING} deep")
            self._nesting[id(built)] = (built, depth)

    for _opcode in _TUPLE_OPCODES:
        dispatch[_opcode[0]] = (lambda load: lambda self: self._checked_nesting(load))(
            dispatch[_opcode[0]])
    del _opcode

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise Refused(f"the global '{module}.{name}'") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not supported")

    def load_build(self) -> None:
        state, inst = self.stack[-1], self.stack[-2]
        if type(inst) is np.ndarray:
            _check_array_state(state)
        elif isinstance(inst, np.dtype):
            _check_dtype_state(state)
        else:
            raise Refused(f"setting the state of a {type(inst).__name__}")
        super().load_build()
        if isinstance(inst, np.dtype):
            _check_plain(inst)

    dispatch[pickle.BUILD[0]] = load_build


def load_restricted(file: IO[bytes]) -> Any:
    """Unpickle ``file`` allowing only numeric numpy arrays and plain containers.

    Raises :class:`Refused` before calling anything outside the allowlist; other malformed
    input raises whatever the pickle machinery raises (EOFError, UnpicklingError, ValueError...).
    """
    return _RestrictedUnpickler(file, encoding="latin1").load()
