"""A learnable synthetic image task for tests: coloured shapes on a noisy background."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"blue": (40, 60, 220), "green": (40, 190, 60), "red": (220, 40, 40)}


def draw_shape(colour: tuple[int, int, int], rng: np.random.Generator, size: int = 24) -> Image.Image:
    """A filled circle or square of one colour on a noisy grey background."""
    background = rng.integers(90, 160, size=(size, size, 3), dtype=np.uint8)
    img = Image.fromarray(background, "RGB")
    d = ImageDraw.Draw(img)
    r = int(rng.integers(size // 4, size // 2 - 1))
    cx, cy = (int(v) for v in rng.integers(r, size - r, size=2))
    box = (cx - r, cy - r, cx + r, cy + r)
    jitter = tuple(int(np.clip(c + rng.integers(-25, 25), 0, 255)) for c in colour)
    (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=jitter)
    return img


def make_shapes(root: Path, per_class: int = 30, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_shape(colour, rng).save(root / name / f"{name}_{i:03d}.png")
    return root
