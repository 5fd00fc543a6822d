"""Shared fixtures: an isolated autoft home for the session and a learnable synthetic image task."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

COLOURS = {"blue": (40, 60, 220), "green": (40, 190, 60), "red": (220, 40, 40)}


@pytest.fixture(scope="session", autouse=True)
def _session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights and data caches for the whole session, away from the real home (Ray workers inherit it)."""
    home = tmp_path_factory.mktemp("autoft_home")
    old = os.environ.get("AUTOFT_HOME")
    os.environ["AUTOFT_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("AUTOFT_HOME", None)
    else:
        os.environ["AUTOFT_HOME"] = old


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


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageFolder: 3 colour classes × 30 coloured shapes, 24×24 PNG."""
    return make_shapes(tmp_path_factory.mktemp("shapes"))
