"""HTTP(S) download with resume (a `.part` file + Range requests), a progress display, and file digests.

A file reaches its final name only by an atomic rename once every byte has arrived, so a killed or cut
download never looks complete: the next call resumes from the `.part` file.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from autoft.errors import DataError

__all__ = ["fetch", "part_path", "file_digests", "OfflineError", "Progress"]

_CHUNK = 1 << 16
_TIMEOUT_S = 30.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class OfflineError(DataError):
    """The server could not be reached at all (no network, DNS, refused): nothing was downloaded."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def fetch(url: str, dest: Path, *, attempts: int = 3, progress: bool = True) -> Path:
    """Download `url` to `dest`, resuming `dest`.part; retry a cut connection `attempts` times in all."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    for attempt in range(1, attempts + 1):
        try:
            _fetch_once(url, part, progress)
            break
        except (OSError, http.client.HTTPException) as exc:
            unreachable = isinstance(exc, urllib.error.URLError)
            if unreachable and (attempt == attempts or not part.exists()):
                raise OfflineError(f"{url}: cannot reach the server ({_reason(exc)})") from None
            if attempt == attempts:
                size = part.stat().st_size if part.exists() else 0
                raise DataError(f"{url}: download interrupted after {size} bytes ({_reason(exc)}); "
                                f"run it again to resume from {part}") from None
            time.sleep(min(2.0 ** attempt / 4, 2.0))
    os.replace(part, dest)
    return dest


def _fetch_once(url: str, part: Path, progress: bool) -> None:
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "autoft", "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)  # noqa: S310 - http(s) URLs from the catalog
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset and _complete_size(exc.headers.get("Content-Range")) == offset:
            return  # the .part file already holds every byte
        if exc.code == 416:  # the .part is longer than the file or otherwise useless: start again
            part.unlink()
            return _fetch_once(url, part, progress)
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    with response:
        start, total = _resume_point(response, offset)
        mode = "ab" if start else "wb"
        with open(part, mode) as out, Progress(part.name[:-len(".part")], total, start, enabled=progress) as bar:
            _copy(response, out, bar)
            received = out.tell()
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)


def _resume_point(response: Any, offset: int) -> tuple[int, int | None]:
    """(byte the body starts at, full size or None): 206 continues the .part file, 200 restarts it."""
    length = response.headers.get("Content-Length")
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            raise DataError(f"{response.url}: server answered Range bytes={offset}- with "
                            f"Content-Range {response.headers.get('Content-Range')!r}")
        return offset, int(match.group(3)) if match.group(3) != "*" else None
    return 0, int(length) if length is not None else None


def _complete_size(content_range: str | None) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", content_range or "")
    return int(match.group(1)) if match else None


def _copy(response: Any, out: IO[bytes], bar: Progress) -> None:
    while True:
        chunk = response.read(_CHUNK)
        if not chunk:
            return
        out.write(chunk)
        bar.advance(len(chunk))


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) if reason is not None else f"{type(exc).__name__}: {exc}"


def file_digests(path: Path) -> dict[str, str]:
    """{'md5': …, 'sha256': …} of a file, read once."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            md5.update(block)
            sha256.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


class Progress:
    """A rich progress bar on a terminal; otherwise a plain stderr line every 10% (and at the end)."""

    def __init__(self, label: str, total: int | None, done: int = 0, *, enabled: bool = True) -> None:
        self.label, self.total, self.done = label, total, done
        self.enabled = enabled
        self._rich: Any = None
        self._task: Any = None
        self._next_pct = 10 * (self._pct() // 10 + 1)

    def __enter__(self) -> Progress:
        if self.enabled and sys.stderr.isatty():
            from rich.progress import DownloadColumn, TransferSpeedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(*RichProgress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                                      transient=True)
            self._rich.__enter__()
            self._task = self._rich.add_task(self.label, total=self.total, completed=self.done)
        elif self.enabled and self.done:
            self._line(f"resuming at {_mb(self.done)}")
        return self

    def advance(self, n: int) -> None:
        self.done += n
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done)
        elif self.enabled and self.total and self._pct() >= self._next_pct:
            self._line(f"{self._pct()}% of {_mb(self.total)}")
            self._next_pct = 10 * (self._pct() // 10 + 1)

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
        if self.enabled and exc[0] is None:
            self._line(f"done, {_mb(self.done)}")

    def _pct(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0

    def _line(self, text: str) -> None:
        sys.stderr.write(f"autoft: download {self.label}: {text}\n")
        sys.stderr.flush()


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
