"""Small image datasets built here, offline, as ImageFolders of PNG files, for the portfolio and the zero-config
benchmarks: each is deterministic (fixed seeds) and written once under ``$AUTOFT_HOME/bench-data/<name>``.

- ``digits``: scikit-learn's handwritten digits (1,797 8x8 grey images, 10 classes), upscaled to 32 px.
- ``shapes``: 6 classes of filled shapes (circle, square, triangle, cross, ring, bar) in random colours, sizes and
  places on noisy, coloured backgrounds, 40 px.
- ``textures``: 6 classes of texture (horizontal, vertical and diagonal stripes, checks, dots, blotches) with random
  periods, phases, colours and noise, 40 px.
- ``photos`` and ``patches`` (held out: never used to choose the portfolio): crops of scikit-image's sample
  photographs, one class a photo, at random places and scales, flipped at random. ``photos``: 8 photos (astronaut,
  coffee, chelsea, rocket, camera, hubble deep field, immunohistochemistry, retina), crops of 15-45 % of the shorter
  side at 48 px; ``patches``: 12 (those 8 and coins, brick, grass, gravel), small patches of 6-14 % at 32 px, so
  much less context.
- ``scenes``: patches of 7 photographs that neither ``photos`` nor ``patches`` uses (scikit-learn's china and flower,
  scikit-image's cell, clock, moon, page, text), 6-15 % of the shorter side at 40 px: a real-image set for the
  replay's curve tables (benchmarks/record_curves.py) that keeps ``photos`` and ``patches`` held out. (Crops of
  20-45 % were too easy for a head on a frozen trunk: 1.000 best, 0.992 the median configuration.)

The bundled Fashion-MNIST subset (``fashion-mnist-demo``) and Debian's Fashion-MNIST are named datasets already.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["BUILDERS", "build"]


def _root() -> Path:
    from autoft._fs import autoft_home

    return autoft_home() / "bench-data"


def _noise_background(rng: np.random.Generator, size: int) -> Image.Image:
    base = rng.integers(0, 256, 3)
    arr = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _shape(rng: np.random.Generator, kind: str, size: int = 40) -> Image.Image:
    img = _noise_background(rng, size)
    draw = ImageDraw.Draw(img)
    r = rng.uniform(0.22, 0.4) * size
    cx, cy = rng.uniform(r, size - r, 2)
    fill = _colour(rng)
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "triangle":
        a = rng.uniform(0, 2 * np.pi)
        draw.polygon([(cx + r * np.cos(a + k * 2 * np.pi / 3), cy + r * np.sin(a + k * 2 * np.pi / 3))
                      for k in range(3)], fill=fill)
    elif kind == "cross":
        w = r / 3
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    elif kind == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(2, int(r / 3)))
    elif kind == "bar":
        w = r / 4
        if rng.random() < 0.5:
            draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        else:
            draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    return img


def _texture(rng: np.random.Generator, kind: str, size: int = 40) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(4, 12)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "horizontal":
        wave = np.sin(2 * np.pi * y / period + phase)
    elif kind == "vertical":
        wave = np.sin(2 * np.pi * x / period + phase)
    elif kind == "diagonal":
        sign = 1 if rng.random() < 0.5 else -1
        wave = np.sin(2 * np.pi * (x + sign * y) / (period * 1.41) + phase)
    elif kind == "checks":
        wave = np.sign(np.sin(2 * np.pi * x / period + phase)) * np.sign(np.sin(2 * np.pi * y / period + phase))
    elif kind == "dots":
        wave = (np.sin(2 * np.pi * x / period + phase) * np.sin(2 * np.pi * y / period + phase) > 0.5) * 2.0 - 1
    else:  # blotches: smooth random noise
        coarse = rng.normal(0, 1, (max(2, int(size / period)) + 1,) * 2)
        wave = np.asarray(Image.fromarray(coarse.astype(np.float32), "F").resize((size, size), Image.BICUBIC))
        wave = wave / (np.abs(wave).max() + 1e-6)
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    t = ((wave + 1) / 2)[..., None]
    arr = a * t + b * (1 - t) + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _digits(out: Path, per_class: int) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts: dict[int, int] = {}
    for image, label in zip(digits.images, digits.target.tolist()):
        if counts.get(label, 0) >= per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        arr = (255 - image * 255 / 16).astype(np.uint8)  # dark ink on white, as written
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr, "L").resize((32, 32), Image.BILINEAR).save(folder / f"{counts[label]:04d}.png")


def _generated(kinds: tuple[str, ...], make: Callable[[np.random.Generator, str], Image.Image],
               seed: int) -> Callable[[Path, int], None]:
    def write(out: Path, per_class: int) -> None:
        rng = np.random.default_rng(seed)
        for kind in kinds:
            (out / kind).mkdir(parents=True)
            for i in range(per_class):
                make(rng, kind).save(out / kind / f"{i:04d}.png")
    return write


_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "hubble_deep_field", "immunohistochemistry",
           "retina")
# small patches at 32 px: little context, so harder than ``photos``
_PATCHES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
            "camera", "coins", "brick", "grass", "gravel")


# photographs that ``photos`` and ``patches`` leave out; ``china.jpg`` and ``flower.jpg`` are scikit-learn's
_SCENES = ("china.jpg", "flower.jpg", "cell", "clock", "moon", "page", "text")


def _photo(name: str) -> np.ndarray:
    """One sample photograph: scikit-learn's (a name ending .jpg) or scikit-image's."""
    if name.endswith(".jpg"):
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(name))
    from skimage import data as skdata

    return np.asarray(getattr(skdata, name)())


def _crops(names: tuple[str, ...], scale: tuple[float, float], px: int, seed: int) -> Callable[[Path, int], None]:
    """A writer of square crops of sample photographs (``_photo``), one class a photograph: each crop's side a
    random ``scale`` fraction of the photograph's shorter side, at a random place, resized to ``px``, flipped at
    random."""
    def write(out: Path, per_class: int) -> None:
        rng = np.random.default_rng(seed)
        for name in names:
            arr = _photo(name)
            photo = Image.fromarray(arr[..., :3] if arr.ndim == 3 else arr).convert("RGB")
            w, h = photo.size
            folder = out / name.removesuffix(".jpg")
            folder.mkdir(parents=True)
            for i in range(per_class):
                side = max(8, int(rng.uniform(*scale) * min(w, h)))
                left, top = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
                crop = photo.crop((left, top, left + side, top + side)).resize((px, px), Image.BILINEAR)
                if rng.random() < 0.5:
                    crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
                crop.save(folder / f"{i:04d}.png")
    return write


# name -> (writer, images per class)
BUILDERS: dict[str, tuple[Callable[[Path, int], None], int]] = {
    "digits": (_digits, 170),
    "shapes": (_generated(("circle", "square", "triangle", "cross", "ring", "bar"), _shape, 1), 150),
    "textures": (_generated(("horizontal", "vertical", "diagonal", "checks", "dots", "blotches"), _texture, 2), 150),
    "photos": (_crops(_PHOTOS, (0.15, 0.45), 48, seed=3), 100),
    "patches": (_crops(_PATCHES, (0.06, 0.14), 32, seed=4), 100),
    "scenes": (_crops(_SCENES, (0.06, 0.15), 40, seed=5), 120),
}


def build(name: str) -> Path:
    """The ImageFolder of ``name``, written on first use (atomically: a folder renamed into place)."""
    writer, per_class = BUILDERS[name]
    out = _root() / name
    marker = out / ".complete"
    if marker.is_file():
        return out
    tmp = _root() / f".{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        writer(tmp, per_class)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / ".complete").write_text(json.dumps({"per_class": per_class}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
