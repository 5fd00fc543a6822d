"""Read Paddle ``.pdparams`` files into numpy arrays without running their pickles.

A ``.pdparams`` is a pickle written by ``paddle.save``: a dict of numpy arrays (``numpy._core.multiarray.
_reconstruct`` or numpy 1.x's ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``), in
protocol 4 (Paddle >= 2.0's default), 3 or 2 (which adds ``_codecs.encode`` for bytes). Two variants exist:
``paddle.save`` of a nested object stores each tensor as ``builtins.tuple((name, ndarray))``, and protocols 2/3
split an array over 1 GiB into ``key@@.<i>`` slices listed under ``UnpackBigParamInfor@@``.

The numpy callables are replaced by stand-ins that only record (dtype, byte order, shape, order, raw bytes);
numbers are made from the bytes after the pickle is done, and only for numeric dtypes: an object array
would unpickle arbitrary objects into the result.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from autoft.backbones.restricted_pickle import CONTAINERS, UNREADABLE, RestrictedUnpickler, first_line
from autoft.errors import WeightsError

__all__ = ["read_pdparams"]

_BIG = "UnpackBigParamInfor@@"  # sic: Paddle's spelling
_NUMERIC = re.compile(r"[biufc]\d{1,2}")  # numpy's pickled dtype codes: b1, i8, u1, f2, f4, c8, ...
_MAX_DIMS = 64  # numpy's own limit


class _Refused(Exception):
    """Raised by the stand-ins mid-pickle; read_pdparams turns it into a WeightsError naming the file."""


class _Dtype:
    """Stands in for ``numpy.dtype(code, align, copy)``; BUILD then sets the byte order."""

    def __init__(self, code: Any, *_flags: Any) -> None:
        if not isinstance(code, str) or not _NUMERIC.fullmatch(code):
            raise _Refused(f"array dtype {code!r:.40} is not numeric (only bool, int, uint, float and complex)")
        try:
            self.dtype = np.dtype(code)
        except TypeError:
            raise _Refused(f"array dtype {code!r} is not a numpy dtype") from None

    def __setstate__(self, state: Any) -> None:
        # (version, byte order, subarray, names, fields, elsize, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[1] not in ("<", ">", "|", "="):
            raise _Refused(f"array dtype state {state!r:.80} is not a plain numeric dtype")
        if any(part is not None for part in state[2:5]):
            raise _Refused(f"array dtype {self.dtype.str} has fields or a subarray (structured arrays are refused)")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


class _ArrayRef:
    """What ``_reconstruct(numpy.ndarray, ...)`` returns; BUILD fills in (shape, dtype, order, raw bytes)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    raw: bytes

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # (version, shape, dtype, is_fortran, raw)
        if not isinstance(state, tuple) or len(state) != 4:
            raise _Refused(f"array state {state!r:.80} is not numpy's")
        shape, dtype, fortran, raw = state
        if not isinstance(dtype, _Dtype):
            raise _Refused(f"array dtype {dtype!r:.40} is not numeric")
        if isinstance(raw, str):
            raw = raw.encode("latin1")  # a Python 2 pickle read with encoding="latin1"
        if not isinstance(raw, bytes):
            raise _Refused(f"array data is a {type(raw).__name__}, not bytes (object arrays are refused)")
        if not isinstance(shape, tuple) or len(shape) > _MAX_DIMS or not all(_is_size(n) for n in shape):
            raise _Refused(f"array shape {shape!r:.80} is not a tuple of sizes")
        self.shape, self.dtype, self.fortran, self.raw = shape, dtype.dtype, bool(fortran), raw


def _is_size(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


_NDARRAY = object()  # the only class _reconstruct may rebuild: subclasses (matrix, memmap, masked) have other names


def _reconstruct(cls: Any, *_args: Any) -> _ArrayRef:
    if cls is not _NDARRAY:
        raise _Refused("_reconstruct may rebuild numpy.ndarray only")
    return _ArrayRef()


_ALLOWED: dict[tuple[str, str], Any] = {
    **CONTAINERS,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy >= 2
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # numpy 1.x
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype,
}


def read_pdparams(path: str | Path) -> dict[str, np.ndarray]:
    """Return the arrays of a ``paddle.save`` state dict as ``{key: array}``, refusing anything but arrays."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        with open(path, "rb") as stream:
            # latin1, as paddle.load: Python 2 pickles store array bytes as str
            obj = RestrictedUnpickler(stream, path, _ALLOWED, reader=".pdparams", what="numeric arrays",
                                      encoding="latin1").load()
    except _Refused as exc:
        raise WeightsError(f"the .pdparams reader refuses {path}: {exc}") from None
    except UNREADABLE as exc:
        raise WeightsError(f"{path} is not a readable Paddle .pdparams file ({first_line(exc)})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a training checkpoint that wraps the weights
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    arrays = _arrays(obj, path)
    _join_slices(arrays, obj.get(_BIG), path)
    if not arrays:
        raise WeightsError(f"{path} holds no arrays")
    return arrays


def _arrays(state: dict[Any, Any], path: Path) -> dict[str, np.ndarray]:
    """The arrays of a state dict; the rest (paddle.save's StructuredToParameterName@@ table, ints) is dropped."""
    arrays: dict[str, np.ndarray] = {}
    done: dict[int, np.ndarray] = {}  # one array pickled under two keys is one object (pickle's memo)
    for key, value in state.items():
        ref = _array_ref(value)
        if ref is not None:
            if id(ref) not in done:
                done[id(ref)] = _materialise(ref, str(key), path)
                ref.raw = b""  # free the pickle's copy now: peak memory stays near one file, not two
            arrays[str(key)] = done[id(ref)]
    return arrays


def _array_ref(value: Any) -> _ArrayRef | None:
    """An array, or the ``(name, array)`` tuple paddle.save writes for a tensor; None for anything else."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        value = value[1]
    return value if isinstance(value, _ArrayRef) and hasattr(value, "raw") else None


def _materialise(ref: _ArrayRef, key: str, path: Path) -> np.ndarray:
    expected = math.prod(ref.shape) * ref.dtype.itemsize
    if len(ref.raw) != expected:
        raise WeightsError(f"{path}: array {key} {ref.shape} {ref.dtype} has {len(ref.raw)} bytes, "
                           f"expected {expected}")
    flat = np.frombuffer(ref.raw, dtype=ref.dtype)
    array = flat.reshape(ref.shape, order="F" if ref.fortran else "C")
    # a C-ordered, native-endian copy that owns its memory (frombuffer's view is read-only)
    return np.array(array, dtype=ref.dtype.newbyteorder("="), order="C", copy=True)


def _join_slices(arrays: dict[str, np.ndarray], info: Any, path: Path) -> None:
    """Protocols 2/3 split an array over 1 GiB into ``key@@.<i>`` slices; put each back together."""
    if info is None:
        return
    if not isinstance(info, dict):
        raise WeightsError(f"{path}: {_BIG} is a {type(info).__name__}, not a dict")
    for key, entry in info.items():
        try:
            shape = tuple(entry["OriginShape"])
            parts = [arrays.pop(str(name)) for name in entry["slices"]]
            joined = np.empty(shape, dtype=parts[0].dtype)
            np.concatenate(parts, out=joined.reshape(-1))  # straight into place: no second copy of a big array
            arrays[str(key)] = joined
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise WeightsError(f"{path}: the slices of big array {key!s:.80} do not join "
                               f"({first_line(exc)})") from None
