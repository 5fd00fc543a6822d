"""Image decoding and preprocessing (PIL → uint8 RGB), normalisation and batch augmentation (numpy)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from autoft.errors import DataError

__all__ = ["preprocess_image", "read_image", "read_images", "normalize", "augment"]

_WHITE = (255, 255, 255)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode → RGB; transparency is composited on white, 16/32-bit and float scaled to 0..255."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode.startswith("I") or img.mode == "F":
        return Image.fromarray(_wide_to_uint8(np.asarray(img)), "L").convert("RGB")
    return img.convert("RGB")


def _wide_to_uint8(arr: np.ndarray) -> np.ndarray:
    # 16-bit files (mode I;16*, or I holding 0..65535) map by /257; data already within 0..255 is kept.
    arr = arr.astype(np.float64)
    if arr.max(initial=0) > 255:
        arr = arr / 257.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def preprocess_image(img: Image.Image, image_size: int) -> np.ndarray:
    """Convert to RGB, resize the shorter side to `image_size` (bilinear), centre-crop → uint8 [S, S, 3]."""
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    img = _to_rgb(img)
    width, height = img.size
    scale = image_size / min(width, height)
    new_w, new_h = max(image_size, round(width * scale)), max(image_size, round(height * scale))
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - image_size) // 2, (new_h - image_size) // 2
    img = img.crop((left, top, left + image_size, top + image_size))
    return np.asarray(img, dtype=np.uint8).copy()


def read_image(path: str | Path, image_size: int) -> np.ndarray:
    """Open an image file and preprocess it; DataError if it is not a readable image."""
    return read_images(path, (image_size,))[0]


def read_images(path: str | Path, sizes: Sequence[int]) -> list[np.ndarray]:
    """Decode an image file and preprocess it at each of ``sizes`` (one array per size, in that order), decoding it
    once for all of them — a JPEG once per draft scale its sizes need, so that each array is exactly what
    ``read_image`` gives at that size; DataError if it is not a readable image."""
    try:
        unique = sorted(set(sizes))
        if len(unique) == 1:  # read_image: one decode, no need to look at the file first
            groups = [unique]
        else:
            with Image.open(path) as img:
                groups = _draft_groups(img, unique)
        out: dict[int, np.ndarray] = {}
        for group in groups:
            with Image.open(path) as img:
                # JPEG can decode at 1/2..1/8 scale directly: much faster for photos far larger than S.
                img.draft("RGB", (max(group), max(group)))
                img = _to_rgb(ImageOps.exif_transpose(img))
                out.update((size, preprocess_image(img, size)) for size in group)
        return [out[size] for size in sizes]
    # A damaged file can make a PIL plugin raise almost anything (OSError, SyntaxError, struct.error,
    # IndexError, DecompressionBombError…); every one of them means "cannot use this file".
    except Exception as exc:  # noqa: BLE001
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable image ({reason})") from exc


def _draft_groups(img: Image.Image, sizes: Sequence[int]) -> list[list[int]]:
    """``sizes`` (distinct, ascending) grouped by the scale a JPEG's draft mode decodes them at (Pillow: the largest
    of 1/8, 1/4, 1/2, 1 that keeps both sides >= the size); one group for other formats."""
    if img.format != "JPEG":
        return [list(sizes)]
    width, height = img.size
    groups: dict[int, list[int]] = {}
    for size in sizes:
        fits = min(width // max(1, size), height // max(1, size))
        groups.setdefault(next((k for k in (8, 4, 2) if fits >= k), 1), []).append(size)
    return list(groups.values())


def _channel_vector(values: float | Sequence[float], name: str) -> np.ndarray:
    vec = np.asarray(values, dtype=np.float32).reshape(-1)
    if vec.size == 1:
        vec = np.repeat(vec, 3)
    if vec.size != 3:
        raise ValueError(f"{name} must have 1 or 3 values, got {vec.size}")
    return vec.reshape(3, 1, 1)


def normalize(batch: np.ndarray, mean: float | Sequence[float], std: float | Sequence[float]) -> np.ndarray:
    """uint8 [N, S, S, 3] → contiguous float32 [N, 3, S, S] as (x - mean) / std, on the 0..255 scale."""
    if batch.ndim != 4 or batch.shape[3] != 3:
        raise ValueError(f"batch must be [N, S, S, 3], got shape {batch.shape}")
    mean_v, std_v = _channel_vector(mean, "mean"), _channel_vector(std, "std")
    if np.any(std_v <= 0):
        raise ValueError(f"std must be > 0, got {std_v.reshape(-1).tolist()}")
    out = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
    out -= mean_v
    out /= std_v
    return out


def augment(batch: np.ndarray, rng: np.random.Generator, pad: int | None = None) -> np.ndarray:
    """Random crop after reflect padding (zero padding when pad >= S) and random horizontal flip.

    uint8 [N, S, S, 3] in and out; one gather for the whole batch.
    """
    if batch.ndim != 4 or batch.shape[1] != batch.shape[2]:
        raise ValueError(f"batch must be [N, S, S, C], got shape {batch.shape}")
    n, size = batch.shape[0], batch.shape[1]
    pad = max(1, size // 8) if pad is None else pad
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    mode = "reflect" if pad < size else "constant"
    padded = np.pad(batch, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
    offsets_y = rng.integers(0, 2 * pad + 1, size=n)
    offsets_x = rng.integers(0, 2 * pad + 1, size=n)
    flip = rng.random(n) < 0.5
    span = np.arange(size)
    rows = offsets_y[:, None] + span
    cols = offsets_x[:, None] + span
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
