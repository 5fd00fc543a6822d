"""Fixtures for the data tests: tiny synthetic images in several modes and formats, written per test."""
from __future__ import annotations

import re
import tarfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves files under server.root; honours `Range: bytes=N-`; can cut a response once (server.cut_after)."""

    server: FileServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.requests.append((self.path, self.headers.get("Range")))
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(re.fullmatch(r"bytes=(\d+)-", self.headers["Range"]).group(1)) if self.headers["Range"] else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = self.server.cut_after.pop(self.path.lstrip("/"), None)
        self.wfile.write(data[start:start + cut] if cut is not None else data[start:])
        if cut is not None:
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.root = root
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: dict[str, int] = {}   # file name → bytes to send before dropping, once

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[FileServer]:
    """A threaded HTTP server on 127.0.0.1 serving tmp_path/served."""
    root = tmp_path / "served"
    root.mkdir()
    server = FileServer(root)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def write_paddlehub_tree(root: Path, classes: list[str], per_split: dict[str, int], start_seed: int = 0) -> Path:
    """PaddleHub's layout: <root>/<class>/*.png + train/validate/test_list.txt (class indices) + label_list.txt."""
    seed = start_seed
    (root / "label_list.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "label_list.txt").write_text("\n".join(classes) + "\n")
    for list_name, count in per_split.items():
        lines = []
        for index, name in enumerate(classes):
            for i in range(count):
                rel = f"{name}/{list_name.split('_')[0]}{i}.png"
                write_image(root / rel, size=(20, 20), seed=seed)
                seed += 1
                lines.append(f"{rel} {index}")
        (root / list_name).write_text("\n".join(lines) + "\n")
    return root


def write_tar_gz(archive: Path, folder: Path) -> Path:
    """Pack `folder` as a top-level folder of the same name (PaddleHub's archives do that)."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


@pytest.fixture
def make_paddlehub_tree() -> Callable[..., Path]:
    return write_paddlehub_tree


@pytest.fixture
def make_tar_gz() -> Callable[[Path, Path], Path]:
    return write_tar_gz
