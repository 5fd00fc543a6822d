"""Where weights live and how they get there: the autoft cache, md5-checked downloads, safetensors caching.

Everything autoft caches lives under ``autoft_home()``; weights under ``<home>/weights/``. Files are written
to a temporary name in the same folder and renamed into place, so a crash never leaves a half file that a
later run would trust.
"""
from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from autoft._fs import atomic_write, autoft_home
from autoft.backbones.pdparams import read_pdparams
from autoft.backbones.pth import read_pth
from autoft.errors import WeightsError

__all__ = [
    "autoft_home",
    "weights_dir",
    "md5sum",
    "download",
    "fetch",
    "read_pth",
    "read_pdparams",
    "save_safetensors",
    "load_safetensors",
    "cached_safetensors",
]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def weights_dir() -> Path:
    return autoft_home() / "weights"


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, md5: str | None, dest: str | Path, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (temp file + rename), checking its md5 when given; returns ``dest``."""
    dest = Path(dest)

    def write(f: IO[bytes]) -> None:
        digest = hashlib.md5()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(block)
                    f.write(block)
        except urllib.error.HTTPError as exc:
            raise WeightsError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise WeightsError(f"cannot download {url}: {reason}") from exc
        if md5 is not None and digest.hexdigest() != md5:
            raise WeightsError(f"{url} downloaded with md5 {digest.hexdigest()}, expected {md5}")

    log.info("downloading %s to %s", url, dest)
    atomic_write(dest, write)
    return dest


def fetch(what: str, url: str, md5: str) -> Path:
    """Return the cached copy of ``url`` under ``weights_dir()``, downloading it (md5-checked) if needed.

    ``what`` names the weights in the error raised when the file is neither cached nor downloadable.
    """
    dest = weights_dir() / url.rsplit("/", 1)[-1]
    if dest.is_file() and md5sum(dest) == md5:
        return dest
    try:
        return download(url, md5, dest)
    except WeightsError as exc:
        reason = str(exc).removeprefix(f"cannot download {url}: ")
        raise WeightsError(
            f"{what} are not cached and cannot be downloaded ({reason}): download {url} and put it at {dest}"
        ) from exc


def save_safetensors(tensors: dict[str, np.ndarray], dest: str | Path) -> None:
    """Write ``tensors`` as a safetensors file, atomically."""
    from safetensors.numpy import save

    data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()})
    atomic_write(Path(dest), lambda f: f.write(data))


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"cannot read safetensors file {path}: {exc}") from exc


def cached_safetensors(name: str, produce: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``<weights_dir>/<name>.safetensors`` if present, else ``produce()`` once and cache the result there.

    Converting a .pth or .pdparams takes seconds of allow-list unpickling; the safetensors copy loads in
    milliseconds.
    """
    path = weights_dir() / f"{name}.safetensors"
    if path.is_file():
        return load_safetensors(path)
    tensors = produce()
    save_safetensors(tensors, path)
    log.info("cached converted weights at %s", path)
    return tensors
