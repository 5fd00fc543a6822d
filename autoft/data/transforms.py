"""Image files → the model's uint8 input, one path for training, its caches and predict; normalisation and batch
augmentation (numpy).

``read_images`` is that path, in this order: the file is opened only if it is a regular file (a FIFO or a device
named x.png would block the reader forever) and refused from its header if it claims more pixels than PIL allows
(``Image.MAX_IMAGE_PIXELS`` x 2: a decompression bomb); a JPEG is decoded at the smallest draft scale that still
covers the size; the EXIF orientation is applied; the pixels become 8-bit RGB (transparency on white; wide samples
scaled by the bit depth the file declares, never by their values: ``_white_level``); the shorter side is resized
to ``size / crop_ratio`` (bilinear) and the centre ``size`` x ``size`` kept. Any failure is one DataError per
file.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from PIL import Image, ImageOps

from autoft.errors import DataError

__all__ = ["preprocess_image", "read_image", "read_images", "open_image", "stored_size", "normalize", "augment"]

_WHITE = (255, 255, 255)
_ALPHA_MODES = ("RGBA", "LA", "La", "RGBa", "PA")
_TIFF_BITS_PER_SAMPLE, _TIFF_SAMPLE_FORMAT, _TIFF_SIGNED = 258, 339, 2
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def _not_regular(path: Path, mode: int) -> DataError:
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    return DataError(f"{path}: not a regular file ({kind}); only regular image files are read, so it was not opened")


def _open_regular_file(path: str | Path) -> IO[bytes]:
    """``path`` opened for reading; anything but a regular file is refused unopened (opening a FIFO blocks until
    a writer comes, forever)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise _not_regular(Path(path), mode)
    try:  # O_NONBLOCK: if it became a FIFO since the stat, open returns at once and fstat refuses it
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(Path(path), mode)
    # A file object, not the path: PIL then never memory-maps the file, and its memory-mapped TIFF reader lays
    # out the pixels of an EXIF-rotated uncompressed greyscale TIFF wrongly.
    return os.fdopen(fd, "rb")


@contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """The image at ``path``, its header read, its pixels not yet; whatever goes wrong while the block uses it
    (a damaged file makes PIL plugins raise OSError, SyntaxError, struct.error, IndexError…; a decompression bomb
    raises DecompressionBombError) becomes one DataError naming the file."""
    with _open_regular_file(path) as f:
        try:
            with Image.open(f) as img:
                yield img
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - every one of them means "cannot use this file"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{path}: not a readable image ({reason})") from exc


def stored_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file's header, nothing decoded; DataError as ``open_image``."""
    with open_image(path) as img:
        return img.size


def _white_level(img: Image.Image) -> float:
    """The sample value that means white in a wide-sample image (modes I;16*, I, F), from its mode and the bit depth
    its file declares, never from its pixels: F 1.0 (float images hold 0..1); a TIFF 2**bits - 1 by its
    BitsPerSample (12-bit TIFFs are read as I;16 holding 0..4095), 2**(bits-1) - 1 when its SampleFormat says
    signed; I;16* 65535; I from a PNG 65535 too (PNG has no deeper samples; older Pillow reads 16-bit greyscale PNG
    as I); any other I the mode's own int32 range, 2**31 - 1."""
    if img.mode == "F":
        return 1.0
    bits, signed = (16, False) if img.mode.startswith("I;16") or img.format == "PNG" else (32, True)
    if img.format == "TIFF":
        tags = img.tag_v2  # type: ignore[attr-defined]  # format TIFF: a TiffImageFile; the stubs cannot narrow
        bits = _first(tags.get(_TIFF_BITS_PER_SAMPLE), bits)
        signed = _first(tags.get(_TIFF_SAMPLE_FORMAT), _TIFF_SIGNED if signed else 1) == _TIFF_SIGNED
    return float(2 ** (bits - signed) - 1)


def _first(value: Any, default: int) -> int:
    # a TIFF tag holds one value per band, and a wide-sample image has one band
    if isinstance(value, tuple):
        value = value[0] if value else None
    return default if value is None else int(value)


def _to_rgb(img: Image.Image) -> Image.Image:
    """An 8-bit-sample image → RGB. Transparency (an alpha band, or a palette's / PNG's transparent colour) is
    composited on white; CMYK, YCbCr, greyscale and bilevel convert as PIL converts them. 16-bit colour PNGs
    arrive here as RGB/RGBA already: PIL's decoder keeps each sample's high byte (v >> 8)."""
    if img.mode in _ALPHA_MODES or ("transparency" in img.info and img.mode in ("P", "L", "RGB")):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _wide_to_rgb(img: Image.Image, white: float) -> Image.Image:
    """Wide samples (modes I;16*, I, F) → RGB grey: round(v * 255 / white), clipped to 0..255."""
    arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=white, neginf=0.0)
    # dividing by white / 255 (exactly 257.0 for 16 bits) keeps the 16-bit rule exactly round(v / 257)
    grey = np.rint(np.clip(arr, 0.0, white) / (white / 255.0)).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def _upright_rgb(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I") or img.mode == "F":
        white = _white_level(img)  # first: the transposed copy keeps the pixels, not the file's format and tags
        return _wide_to_rgb(ImageOps.exif_transpose(img), white)
    return _to_rgb(ImageOps.exif_transpose(img))


def _check_crop(image_size: int, crop_ratio: float) -> int:
    """The side the shorter side is resized to before the centre crop."""
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if not 0 < crop_ratio <= 1:
        raise ValueError(f"crop_ratio must be in (0, 1], got {crop_ratio}")
    return max(image_size, round(image_size / crop_ratio))


def _resize_crop(img: Image.Image, image_size: int, crop_ratio: float) -> np.ndarray:
    side = _check_crop(image_size, crop_ratio)
    width, height = img.size
    scale = side / min(width, height)
    new_w, new_h = max(side, round(width * scale)), max(side, round(height * scale))
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - image_size) // 2, (new_h - image_size) // 2
    img = img.crop((left, top, left + image_size, top + image_size))
    return np.asarray(img, dtype=np.uint8).copy()


def preprocess_image(img: Image.Image, image_size: int, crop_ratio: float = 1.0) -> np.ndarray:
    """A PIL image → uint8 [S, S, 3]: EXIF orientation, 8-bit RGB, the shorter side resized to
    ``image_size / crop_ratio`` (bilinear), the centre ``image_size`` square kept. ``crop_ratio`` 1 keeps the
    whole shorter side; ImageNet evaluation uses 224 / 256."""
    return _resize_crop(_upright_rgb(img), image_size, crop_ratio)


def read_image(path: str | Path, image_size: int, crop_ratio: float = 1.0) -> np.ndarray:
    """The model's input from an image file (the module docstring says what is done); DataError if it is not a
    readable image file."""
    return read_images(path, (image_size,), crop_ratio)[0]


def read_images(path: str | Path, sizes: Sequence[int], crop_ratio: float = 1.0) -> list[np.ndarray]:
    """An image file preprocessed at each of ``sizes`` (one array per size, in that order), decoding it once for all
    of them — a JPEG once per draft scale its sizes need, so that each array is exactly what ``read_image`` gives
    at that size; DataError if it is not a readable image file."""
    sides = {size: _check_crop(size, crop_ratio) for size in sizes}
    unique = sorted(set(sizes))
    if len(unique) == 1:  # read_image: one decode, no need to look at the file first
        groups = [unique]
    else:
        with open_image(path) as img:
            groups = _draft_groups(img, unique, sides)
    out: dict[int, np.ndarray] = {}
    for group in groups:
        with open_image(path) as img:
            # JPEG can decode at 1/2..1/8 scale directly: much faster for photos far larger than S.
            side = max(sides[size] for size in group)
            img.draft("RGB", (side, side))
            upright = _upright_rgb(img)
            out.update((size, _resize_crop(upright, size, crop_ratio)) for size in group)
    return [out[size] for size in sizes]


def _draft_groups(img: Image.Image, sizes: Sequence[int], sides: dict[int, int]) -> list[list[int]]:
    """``sizes`` (distinct, ascending) grouped by the scale a JPEG's draft mode decodes their resize ``sides`` at
    (Pillow: the largest of 1/8, 1/4, 1/2, 1 that keeps both sides >= the side); one group for other formats."""
    if img.format != "JPEG":
        return [list(sizes)]
    width, height = img.size
    groups: dict[int, list[int]] = {}
    for size in sizes:
        fits = min(width // sides[size], height // sides[size])
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
    n: int = batch.shape[0]
    size: int = batch.shape[1]
    pad = max(1, size // 8) if pad is None else pad
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    mode: Literal["reflect", "constant"] = "reflect" if pad < size else "constant"
    padded = np.pad(batch, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
    offsets_y = rng.integers(0, 2 * pad + 1, size=n)
    offsets_x = rng.integers(0, 2 * pad + 1, size=n)
    flip = rng.random(n) < 0.5
    span = np.arange(size)
    rows = offsets_y[:, None] + span
    cols = offsets_x[:, None] + span
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
