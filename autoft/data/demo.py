"""The bundled demo set: 300 train + 100 val images per class of Fashion-MNIST, 28x28 grayscale."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from autoft.data.fashion_mnist import CLASS_NAMES
from autoft.data.source import ArrayDecoder, RawSplit, Source, SplitName
from autoft.errors import DataError

__all__ = ["DEMO_NPZ", "load_demo"]

DEMO_NPZ = Path(__file__).with_name("fashion_mnist_demo.npz")


def load_demo() -> Source:
    """The bundled subset (made by scripts/make_demo_subset.py); its fingerprint is the npz's sha256."""
    if not DEMO_NPZ.is_file():
        raise DataError(f"{DEMO_NPZ}: bundled demo data is missing; run scripts/make_demo_subset.py")
    with np.load(DEMO_NPZ) as npz:
        train_labels = npz["y_train"].astype(np.int64)
        val_labels = npz["y_val"].astype(np.int64)
    n_train = len(train_labels)

    def load_images() -> np.ndarray:
        with np.load(DEMO_NPZ) as npz:
            return np.concatenate([npz["x_train"], npz["x_val"]])

    decoder = ArrayDecoder(load_images)
    return Source(
        description="fashion-mnist-demo (bundled)",
        class_names=CLASS_NAMES,
        splits={
            SplitName.TRAIN: RawSplit(np.arange(n_train), train_labels),
            SplitName.VAL: RawSplit(np.arange(n_train, n_train + len(val_labels)), val_labels),
        },
        content_hash=hashlib.sha256(DEMO_NPZ.read_bytes()).hexdigest(),
        decode=decoder,
        decode_sizes=decoder.sizes,
    )
