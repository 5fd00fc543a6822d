"""Read PyTorch ``.pth`` checkpoints into numpy arrays without torch and without running their pickles.

A ``.pth`` is a pickle, and unpickling runs whatever callables it names. This reader lets the pickle name only
tensor-rebuild functions, storage classes and plain containers; the rebuild functions are replaced by our own
that record (storage, offset, size, stride), and the raw bytes are only turned into arrays after the pickle is
done. Both of torch's layouts are read: the zip archive (torch >= 1.6) and the legacy stream of pickles.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoft.backbones.restricted_pickle import CONTAINERS, UNREADABLE, RestrictedUnpickler, first_line, text
from autoft.errors import WeightsError

__all__ = ["read_pth"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_BFLOAT16 = "bfloat16"  # numpy has no bfloat16: read as uint16, widen to float32 afterwards

_STORAGE_DTYPES: dict[str, Any] = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": _BFLOAT16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}


@dataclass
class _Storage:
    """A storage named by the pickle; its bytes arrive later (legacy) or from the archive (zip)."""

    key: str
    dtype: Any
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _StorageType:
    """Stands in for ``torch.FloatStorage`` & co: the pickle only uses it as a tag in persistent ids."""

    def __init__(self, name: str) -> None:
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor_v2(storage: _Storage, offset: int, size: Any, stride: Any, *_ignored: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: _TensorRef, *_ignored: Any) -> _TensorRef:
    return data


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any) -> _TensorRef:
    return _rebuild_tensor_v2(storage, offset, size, stride)


_ALLOWED: dict[tuple[str, str], Any] = {
    **CONTAINERS,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
for _name in _STORAGE_DTYPES:
    _ALLOWED[("torch", _name)] = _StorageType(_name)
_ALLOWED[("torch.storage", "UntypedStorage")] = _StorageType("UntypedStorage")


class _SafeUnpickler(RestrictedUnpickler):
    def __init__(self, stream: io.BufferedIOBase, source: Path, storages: dict[str, _Storage]) -> None:
        super().__init__(stream, source, _ALLOWED, reader=".pth", what="tensors")
        self._storages = storages

    def persistent_load(self, pid: Any) -> _Storage:
        # zip: ('storage', type, key, location, numel); legacy adds view_metadata (always None since torch 0.4).
        if not isinstance(pid, tuple) or len(pid) < 5 or text(pid[0]) != "storage":
            raise WeightsError(f"{self.source} has an unsupported persistent id {pid!r:.80}")
        storage_type, key, numel = pid[1], text(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise WeightsError(f"{self.source} names a storage of unknown type {storage_type!r:.80}")
        if len(pid) > 5 and pid[5] is not None:
            raise WeightsError(f"{self.source} uses storage views, which this reader does not support")
        if key not in self._storages:
            self._storages[key] = _Storage(key, storage_type.dtype, numel)
        return self._storages[key]


def read_pth(path: str | Path) -> dict[str, np.ndarray]:
    """Return the tensors of a torch ``.pth`` state dict as ``{key: array}``, refusing anything but tensors."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    storages: dict[str, _Storage] = {}
    try:
        obj = _read_zip(path, storages) if zipfile.is_zipfile(path) else _read_legacy(path, storages)
    except UNREADABLE + (zipfile.BadZipFile,) as exc:
        raise WeightsError(f"{path} is not a readable torch checkpoint ({first_line(exc)})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a training checkpoint that wraps the weights
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    out = {str(k): _materialise(v, path) for k, v in obj.items() if isinstance(v, _TensorRef)}
    if not out:
        raise WeightsError(f"{path} holds no tensors")
    return out


def _read_zip(path: Path, storages: dict[str, _Storage]) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise WeightsError(f"{path} is a zip file but not a torch checkpoint (no data.pkl)")
        prefix = pkl[: -len("data.pkl")]
        with archive.open(pkl) as stream:
            obj = _SafeUnpickler(stream, path, storages).load()  # type: ignore[arg-type]
        for storage in storages.values():
            raw = archive.read(f"{prefix}data/{storage.key}")
            storage.data = _from_bytes(raw, storage, path)
    return obj


def _read_legacy(path: Path, storages: dict[str, _Storage]) -> Any:
    with open(path, "rb") as stream:
        if _plain_load(stream, path) != _LEGACY_MAGIC:
            raise WeightsError(f"{path} is not a torch checkpoint (bad magic number)")
        _plain_load(stream, path)  # protocol version
        sys_info = _plain_load(stream, path)
        if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
            raise WeightsError(f"{path} was saved on a big-endian machine, which is not supported")
        obj = _SafeUnpickler(stream, path, storages).load()
        for key in _plain_load(stream, path):
            storage = storages[text(key)]
            count = int(np.frombuffer(stream.read(8), dtype="<i8")[0])
            itemsize = 2 if storage.dtype == _BFLOAT16 else np.dtype(storage.dtype).itemsize
            storage.data = _from_bytes(stream.read(count * itemsize), storage, path)
    return obj


def _plain_load(stream: io.BufferedIOBase, path: Path) -> Any:
    """The legacy header pickles hold only ints and dicts; they go through the same allow-list."""
    return _SafeUnpickler(stream, path, {}).load()


def _from_bytes(raw: bytes, storage: _Storage, path: Path) -> np.ndarray:
    dtype = np.uint16 if storage.dtype == _BFLOAT16 else np.dtype(storage.dtype).newbyteorder("<")
    if len(raw) % np.dtype(dtype).itemsize:
        raise WeightsError(f"{path}: storage {storage.key} is truncated")
    array = np.frombuffer(raw, dtype=dtype)
    if array.size < storage.numel:
        raise WeightsError(f"{path}: storage {storage.key} has {array.size} of {storage.numel} elements")
    if storage.dtype == _BFLOAT16:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _materialise(ref: _TensorRef, path: Path) -> np.ndarray:
    flat = ref.storage.data
    if flat is None:
        raise WeightsError(f"{path}: storage {ref.storage.key} is named but its data is missing")
    if any(s < 0 for s in ref.stride) or len(ref.size) != len(ref.stride) or ref.offset < 0:
        raise WeightsError(f"{path}: a tensor has an invalid layout {ref.size}/{ref.stride}")
    if 0 in ref.size:
        return np.zeros(ref.size, dtype=flat.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= flat.size:  # as_strided would read past the buffer
        raise WeightsError(f"{path}: a tensor reaches past the end of storage {ref.storage.key}")
    strides = tuple(s * flat.itemsize for s in ref.stride)
    view = np.lib.stride_tricks.as_strided(flat[ref.offset :], shape=ref.size, strides=strides)
    return np.array(view, order="C", copy=True)  # own the memory: tensors may share one storage
