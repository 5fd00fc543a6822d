"""Downloads against a real HTTP server on 127.0.0.1, and the autoft cache location."""
from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path
from typing import Iterator

import pytest

from autoft.backbones import weights
from autoft.errors import WeightsError

PAYLOAD = b"pretend these are weights\n" * 1000


class _Server:
    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                log.append(self.path)

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    root = tmp_path / "served"
    root.mkdir()
    (root / "model.pdparams").write_bytes(PAYLOAD)
    srv = _Server(root)
    yield srv
    srv.close()


def _closed_port_url() -> str:
    with socket.socket() as sock:  # bind then release: nothing listens on this port afterwards
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.pdparams"


MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_download_checks_md5_and_writes_atomically(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "model.pdparams"
    assert weights.download(f"{server.url}/model.pdparams", MD5, dest) == dest
    assert dest.read_bytes() == PAYLOAD
    assert [p.name for p in dest.parent.iterdir()] == ["model.pdparams"]  # no temp file left behind


def test_download_wrong_md5_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "model.pdparams"
    with pytest.raises(WeightsError, match=rf"model\.pdparams downloaded with md5 {MD5}, expected 0+$"):
        weights.download(f"{server.url}/model.pdparams", "0" * 32, dest)
    assert list(dest.parent.iterdir()) == []


def test_download_missing_file_on_server(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"cannot download .*/absent\.pdparams: HTTP 404 File not found$"):
        weights.download(f"{server.url}/absent.pdparams", None, tmp_path / "absent.pdparams")
    assert not (tmp_path / "absent.pdparams").exists()


def test_fetch_downloads_once_then_reuses_cache(server: _Server, autoft_home: Path) -> None:
    url = f"{server.url}/model.pdparams"
    path = weights.fetch("ImageNet weights for test", url, MD5)
    assert path == autoft_home / "weights" / "model.pdparams" and path.read_bytes() == PAYLOAD
    assert weights.fetch("ImageNet weights for test", url, MD5) == path
    assert server.requests == ["/model.pdparams"]


def test_fetch_replaces_a_corrupt_cached_file(server: _Server, autoft_home: Path) -> None:
    (autoft_home / "weights").mkdir(parents=True)
    (autoft_home / "weights" / "model.pdparams").write_bytes(b"truncated")
    path = weights.fetch("ImageNet weights for test", f"{server.url}/model.pdparams", MD5)
    assert path.read_bytes() == PAYLOAD


def test_fetch_offline_says_where_to_put_the_file(autoft_home: Path) -> None:
    url = _closed_port_url()
    dest = autoft_home / "weights" / "model.pdparams"
    with pytest.raises(WeightsError) as info:
        weights.fetch("ImageNet weights for resnet50", url, MD5)
    message = str(info.value)
    assert message.startswith(
        "ImageNet weights for resnet50 are not cached and cannot be downloaded (")
    assert message.endswith(f"): download {url} and put it at {dest}")
    assert "\n" not in message and "refused" in message.lower()
    assert not dest.exists()


def test_fetch_offline_uses_a_file_put_by_hand(autoft_home: Path) -> None:
    dest = autoft_home / "weights" / "model.pdparams"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(PAYLOAD)
    assert weights.fetch("ImageNet weights for resnet50", _closed_port_url(), MD5) == dest


def test_autoft_home_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOFT_HOME", str(tmp_path / "h"))
    assert weights.autoft_home() == tmp_path / "h"
    assert weights.weights_dir() == tmp_path / "h" / "weights"
    monkeypatch.delenv("AUTOFT_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.autoft_home() == tmp_path / "xdg" / "autoft"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.autoft_home() == tmp_path / "home" / ".cache" / "autoft"
