from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoft.data import augment, normalize, preprocess_image, read_image
from autoft.errors import DataError


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "P", "CMYK", "1", "I;16", "I", "F", "YCbCr"])
def test_preprocess_any_mode_gives_square_rgb_uint8(mode: str) -> None:
    img = Image.new("RGB", (40, 30), (10, 120, 200)).convert(mode)
    out = preprocess_image(img, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_preprocess_resizes_shorter_side_then_centre_crops() -> None:
    # 60x20: left/right thirds red/blue, centre third green → after shorter side = 10 and a 10x10 centre crop
    # only the green third remains.
    pixels = np.zeros((20, 60, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:40] = (0, 255, 0)
    pixels[:, 40:] = (0, 0, 255)
    out = preprocess_image(Image.fromarray(pixels), 10)
    assert out.shape == (10, 10, 3)
    assert np.array_equal(out[:, 2:8], np.broadcast_to(np.array([0, 255, 0], np.uint8), (10, 6, 3)))


def test_preprocess_upscales_small_images() -> None:
    out = preprocess_image(Image.new("L", (5, 8), 77), 32)
    assert out.shape == (32, 32, 3) and (out == 77).all()


def test_preprocess_composites_transparency_on_white() -> None:
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0, 255))
    out = preprocess_image(img, 8)
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert (out[4, 4] == 255).all()


def test_preprocess_scales_16_bit_to_8_bit() -> None:
    img = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert (preprocess_image(img, 4) == 255).all()


def test_preprocess_rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="image_size must be >= 1, got 0"):
        preprocess_image(Image.new("RGB", (4, 4)), 0)


@pytest.mark.parametrize("name,mode", [("a.png", "RGB"), ("b.JPG", "L"), ("c.bmp", "P"), ("d.webp", "RGBA"),
                                       ("e.gif", "P"), ("f.jpeg", "CMYK")])
def test_read_image_formats(tmp_path: Path, make_image, name: str, mode: str) -> None:
    path = make_image(tmp_path / name, mode, (23, 31))
    out = read_image(path, 20)
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8


def test_read_image_matches_preprocess_for_lossless_file(tmp_path: Path, make_image) -> None:
    path = make_image(tmp_path / "a.png", "RGB", (30, 18), seed=3)
    assert np.array_equal(read_image(path, 12), preprocess_image(Image.open(path), 12))


def test_read_image_non_image_raises(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"notes\.jpg: not a readable image \(.+\)"):
        read_image(path, 8)


def test_read_image_truncated_raises(tmp_path: Path, make_image) -> None:
    path = make_image(tmp_path / "big.jpg", "RGB", (64, 64))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=r"big\.jpg: not a readable image"):
        read_image(path, 8)


def test_normalize_math_layout_and_dtype() -> None:
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(2, 5, 5, 3), dtype=np.uint8)
    mean, std = [10.0, 20.0, 30.0], [2.0, 4.0, 8.0]
    out = normalize(batch, mean, std)
    assert out.shape == (2, 3, 5, 5) and out.dtype == np.float32 and out.flags.c_contiguous
    expected = (batch.astype(np.float64) - mean) / std
    np.testing.assert_allclose(out, expected.transpose(0, 3, 1, 2), rtol=1e-6)


def test_normalize_accepts_a_read_only_memmap_like_input_and_scalars() -> None:
    batch = np.full((1, 2, 2, 3), 255, np.uint8)
    batch.flags.writeable = False
    assert np.allclose(normalize(batch, 127.5, 127.5), 1.0)


@pytest.mark.parametrize("kwargs,message", [
    ({"mean": [1, 2], "std": 1}, "mean must have 1 or 3 values, got 2"),
    ({"mean": 0, "std": [1, 0, 1]}, r"std must be > 0"),
])
def test_normalize_rejects_bad_stats(kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize(np.zeros((1, 2, 2, 3), np.uint8), **kwargs)


def _batch(n: int = 8, size: int = 16) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_augment_keeps_shape_dtype_and_changes_images() -> None:
    batch = _batch()
    out = augment(batch, np.random.default_rng(0))
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert not np.array_equal(out, batch)


def test_augment_is_deterministic_for_a_seed() -> None:
    batch = _batch()
    assert np.array_equal(augment(batch, np.random.default_rng(5)), augment(batch, np.random.default_rng(5)))


def test_augment_without_padding_only_flips() -> None:
    batch = _batch(n=16)
    out = augment(batch, np.random.default_rng(0), pad=0)
    flipped = [np.array_equal(o, b[:, ::-1]) for o, b in zip(out, batch)]
    kept = [np.array_equal(o, b) for o, b in zip(out, batch)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)


def test_augment_crops_are_windows_of_the_reflect_padded_image() -> None:
    batch = _batch(n=6, size=8)
    out = augment(batch, np.random.default_rng(2), pad=2)
    for o, b in zip(out, batch):
        padded = np.pad(b, ((2, 2), (2, 2), (0, 0)), mode="reflect")
        windows = [padded[y:y + 8, x:x + 8] for y in range(5) for x in range(5)]
        assert any(np.array_equal(o, w) or np.array_equal(o[:, ::-1], w) for w in windows)


def test_augment_tiny_images_fall_back_to_zero_padding() -> None:
    out = augment(np.full((3, 1, 1, 3), 9, np.uint8), np.random.default_rng(0), pad=1)
    assert out.shape == (3, 1, 1, 3)
