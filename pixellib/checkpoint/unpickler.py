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


class _RestrictedUnpickler(pickle._Unpickler):
    dispatch = dict(pickle._Unpickler.dispatch)

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


#: The most a tuple (or frozenset) in a model file may hold, counting nested ones through
#: (a shared one each time it appears), and how deep they may nest. A model file's are a few
#: items, three deep; hashing one nested 300,000 deep as a dict key overflows the C stack (a
#: segfault), and one that repeats a shared tuple at every level takes exponential time.
MAX_TUPLE_ITEMS = 10_000
MAX_NESTING = 32

_TUPLES = ("TUPLE", "FROZENSET", "EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3")
_GETS = ("GET", "BINGET", "LONG_BINGET")
_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")


def check_structure(file: IO[bytes]) -> None:
    """Read one pickle's opcodes from ``file`` (without building anything) and raise
    :class:`Refused` for tuples or frozensets too large or too deep to hash safely (see
    :data:`MAX_TUPLE_ITEMS`). Other values count as one item; ``file`` ends after the pickle.
    Malformed input raises what :func:`pickletools.genops` raises."""
    import pickletools

    stack: list[tuple[int, int]] = []  # (items, depth) per stack entry; 1, 0 for non-tuples
    marks: list[int] = []
    memo: dict[Any, tuple[int, int]] = {}
    for opcode, arg, _ in pickletools.genops(file):
        name = opcode.name
        if name == "MARK":
            marks.append(len(stack))
            continue
        if name in _PUTS or name == "MEMOIZE":
            memo[arg if name in _PUTS else len(memo)] = stack[-1] if stack else (1, 0)
            continue
        if name in _GETS:
            stack.append(memo.get(arg, (1, 0)))
            continue
        before = opcode.stack_before
        if pickletools.markobject in before:
            start = marks.pop() if marks else 0
            items = stack[start:]
            del stack[start:]
            below = before.index(pickletools.markobject)  # taken from under the mark
        else:
            below = len(before)
            items = stack[len(stack) - below:] if below else []
        if below:
            del stack[-below:]
        if name in _TUPLES:
            size = 1 + sum(n for n, _ in items)
            depth = 1 + max((d for _, d in items), default=0)
            if size > MAX_TUPLE_ITEMS or depth > MAX_NESTING:
                raise Refused(f"tuples over {MAX_TUPLE_ITEMS} items or nested over "
                              f"{MAX_NESTING} deep")
            stack.append((size, depth))
        else:
            stack.extend([(1, 0)] * len(opcode.stack_after))


def load_restricted(file: IO[bytes]) -> Any:
    """Unpickle ``file`` allowing only numeric numpy arrays and plain containers.

    Raises :class:`Refused` before calling anything outside the allowlist; other malformed
    input raises whatever the pickle machinery raises (EOFError, UnpicklingError, ValueError...).
    """
    return _RestrictedUnpickler(file, encoding="latin1").load()
