"""A bundle is a folder: model.safetensors + bundle.json. Saving is atomic; loading never unpickles.

This module imports neither paddle nor ray: weights travel as numpy arrays.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoft.errors import BundleError
from autoft.fileio import atomic_write_json

__all__ = ["BundleMeta", "Bundle", "save_bundle", "load_bundle", "is_bundle", "copy_bundle", "WEIGHTS_FILE", "META_FILE"]

WEIGHTS_FILE = "model.safetensors"
META_FILE = "bundle.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class BundleMeta:
    backbone: str
    num_classes: int
    class_names: tuple[str, ...]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    hparams: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    num_train_samples: int = 0
    autoft_version: str = ""
    paddle_version: str = ""
    created: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.num_classes != len(self.class_names):
            raise BundleError(f"bundle: num_classes={self.num_classes} but {len(self.class_names)} class names")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["class_names"] = list(self.class_names)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], where: str) -> BundleMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("backbone", "num_classes", "class_names", "image_size", "mean", "std") if k not in raw]
        if missing:
            raise BundleError(f"{where}: bundle.json lacks {', '.join(missing)}")
        kwargs = {k: v for k, v in raw.items() if k in names}
        for key in ("class_names", "mean", "std"):
            kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)


@dataclass(frozen=True)
class Bundle:
    path: Path
    meta: BundleMeta

    def weights(self) -> dict[str, np.ndarray]:
        from safetensors.numpy import load_file

        try:
            return load_file(str(self.path / WEIGHTS_FILE))
        except Exception as exc:  # safetensors raises its own error types
            raise BundleError(f"{self.path / WEIGHTS_FILE}: cannot read weights ({exc})") from None


def _versions() -> tuple[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def get(*names: str) -> str:
        for name in names:
            try:
                return version(name)
            except PackageNotFoundError:
                continue
        return ""

    return get("autoft"), get("paddlepaddle", "paddlepaddle-gpu")


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Swap a fully written folder into place; readers see the old bundle or the new one, never half of one."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dest, old)
    os.rename(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_bundle(path: str | Path, weights: Mapping[str, np.ndarray], meta: BundleMeta) -> Path:
    from safetensors.numpy import save_file

    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    autoft_v, paddle_v = _versions()
    meta = dataclasses.replace(meta, autoft_version=meta.autoft_version or autoft_v,
                               paddle_version=meta.paddle_version or paddle_v,
                               created=meta.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        arrays = {k: np.ascontiguousarray(v) for k, v in weights.items()}
        save_file(arrays, str(tmp / WEIGHTS_FILE))
        atomic_write_json(tmp / META_FILE, meta.to_json())
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def copy_bundle(src: str | Path, dest: str | Path) -> Path:
    """Copy a bundle folder atomically (used to promote the winner to best_model/)."""
    src, dest = Path(src), Path(dest)
    load_bundle(src)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def is_bundle(path: str | Path) -> bool:
    path = Path(path)
    return (path / META_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def load_bundle(path: str | Path) -> Bundle:
    """Read bundle.json; weights are read on demand by Bundle.weights()."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle folder")
    if not is_bundle(path):
        raise BundleError(f"{path}: not a bundle (needs {META_FILE} and {WEIGHTS_FILE}); "
                          "give a run's best_model/ folder or a trial's bundle/")
    try:
        raw = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path / META_FILE}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{path / META_FILE}: must hold a JSON object")
    try:
        return Bundle(path=path, meta=BundleMeta.from_json(raw, str(path)))
    except TypeError as exc:
        raise BundleError(f"{path / META_FILE}: invalid field ({exc})") from None
