"""Fixtures for the data tests: tiny synthetic images in several modes and formats, written per test."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# (mode, extension) cycled over the images of a class so every source reads mixed files.
VARIANTS = [("RGB", "png"), ("L", "jpg"), ("RGBA", "png"), ("P", "bmp"), ("RGB", "webp"), ("RGB", "JPEG"),
            ("P", "gif")]
SIZES = [(12, 12), (40, 30), (17, 25), (20, 20), (33, 12)]

MakeImage = Callable[..., Path]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep the default cache (and anything else under autoft_home) out of the real home folder.
    monkeypatch.setenv("AUTOFT_HOME", str(tmp_path / "autoft_home"))


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def write_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (16, 16), seed: int = 0) -> Path:
    """Write a random image; `seed` varies the content."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(pixels, "RGB")
    if mode == "P":
        img = img.quantize(16)
    elif mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_class_folder(root: Path, per_class: dict[str, int], start_seed: int = 0) -> list[Path]:
    """root/<class>/img<i>.<ext> with the modes/formats/sizes of VARIANTS and SIZES cycled."""
    written = []
    seed = start_seed
    for name, count in per_class.items():
        for i in range(count):
            mode, ext = VARIANTS[seed % len(VARIANTS)]
            written.append(write_image(root / name / f"img{i}.{ext}", mode, SIZES[seed % len(SIZES)], seed))
            seed += 1
    return written


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """An ImageFolder with 3 classes of 10, 6 and 4 images."""
    root = tmp_path / "folder"
    write_class_folder(root, {"cat": 10, "dog": 6, "fox": 4})
    return root


@pytest.fixture
def make_image() -> Callable[..., Path]:
    return write_image


@pytest.fixture
def make_class_folder() -> Callable[..., list[Path]]:
    return write_class_folder
