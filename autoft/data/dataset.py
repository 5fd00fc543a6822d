"""The loaded data: `Split` (images + labels) and `ImageData` (train/val/test + class names)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Split", "ImageData"]


# eq=False: numpy arrays have no single truth value, so field-wise __eq__ would raise.
@dataclass(frozen=True, eq=False)
class Split:
    """Preprocessed images, uint8 [N, S, S, 3] RGB (may be a read-only memmap), and int64 [N] labels."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[3] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, S, S, 3], got {self.images.dtype} {self.images.shape}")
        if self.labels.ndim != 1 or self.labels.dtype != np.int64:
            raise ValueError(f"labels must be int64 [N], got {self.labels.dtype} {self.labels.shape}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class ImageData:
    """A classification data set, decoded and resized, ready for training."""

    class_names: tuple[str, ...]
    train: Split
    val: Split
    test: Split | None
    fingerprint: str
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[1])
