"""Running the CLI as a user does (a subprocess, no AUTOFT_DEBUG) and the small files bad-input cases are made of."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from PIL import Image

CLI = [sys.executable, "-m", "autoft.cli"]


def run(*args: str, cwd: Path | None = None, timeout: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``env``: variables set on top of this process's environment."""
    env = {**{k: v for k, v in os.environ.items() if k != "AUTOFT_DEBUG"}, **(env or {})}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def write_yaml(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def search_yaml(tmp: Path, **sections: dict) -> Path:
    raw = {"name": "bad", "data": {"path": str(tmp / "data"), "image_size": 32}, "train": {"epochs": 1}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return write_yaml(tmp / "c.yaml", raw)


def image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), (200, 10, 10)).save(path)
    return path


def make_lists(root: Path, train_lines: list[str], labels: list[str]) -> None:
    image(root / "img" / "a.png")
    image(root / "img" / "b.png")
    (root / "train_list.txt").write_text("\n".join(train_lines) + "\n")
    (root / "label_list.txt").write_text("\n".join(labels) + "\n")


def assert_one_line_exit_2(out: subprocess.CompletedProcess, needle: str, results: Path | None = None) -> None:
    """The bad-input promise: exit 2, one `autoft: error:` line naming ``needle``, no traceback, nothing written."""
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autoft: error: "), out.stderr[-2000:]
    assert needle in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    if results is not None:
        assert not results.exists() or not any(results.iterdir()), list(results.iterdir())
