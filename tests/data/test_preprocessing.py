"""What is done to an image file, checked against numpy on real files: EXIF orientation, bit depth, transparency,
CMYK, animation, the crop; decompression bombs and FIFOs refused; hidden files and the one suffix set."""
from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoft.data import load_data, preprocess_image, read_image
from autoft.data.folder import load_folder
from autoft.data.loader import survey_images
from autoft.data.source import IMAGE_EXTENSIONS, SplitName
from autoft.data.transforms import read_images, stored_size
from autoft.errors import DataError

# How EXIF orientation k stores an upright image U (the EXIF spec's row-0 / column-0 table, written in numpy):
# a reader that applies the orientation must get U back.
STORED: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],                     # row 0 at the top, column 0 on the right: mirrored
    3: lambda u: u[::-1, ::-1],                  # rotated 180
    4: lambda u: u[::-1],                        # row 0 at the bottom: flipped
    5: lambda u: u.transpose(1, 0, 2),           # row 0 on the left, column 0 at the top
    6: lambda u: np.rot90(u, 1),                 # row 0 on the right, column 0 at the top: view by turning 90 CW
    7: lambda u: u[::-1, ::-1].transpose(1, 0, 2),  # row 0 on the right, column 0 at the bottom
    8: lambda u: np.rot90(u, -1),                # row 0 on the left, column 0 at the bottom: view by turning 90 CCW
}
BOMB_SIDE = 30000  # 900M pixels claimed: over PIL's 2 x MAX_IMAGE_PIXELS refusal limit


def quadrants(width: int, height: int) -> np.ndarray:
    """An upright test card: four flat colours (red, green / blue, yellow), so every orientation looks different."""
    u = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    u[:h, :w], u[:h, w:], u[h:, :w], u[h:, w:] = (230, 30, 30), (30, 200, 40), (30, 40, 220), (240, 220, 20)
    return u


def write_oriented(path: Path, upright: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = np.ascontiguousarray(STORED[orientation](upright))
    img = Image.fromarray(stored[..., 0] if path.suffix == ".tif" else stored)
    img.save(path, exif=exif, **({"lossless": True} if path.suffix == ".webp" else {}))
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path: Path, width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> Path:
    """A PNG written byte by byte (PIL writes no 16-bit colour PNG, and no header that lies about its size)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
                     + png_chunk(b"IEND", b""))
    return path


def write_bomb(path: Path) -> Path:
    """A PNG whose header claims BOMB_SIDE x BOMB_SIDE RGB pixels; the few rows it holds compress to nothing."""
    return write_png(path, BOMB_SIDE, BOMB_SIDE, 8, 2, (b"\0" + b"\0" * 3 * BOMB_SIDE) * 4)


def write_tiff_12_bit(path: Path, rows: list[tuple[int, int]]) -> Path:
    """An uncompressed greyscale TIFF of 2-pixel rows of 12-bit samples, packed MSB first (PIL writes none)."""
    pixels = b"".join(bytes([a >> 4, (a & 0xF) << 4 | b >> 8, b & 0xFF]) for a, b in rows)
    tags = [(256, 2), (257, len(rows)), (258, 12), (259, 1), (262, 1), (273, 0), (277, 1), (278, len(rows)),
            (279, len(pixels))]  # width, height, BitsPerSample, no compression, black is 0, strip, 1 band, …
    data_at = 8 + 2 + 12 * len(tags) + 4
    ifd = b"".join(struct.pack("<HHII", tag, 4, 1, data_at if tag == 273 else value) for tag, value in tags)
    path.write_bytes(b"II*\0" + struct.pack("<IH", 8, len(tags)) + ifd + struct.pack("<I", 0) + pixels)
    return path


def grey(out: np.ndarray) -> np.ndarray:
    assert out.dtype == np.uint8 and (out == out[..., :1]).all()  # greyscale lands in all three channels alike
    return out[..., 0]


@pytest.mark.parametrize("orientation", sorted(STORED))
@pytest.mark.parametrize("suffix", [".png", ".tif", ".webp"])
def test_a_lossless_oriented_file_comes_out_upright(tmp_path: Path, suffix: str, orientation: int) -> None:
    upright = quadrants(24, 16)
    if suffix == ".tif":  # uncompressed greyscale TIFF: PIL's memory-mapped reader once laid it out wrongly
        upright = np.repeat(upright[..., :1], 3, axis=2)
    path = write_oriented(tmp_path / f"o{orientation}{suffix}", upright, orientation)
    expected = preprocess_image(Image.fromarray(upright), 12)
    assert np.array_equal(read_image(path, 12), expected)


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_an_oriented_jpeg_comes_out_upright(tmp_path: Path, orientation: int) -> None:
    upright = quadrants(160, 120)  # large enough that the 16 px read decodes at a JPEG draft scale
    out = read_image(write_oriented(tmp_path / f"o{orientation}.jpg", upright, orientation), 16).astype(float)
    # lossy: the upright card is the nearest of the eight ways the stored pixels could have been turned
    turned = {k: preprocess_image(Image.fromarray(np.ascontiguousarray(STORED[k](upright))), 16) for k in STORED}
    distance = {k: np.abs(out - img.astype(float)).mean() for k, img in turned.items()}
    assert min(distance, key=distance.get) == 1 and distance[1] < 8, distance


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("top", [256, 65536], ids=["dark", "bright"])
def test_16_bit_grey_is_round_v_over_257_whatever_the_content(tmp_path: Path, suffix: str, top: int) -> None:
    v = np.random.default_rng(top).integers(0, top, size=(16, 16), dtype=np.uint16)
    path = tmp_path / f"g16{suffix}"
    Image.fromarray(v).save(path)
    assert Image.open(path).mode.startswith("I")  # really read as wide samples, not 8-bit
    assert np.array_equal(grey(read_image(path, 16)), np.round(v / 257).astype(np.uint8))


@pytest.mark.parametrize("top", [256, 65536], ids=["dark", "bright"])
def test_16_bit_colour_png_keeps_the_high_byte(tmp_path: Path, top: int) -> None:
    v = np.random.default_rng(top).integers(0, top, size=(16, 16, 3), dtype=np.uint16)
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in v)
    path = write_png(tmp_path / "rgb16.png", 16, 16, 16, 2, rows)
    assert np.array_equal(read_image(path, 16), (v >> 8).astype(np.uint8))


def test_a_12_bit_tiff_is_scaled_by_its_bits_per_sample(tmp_path: Path) -> None:
    path = write_tiff_12_bit(tmp_path / "t12.tif", [(0xABC, 0x123), (0xFFF, 0x000)])
    assert Image.open(path).mode == "I;16"  # PIL keeps the 12-bit values: 0..4095 in a 16-bit mode
    assert np.array_equal(grey(read_image(path, 2)), [[round(0xABC * 255 / 4095), round(0x123 * 255 / 4095)],
                                                      [255, 0]])


def test_32_bit_int_and_float_tiffs_follow_the_documented_rule(tmp_path: Path) -> None:
    ints = np.array([[-5, 0, 2**30, 2**31 - 1]] * 4, np.int32)
    Image.fromarray(ints).save(tmp_path / "i32.tif")  # SampleFormat signed, 32 bits: white is 2**31 - 1
    assert np.array_equal(grey(read_image(tmp_path / "i32.tif", 4))[0], [0, 0, 128, 255])
    floats = np.array([[-0.5, 0.0, 0.5, 1.0, 1.5, np.nan]] * 6, np.float32)
    Image.fromarray(floats).save(tmp_path / "f.tif")  # float samples hold 0..1
    assert np.array_equal(grey(read_image(tmp_path / "f.tif", 6))[0], [0, 0, 128, 255, 255, 0])


def test_transparency_of_every_kind_lies_on_white(tmp_path: Path) -> None:
    index = np.zeros((8, 8), np.uint8)
    index[:, 4:] = 1
    palette = Image.fromarray(index, "P")
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    for name in ("p.png", "p.gif"):
        palette.save(tmp_path / name, transparency=0)
    la = Image.fromarray(np.dstack([np.full((8, 8), 90, np.uint8), np.repeat([[0] * 4 + [255] * 4], 8, 0)
                                    .astype(np.uint8)]), "LA")
    la.save(tmp_path / "la.png")
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, 4:] = (200, 30, 30)
    Image.fromarray(rgb).save(tmp_path / "trns.png", transparency=(0, 0, 0))  # a transparent colour (tRNS)
    Image.fromarray(np.dstack([rgb, np.repeat([[0] * 4 + [255] * 4], 8, 0)]).astype(np.uint8), "RGBA") \
        .save(tmp_path / "rgba.png")
    for name, right in [("p.png", (200, 30, 30)), ("p.gif", (200, 30, 30)), ("la.png", (90, 90, 90)),
                        ("trns.png", (200, 30, 30)), ("rgba.png", (200, 30, 30))]:
        out = read_image(tmp_path / name, 8)
        assert (out[:, :4] == 255).all() and (out[:, 4:] == right).all(), name


def test_an_animated_gif_is_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (10, 10), colour) for colour in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    out = read_image(tmp_path / "anim.gif", 10)
    assert np.abs(out.astype(int) - (200, 0, 0)).max() <= 4  # GIF's palette may round the colour a little


@pytest.mark.parametrize("suffix, slack", [(".tif", 0), (".jpg", 6)])
def test_cmyk_becomes_the_rgb_it_was_made_from(tmp_path: Path, suffix: str, slack: int) -> None:
    colour = (10, 120, 200)
    Image.new("RGB", (16, 16), colour).convert("CMYK").save(tmp_path / f"c{suffix}")
    assert Image.open(tmp_path / f"c{suffix}").mode == "CMYK"
    out = read_image(tmp_path / f"c{suffix}", 16).astype(int)
    assert np.abs(out - np.asarray(Image.new("RGB", (1, 1), colour).convert("CMYK").convert("RGB"))[0, 0]).max() \
        <= slack


def test_crop_ratio_resizes_the_shorter_side_to_size_over_ratio_then_crops_the_centre(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    resized = np.asarray(Image.fromarray(pixels).resize((48, 32), Image.Resampling.BILINEAR))  # 28 / 0.875 = 32
    assert np.array_equal(read_image(tmp_path / "a.png", 28, crop_ratio=0.875), resized[2:30, 10:38])
    with pytest.raises(ValueError, match=r"crop_ratio must be in \(0, 1\], got 1.5"):
        read_image(tmp_path / "a.png", 28, crop_ratio=1.5)


def test_several_sizes_at_once_equal_each_size_alone(tmp_path: Path) -> None:
    path = write_oriented(tmp_path / "o6.jpg", quadrants(400, 300), 6)  # draft scales 8, 4 and 1 for these
    sizes = (16, 40, 200)
    assert all(np.array_equal(a, read_image(path, s)) for a, s in zip(read_images(path, sizes), sizes))


def test_a_decompression_bomb_is_one_data_error_from_its_header(tmp_path: Path) -> None:
    bomb = write_bomb(tmp_path / "bomb.png")
    says = r"bomb\.png: not a readable image \(Image size \(900000000 pixels\) exceeds limit of \d+ pixels"
    with pytest.raises(DataError, match=says):
        read_image(bomb, 16)
    with pytest.raises(DataError, match=says):
        stored_size(bomb)


def test_a_bomb_in_a_folder_is_skipped_like_any_unreadable_file(tmp_path: Path, cache_dir: Path, make_class_folder,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    make_class_folder(tmp_path / "f", {"a": 20, "b": 20})
    bomb = write_bomb(tmp_path / "f" / "a" / "zz.png")
    survey = survey_images(dataset=None, path=str(tmp_path / "f"), sample=41)  # samples every file, the bomb too
    assert survey.train + survey.val == 41 and survey.native is not None
    with caplog.at_level(logging.WARNING, logger="autoft.data"):
        data = load_data(dataset=None, path=str(tmp_path / "f"), image_size=8, cache_dir=cache_dir)
    assert len(data.train) + len(data.val) == 40
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 1 unreadable image(s) of 41" in warnings[0] and str(bomb) in warnings[0]


def test_a_fifo_is_refused_unopened(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it would block until a writer comes: never
    with pytest.raises(DataError, match=r"pipe\.png: not a regular file \(a FIFO\); .* so it was not opened"):
        read_image(fifo, 8)
    with pytest.raises(DataError, match=r"missing\.png: no such file"):
        read_image(tmp_path / "missing.png", 8)


def test_a_folder_walk_takes_every_image_suffix_and_skips_hidden_files(tmp_path: Path, make_image) -> None:
    assert IMAGE_EXTENSIONS == {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
    kept = [make_image(tmp_path / "a" / f"x{s}") for s in (".png", ".tif", ".TIFF", ".jpeg")]
    kept.append(make_image(tmp_path / "b" / "y.gif"))
    (tmp_path / "a" / "._x.png").write_bytes(b"\x00\x05\x16\x07 resource fork")  # what macOS copies beside x.png
    make_image(tmp_path / "a" / ".hidden.jpg")
    make_image(tmp_path / "b" / ".thumbs" / "y.png")
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    source = load_folder(tmp_path)
    assert source.splits[SplitName.TRAIN].items == sorted(kept)
