"""Run folders: the name rule, the writable check made before anything is written, and one search per folder.

The lock is an advisory flock on RUN/.lock, held by the driver for the whole search. The kernel releases it when
the process dies (SIGKILL included), so a crashed run never needs a manual unlock; the file keeps the holder's
pid only to name it in the refusal.
"""
from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from types import TracebackType

from autoft.errors import AutoftError, ConfigError

__all__ = ["RunLock", "LOCK_FILE", "check_run_name", "check_writable"]

LOCK_FILE = ".lock"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_run_name(key: str, name: object) -> str:
    """A run name is one path component: no separators, no `..`, not absolute (it names a folder under results/)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if isinstance(name, str) and len(name) < 120 else f"a {type(name).__name__}"
        raise ConfigError(f"{key}: must be letters, digits, '_', '-' or '.' (one folder name, not a path), "
                          f"got {shown}")
    return name


def check_writable(folder: Path, what: str) -> None:
    """Refuse before writing: the nearest existing folder on the way to ``folder`` must be a writable folder."""
    folder = Path(folder).expanduser().absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise AutoftError(f"{what} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):  # EROFS shows here for root too
        raise AutoftError(f"{what} {folder}: {existing} is not writable")


class RunLock:
    """``with RunLock(run_dir, "--resume"):`` holds the run folder; a second holder is refused in one line."""

    def __init__(self, run_dir: Path, what: str) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise AutoftError(f"{self.what}: cannot lock {self.path} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
            os.close(fd)
            raise AutoftError(f"{self.what}: {self.path.parent} is in use by another autoft search "
                              f"(pid {holder}); wait for it to end") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays so a waiting process never races an unlink
            self._fd = None

    def __enter__(self) -> RunLock:
        if self._fd is None:
            self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
