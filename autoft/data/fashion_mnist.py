"""Fashion-MNIST (Zalando Research, MIT licence): idx file reader, class names, the full 70k data set."""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np

from autoft._fs import autoft_home
from autoft.data.source import ArrayDecoder, RawSplit, Source, SplitName
from autoft.errors import DataError

__all__ = ["CLASS_NAMES", "FILES", "SYSTEM_DIR", "read_idx", "find_fashion_mnist", "load_fashion_mnist"]

# Readable, filesystem- and label-safe versions of the official names (T-shirt/top … Ankle boot).
CLASS_NAMES = ("tshirt_top", "trouser", "pullover", "dress", "coat",
               "sandal", "shirt", "sneaker", "bag", "ankle_boot")
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) idx file of unsigned bytes, e.g. train-images-idx3-ubyte.gz → uint8 [N, 28, 28]."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path}: not an idx file of unsigned bytes (header {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_fashion_mnist() -> Path:
    """The folder holding the four idx files: $AUTOFT_HOME/datasets/fashion-mnist, else the Debian one."""
    candidates = [autoft_home() / "datasets" / "fashion-mnist", SYSTEM_DIR]
    for folder in candidates:
        if all((folder / name).is_file() for name in FILES.values()):
            return folder
    raise DataError(f"fashion-mnist: the files {', '.join(FILES.values())} are in none of "
                    f"{', '.join(map(str, candidates))} (Debian: apt install dataset-fashion-mnist)")


def load_fashion_mnist() -> Source:
    """All of Fashion-MNIST: 60,000 train (val is split from it) and the 10,000 official test images."""
    folder = find_fashion_mnist()
    train_labels = read_idx(folder / FILES["train_labels"]).astype(np.int64)
    test_labels = read_idx(folder / FILES["test_labels"]).astype(np.int64)
    n_train = len(train_labels)

    def load_images() -> np.ndarray:
        return np.concatenate([read_idx(folder / FILES["train_images"]), read_idx(folder / FILES["test_images"])])

    decoder = ArrayDecoder(load_images)
    return Source(
        description=f"fashion-mnist ({folder})",
        class_names=CLASS_NAMES,
        splits={
            SplitName.TRAIN: RawSplit(np.arange(n_train), train_labels),
            SplitName.TEST: RawSplit(np.arange(n_train, n_train + len(test_labels)), test_labels),
        },
        content_hash=_stat_hash(folder),
        decode=decoder,
        decode_sizes=decoder.sizes,
    )


def _stat_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in sorted(FILES.values()):
        stat = os.stat(folder / name)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
