"""`autoft predict` reads an image file exactly as training does: the same array from the same file for every mode
and orientation, so the same logits; a folder gives predict the files training takes from it; a decompression
bomb is one error line."""
from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle
import pytest
from PIL import Image

from autoft.backbones import create
from autoft.data import ImageData, load_data
from autoft.data.folder import load_folder
from autoft.data.source import SplitName
from autoft.run.bundle import BundleMeta, save_bundle
from autoft.serving.predict import Predictor, find_inputs
from autoft.training.checkpoint import model_weights
from cli_helpers import run


def _noise(rng: np.random.Generator, width: int, height: int, bands: int = 3) -> np.ndarray:
    """Smooth quadrants plus noise: asymmetric (every orientation differs) and not flat (every pixel matters)."""
    base = np.zeros((height, width, 3), np.int16)
    base[: height // 2, width // 2:], base[height // 2:, : width // 2] = (150, 30, 30), (30, 30, 150)
    pixels = np.clip(base + rng.integers(0, 100, size=base.shape), 0, 255).astype(np.uint8)
    return pixels if bands == 3 else pixels[..., 0]


def _oriented(suffix: str, orientation: int, bands: int = 3) -> Callable[[Path, np.random.Generator], None]:
    def write(path: Path, rng: np.random.Generator) -> None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        width = 160 if suffix == ".jpg" else 40  # a 160 px JPEG is decoded at a draft scale for 32 px
        Image.fromarray(_noise(rng, width, width * 3 // 4, bands)).save(path, exif=exif)
    return write


def _sixteen(top: int) -> Callable[[Path, np.random.Generator], None]:
    def write(path: Path, rng: np.random.Generator) -> None:
        Image.fromarray(rng.integers(0, top, size=(30, 40), dtype=np.uint16)).save(path)  # mode I;16
    return write


def _palette(path: Path, rng: np.random.Generator) -> None:
    img = Image.fromarray(_noise(rng, 40, 30)).quantize(16)
    img.save(path, transparency=0)


def _alpha(mode: str) -> Callable[[Path, np.random.Generator], None]:
    def write(path: Path, rng: np.random.Generator) -> None:
        alpha = rng.integers(0, 256, size=(30, 40, 1), dtype=np.uint8)
        pixels = np.concatenate([_noise(rng, 40, 30)[..., : 1 if mode == "LA" else 3], alpha], axis=2)
        Image.fromarray(pixels, mode).save(path, **({"lossless": True} if path.suffix == ".webp" else {}))
    return write


def _animated(path: Path, rng: np.random.Generator) -> None:
    frames = [Image.fromarray(_noise(rng, 40, 30)) for _ in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40)


def _mode(mode: str) -> Callable[[Path, np.random.Generator], None]:
    def write(path: Path, rng: np.random.Generator) -> None:
        Image.fromarray(_noise(rng, 40, 30)).convert(mode).save(path)
    return write


def _wide(dtype: type, scale: float) -> Callable[[Path, np.random.Generator], None]:
    def write(path: Path, rng: np.random.Generator) -> None:
        Image.fromarray((rng.random((30, 40)) * scale).astype(dtype)).save(path)
    return write


CASES: dict[str, Callable[[Path, np.random.Generator], None]] = {
    **{f"orient{k}.jpg": _oriented(".jpg", k) for k in range(1, 9)},
    **{f"orient{k}.png": _oriented(".png", k) for k in range(1, 9)},
    **{f"orient{k}-grey.tif": _oriented(".tif", k, bands=1) for k in range(1, 9)},
    "cmyk.jpg": _mode("CMYK"), "cmyk.tif": _mode("CMYK"),
    "grey16-dark.png": _sixteen(256), "grey16-bright.png": _sixteen(65536),
    "grey16-dark.tif": _sixteen(256), "grey16-bright.tif": _sixteen(65536),
    "palette-transparent.png": _palette, "palette-transparent.gif": _palette,
    "la.png": _alpha("LA"), "rgba.png": _alpha("RGBA"), "rgba.webp": _alpha("RGBA"),
    "animated.gif": _animated,
    "grey.png": _mode("L"), "grey.jpg": _mode("L"), "bilevel.bmp": _mode("1"), "ycbcr.jpg": _mode("YCbCr"),
    "int32.tif": _wide(np.int32, 2**31 - 1), "float.tif": _wide(np.float32, 1.0),
}


SIZE = 32


@dataclass(frozen=True)
class CaseFiles:
    root: Path
    paths: dict[str, Path]
    data: ImageData                  # what the data cache holds: the arrays a model trains on
    trained: dict[str, np.ndarray]   # each case file's array in it


@pytest.fixture(scope="module")
def case_files(tmp_path_factory: pytest.TempPathFactory) -> CaseFiles:
    """Every case in train/c0/ of an ImageFolder with its own val/ (no random split: file order is array order)."""
    root = tmp_path_factory.mktemp("modes")
    rng = np.random.default_rng(0)
    paths = {}
    for name, write in CASES.items():
        paths[name] = root / "train" / "c0" / name
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        write(paths[name], rng)
    for folder in ("train/c1", "val/c0", "val/c1"):
        (root / folder).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(_noise(rng, 40, 30)[::-1]).save(root / folder / f"filler{i}.png")
    data = load_data(dataset=None, path=str(root), image_size=SIZE, cache_dir=tmp_path_factory.mktemp("cache"))
    order = sorted(CASES, key=lambda name: paths[name])
    assert len(data.train) == len(order) + 4  # every case readable: none was dropped
    return CaseFiles(root, paths, data, {name: np.asarray(data.train.images[i]) for i, name in enumerate(order)})


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    """A real 2-class resnet18 bundle at SIZE px, its weights as initialised: unlike a fresh mobilenet's (whose
    outputs are ~1e-8 for any input), its outputs differ from image to image, so a mangled input shows."""
    paddle.seed(0)
    model = create("resnet18", 2, "none")
    meta = BundleMeta(backbone="resnet18", num_classes=2, class_names=("c0", "c1"), image_size=SIZE,
                      mean=tuple(model.spec.mean), std=tuple(model.spec.std))
    bundle = save_bundle(tmp_path_factory.mktemp("resnet18") / "bundle", model_weights(model), meta)
    return Predictor(bundle, device="cpu", threads=1)


@pytest.mark.parametrize("name", list(CASES))
def test_predict_builds_the_array_training_built_from_the_same_file(name: str, case_files: CaseFiles,
                                                                    predictor: Predictor) -> None:
    assert np.array_equal(predictor._load(case_files.paths[name]), case_files.trained[name])


def test_predict_gives_the_bundles_output_on_the_training_array(case_files: CaseFiles,
                                                                predictor: Predictor) -> None:
    names = list(CASES)
    logits = predictor.reference_logits(np.stack([case_files.trained[n] for n in names])).astype(np.float64)
    preds = predictor.predict([case_files.paths[n] for n in names], top_k=2)
    probs = np.array([[dict(p.top)[label] for label in predictor.meta.class_names] for p in preds])
    # compared as log(p1 / p0) = logit1 - logit0: exact however sure the model is (a probability saturates)
    got, expected = np.log(probs[:, 1] / probs[:, 0]), logits[:, 1] - logits[:, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    assert np.ptp(expected) > 1.0  # the files' outputs differ: a swapped or mangled file would show


def test_the_imagenet_crop_ratio_reaches_the_one_reader(tmp_path: Path, predictor: Predictor) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    # shorter side to round(32 / 0.875) = 37 (60 x 40 → 56 x 37), then the centre 32 x 32
    resized = np.asarray(Image.fromarray(pixels).resize((56, 37), Image.Resampling.BILINEAR))
    predictor.crop_ratio = 224 / 256
    try:
        assert np.array_equal(predictor._load(tmp_path / "a.png"), resized[2:34, 12:44])
    finally:
        predictor.crop_ratio = 1.0


def _tree(root: Path) -> int:
    """Two classes of images of every suffix, among the hidden and non-image files a camera or a Mac leaves;
    → how many hidden image-named files it holds. Every image is PNG bytes: PIL reads by content, not by name."""
    for rel in ("a/x.png", "a/x.tif", "a/sub/y.TIFF", "b/z.jpeg", "b/w.webp", "b/.thumbs/t.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (9, 99, 199)).save(root / rel, format="PNG")
    (root / "a" / "._x.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (root / "b" / ".hidden.jpg").write_bytes(b"\xff\xd8 not shown")
    (root / "b" / "notes.txt").write_text("not an image")
    return 2


def test_predict_takes_from_a_folder_what_training_takes_and_counts_the_hidden(tmp_path: Path) -> None:
    hidden = _tree(tmp_path)
    found = find_inputs([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found.paths] == \
        ["a/sub/y.TIFF", "a/x.png", "a/x.tif", "b/w.webp", "b/z.jpeg"]
    assert found.paths == sorted(load_folder(tmp_path).splits[SplitName.TRAIN].items)
    assert found.hidden == hidden


def _bomb(path: Path, side: int = 30000) -> Path:
    """A real 1x1 PNG whose header is rewritten to claim side x side pixels."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_predict_on_a_folder_names_a_bomb_in_one_line_and_skips_hidden_files(real_bundle: Path,
                                                                              tmp_path: Path) -> None:
    _tree(tmp_path / "photos")
    bomb = _bomb(tmp_path / "photos" / "a" / "bomb.png")
    out = run("predict", str(real_bundle), str(tmp_path / "photos"), "--json", timeout=180)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [
        "autoft: skipped 2 hidden file(s) in the folders (names starting with '.', such as macOS ._* files), as "
        "training does",
        f"autoft: error: {bomb}: not a readable image (Image size (900000000 pixels) exceeds limit of "
        f"{2 * Image.MAX_IMAGE_PIXELS} pixels, could be decompression bomb DOS attack.)"]
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(Path(r["path"]).name for r in records if r["error"] is None) == \
        ["w.webp", "x.png", "x.tif", "y.TIFF", "z.jpeg"]
