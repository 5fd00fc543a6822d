"""What a data source yields before decoding: class names, per-split items and labels, a cheap content hash."""
from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autoft.data import transforms

__all__ = ["SplitName", "RawSplit", "Source", "IMAGE_EXTENSIONS", "is_hidden", "is_image_name", "is_image_file",
           "decode_file", "decode_file_sizes", "hash_files", "ArrayDecoder"]

# The one set of image suffixes (matched case-blind) that training and predict take from a folder.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})


class SplitName(str, Enum):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


@dataclass(frozen=True, eq=False)
class RawSplit:
    """Undecoded items (file paths, or raw image arrays) with their int64 labels, index-aligned."""

    items: Sequence[Any] | np.ndarray
    labels: np.ndarray

    def take(self, indices: np.ndarray) -> RawSplit:
        if isinstance(self.items, np.ndarray):
            items: Sequence[Any] | np.ndarray = self.items[indices]
        else:
            items = [self.items[i] for i in indices]
        return RawSplit(items, self.labels[indices])

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class Source:
    """A data source resolved to items. `splits` always holds TRAIN; VAL and TEST when the source has them."""

    description: str
    class_names: tuple[str, ...]
    splits: Mapping[SplitName, RawSplit]
    content_hash: str
    decode: Callable[[Any, int], np.ndarray]
    name_of: Callable[[Any], str] = str
    # one item at several sizes from one decode (see decode_sizes); None: ``decode`` once per size
    decode_sizes: Callable[[Any, tuple[int, ...]], list[np.ndarray]] | None = None

    def decode_many(self, item: Any, sizes: tuple[int, ...]) -> list[np.ndarray]:
        """``item`` preprocessed at each of ``sizes``, decoding it once where the source can."""
        if len(sizes) == 1 or self.decode_sizes is None:
            return [self.decode(item, size) for size in sizes]
        return self.decode_sizes(item, sizes)


def is_hidden(name: str) -> bool:
    """A name starting with "." — dot files and folders, and the macOS resource forks "._photo.jpg" beside copied
    photos, which carry an image suffix but hold no image — is skipped wherever a folder is walked."""
    return name.startswith(".")


def is_image_name(name: str) -> bool:
    """An image suffix (IMAGE_EXTENSIONS), hidden or not."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def is_image_file(path: Path) -> bool:
    """A name that a folder walk reads as an image: an image suffix and not hidden."""
    return is_image_name(path.name) and not is_hidden(path.name)


def decode_file(path: Path, image_size: int) -> np.ndarray:
    # Looked up on the module at call time so tests can observe (or forbid) decoding.
    return transforms.read_image(path, image_size)


def decode_file_sizes(path: Path, sizes: tuple[int, ...]) -> list[np.ndarray]:
    return transforms.read_images(path, sizes)


def hash_files(root: Path, class_names: Sequence[str], splits: Mapping[SplitName, RawSplit]) -> str:
    """sha256 over (split, relative path, size, mtime_ns, label) of every file: cheap, no decoding."""
    digest = hashlib.sha256()
    digest.update(repr(tuple(class_names)).encode())
    for split_name in sorted(splits, key=lambda s: s.value):
        split = splits[split_name]
        for path, label in zip(split.items, split.labels.tolist(), strict=True):
            stat = os.stat(path)
            rel = os.path.relpath(path, root)
            digest.update(f"{split_name.value}\0{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\0{label}\n".encode())
    return digest.hexdigest()


class ArrayDecoder:
    """Decodes items that are indices into a raw image array, loaded on first use (once, thread-safe)."""

    def __init__(self, load: Callable[[], np.ndarray]) -> None:
        self._load = load
        self._images: np.ndarray | None = None
        self._lock = threading.Lock()

    def images(self) -> np.ndarray:
        """The whole raw array (uint8 [N, H, W] or [N, H, W, C]), loaded on first use."""
        with self._lock:
            if self._images is None:
                self._images = self._load()
        return self._images

    def __call__(self, index: int, image_size: int) -> np.ndarray:
        return transforms.preprocess_image(Image.fromarray(self.images()[index]), image_size)

    def sizes(self, index: int, sizes: tuple[int, ...]) -> list[np.ndarray]:
        image = Image.fromarray(self.images()[index])
        return [transforms.preprocess_image(image, size) for size in sizes]
