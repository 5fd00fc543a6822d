"""Fixtures and helpers for the backbone tests: an isolated autoft home, photo preprocessing, .pth writers."""
from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import pytest

# The shared reference sits beside the clone (../shared) in CI and in the dev workspace.
SHARED_REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "efficientnet_lite0_reference.npz"
DATA = Path(__file__).parent / "data"


@pytest.fixture
def autoft_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty AUTOFT_HOME for one test."""
    home = tmp_path / "autoft-home"
    monkeypatch.setenv("AUTOFT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An AUTOFT_HOME kept for the session, so converted ImageNet weights are converted once per run."""
    home = tmp_path_factory.mktemp("autoft-home-shared")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOFT_HOME", str(home))
        yield home


def photo_crop(name: str, size: int) -> np.ndarray:
    """skimage photo -> uint8 HWC: shorter side to round(256*size/224) (PIL bilinear), centre crop ``size``.

    The reference README's preprocessing, generalised from 224 to other sizes.
    """
    from PIL import Image
    from skimage import data

    image = Image.fromarray(getattr(data, name)()).convert("RGB")
    short = round(256 * size / 224)
    w, h = image.size
    scale = short / min(w, h)
    image = image.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BILINEAR)
    w, h = image.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    return np.asarray(image.crop((left, top, left + size, top + size)))


def to_input(crops: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW normalised the EfficientNet-Lite way: (x - 127) / 128."""
    return ((crops.astype(np.float32) - 127.0) / 128.0).transpose(0, 3, 1, 2).copy()


# --- hand-written torch checkpoints (pickle protocol 2 opcodes, no torch) ---------------------------------

def op_str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def op_int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def op_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


def pickle_state_dict(entries: list[tuple[str, str, str, int, int, tuple[int, ...], tuple[int, ...]]],
                      legacy: bool) -> bytes:
    """OrderedDict of tensors; entry = (key, storage class, storage key, numel, offset, size, stride)."""
    empty_ordered_dict = op_global("collections", "OrderedDict") + b")R"
    body = b""
    for key, storage_cls, storage_key, numel, offset, size, stride in entries:
        pid_items = [op_str("storage"), op_global("torch", storage_cls), op_str(storage_key), op_str("cpu"),
                     op_int(numel)]
        if legacy:
            pid_items.append(b"N")  # view_metadata
        storage = op_tuple(*pid_items) + b"Q"  # BINPERSID
        args = op_tuple(storage, op_int(offset), op_tuple(*map(op_int, size)), op_tuple(*map(op_int, stride)),
                        b"\x89", empty_ordered_dict)
        body += op_str(key) + op_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"
    return b"\x80\x02" + empty_ordered_dict + b"(" + body + b"u."


def forbidden_pickle(module: str, name: str, argument: str) -> bytes:
    """A pickle that calls module.name(argument) when loaded by a plain unpickler."""
    return b"\x80\x02" + op_global(module, name) + op_str(argument) + b"\x85R."


def write_zip_pth(path: Path, data_pkl: bytes, storages: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/version", b"3\n")
        for key, raw in storages.items():
            archive.writestr(f"archive/data/{key}", raw)
    return path


def write_legacy_pth(path: Path, main_pkl: bytes, storages: dict[str, tuple[int, bytes]]) -> Path:
    """magic, protocol, sys_info, the main pickle, the storage keys, then each storage as numel + bytes."""
    import pickle

    out = io.BytesIO()
    out.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
    out.write(pickle.dumps(1001, protocol=2))
    out.write(pickle.dumps({"protocol_version": 1001, "little_endian": True,
                            "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
    out.write(main_pkl)
    out.write(pickle.dumps(list(storages), protocol=2))
    for numel, raw in storages.values():
        out.write(struct.pack("<q", numel) + raw)
    path.write_bytes(out.getvalue())
    return path


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    """This file's helpers as a fixture: importing them from "conftest" breaks once several conftests exist."""
    return SimpleNamespace(
        photo_crop=photo_crop, to_input=to_input, shared_reference=SHARED_REFERENCE, data=DATA,
        pickle_state_dict=pickle_state_dict, forbidden_pickle=forbidden_pickle,
        write_zip_pth=write_zip_pth, write_legacy_pth=write_legacy_pth,
    )  # fmt: skip
