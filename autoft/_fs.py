"""Files written atomically (temp name in the same folder, then rename), folders swapped atomically, the autoft
home folder, the writable check made before anything is written, and the lock that gives a run folder one owner.

The lock is an advisory flock on RUN/.lock, held by the driver for the whole search. The kernel releases it when
the process dies (SIGKILL included), so a crashed run never needs a manual unlock; the file keeps the holder's
pid only to name it in the refusal.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from autoft.errors import AutoftError

__all__ = ["autoft_home", "remove_tree", "atomic_write", "atomic_write_bytes", "atomic_write_text",
           "atomic_write_json", "write_safetensors", "make_tmp_dir", "swap_dir", "recover_dir", "swap_in_flight",
           "clean_orphans", "check_writable", "RunLock", "LOCK_FILE"]


def autoft_home() -> Path:
    """Where autoft caches weights, data and datasets: $AUTOFT_HOME, else $XDG_CACHE_HOME/autoft, else
    ~/.cache/autoft."""
    env = os.environ.get("AUTOFT_HOME")
    home = Path(env).expanduser() if env else \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "autoft"
    existing = next((p for p in (home, *home.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():  # every cache write would fail on it, deep inside
        what = "AUTOFT_HOME" if env else "autoft's cache folder (set AUTOFT_HOME to move it)"
        raise AutoftError(f"{what} {home}: {existing} is a file, not a folder")
    return home


def _file_mode() -> int:
    """What open() gives a new file: 0o666 less the umask (mkstemp's own 0o600 is meant for secrets)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write`` on a temp file beside ``path``, then rename it over ``path``: no partial file survives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


# Folders swapped into place. A writer fills `.NAME.tmp-PID@HOST-RAND` beside NAME and calls swap_dir. Where the
# OS can exchange two names atomically (Linux renameat2 RENAME_EXCHANGE) NAME is never missing. Elsewhere the old
# folder is first renamed to `.NAME.old-PID@HOST-RAND`, so a crash between the two renames leaves NAME missing
# for a moment and whole in `.old-*`: recover_dir (every reader's first step) moves it back. An `.old-*` folder is
# always a complete copy (it is only ever made by renaming NAME); anything being deleted is first renamed to a
# `.tmp-*` name, which is never recovered.

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
_RACING = {errno.EEXIST, errno.ENOTEMPTY}  # rename onto a non-empty folder: another process put one there
_SWAP_TRIES = 50
ORPHAN_AGE_S = 3600.0  # a writer's tmp lives for seconds; one this old is a leftover even if its PID is reused


def _load_renameat2() -> Callable[..., int] | None:
    """libc's renameat2 (glibc ≥ 2.28) or None where there is none (non-Linux, old or other libc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()


def _host_tag() -> str:
    """This machine in sibling names: a PID is only checked for liveness on the host that wrote it."""
    return re.sub(r"\W", "_", socket.gethostname())[:32]


def _sibling_prefix(dest: Path, kind: str) -> str:
    return f".{dest.name}.{kind}-"


def _sibling(dest: Path, kind: str) -> Path:
    return dest.with_name(f"{_sibling_prefix(dest, kind)}{os.getpid()}@{_host_tag()}-{secrets.token_hex(4)}")


def write_safetensors(path: str | Path, arrays: Mapping[str, Any]) -> None:
    """safetensors' save_file, with the mode every other file gets (it leaves 0o600 whatever the umask)."""
    from safetensors.numpy import save_file

    save_file(dict(arrays), str(path))
    os.chmod(path, _file_mode())


def make_tmp_dir(dest: str | Path) -> Path:
    """An empty `.NAME.tmp-PID@HOST-RAND` folder beside ``dest`` to fill and then swap_dir into place."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_sibling_prefix(dest, 'tmp')}{os.getpid()}@{_host_tag()}-",
                                dir=dest.parent))
    os.chmod(tmp, _file_mode() | 0o111)  # mkdtemp's 0o700 would hide a bundle from the other users of a run
    return tmp


def _exchange(tmp: Path, dest: Path) -> bool:
    """Atomically swap the two names; False where the OS or the filesystem cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(dest), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:  # e.g. some network and FUSE filesystems, pre-3.15 kernels
        return False
    raise OSError(err, os.strerror(err), str(tmp), None, str(dest))


def _remove(path: Path) -> None:
    """Best effort: a leftover that cannot be deleted now is deleted by a later swap or open."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _discard(path: Path, dest: Path) -> None:
    """Delete an `.old-*` folder: renamed to a `.tmp-*` name first, so no reader recovers a half-deleted copy."""
    doomed = _sibling(dest, "tmp")
    try:
        os.rename(path, doomed)
    except OSError:  # gone (a reader moved it back to dest, another cleaner took it) or not ours to delete
        return
    _remove(doomed)


def remove_tree(path: str | Path) -> None:
    """Remove a folder atomically as others see it: renamed to a hidden `.NAME.tmp-*` sibling, then deleted."""
    path = Path(path)
    if not path.exists():
        return
    _discard(path, path)


def swap_dir(tmp: str | Path, dest: str | Path) -> Path:
    """Put the fully written folder ``tmp`` (beside ``dest``, see make_tmp_dir) at ``dest``, replacing any folder
    there: at every instant ``dest`` is the old folder or the new one (or, on a filesystem without an atomic
    exchange, briefly neither, with the old one kept whole in `.NAME.old-*` for recover_dir). Orphans of
    earlier swaps are deleted afterwards."""
    tmp, dest = Path(tmp), Path(dest)
    if not tmp.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no folder to swap in", str(tmp))
    for _ in range(_SWAP_TRIES):
        if _swap_once(tmp, dest):
            break
    else:
        raise OSError(errno.EBUSY, f"kept changing during {_SWAP_TRIES} tries to replace it", str(dest))
    clean_orphans(dest)
    return dest


def _swap_once(tmp: Path, dest: Path) -> bool:
    """One try; False when another process changed ``dest`` meanwhile (try again)."""
    if not os.path.lexists(dest):
        return _rename_unless_taken(tmp, dest)
    try:
        if _exchange(tmp, dest):
            _remove(tmp)  # tmp's name now holds the old folder
            return True
    except FileNotFoundError:  # dest went away between the check and the exchange
        return False
    old = _sibling(dest, "old")
    try:
        os.rename(dest, old)
    except FileNotFoundError:
        return False
    try:
        done = _rename_unless_taken(tmp, dest)  # a reader may have recovered an `.old-*` into dest meanwhile
    except BaseException:
        _rename_unless_taken(old, dest)
        raise
    _discard(old, dest)
    return done


def _rename_unless_taken(src: Path, dest: Path) -> bool:
    try:
        os.rename(src, dest)
    except OSError as exc:
        if exc.errno in _RACING:
            return False
        raise
    return True


def recover_dir(dest: str | Path) -> Path:
    """The folder to read for ``dest``. After a crash between a fallback swap's two renames, ``dest`` is missing
    and its last complete version sits in `.NAME.old-*`: moved back (or, where the folder is read-only, returned
    where it lies). Orphans of dead writers are deleted. Never raises for want of write permission."""
    dest = Path(dest)
    if dest.name in ("", ".", ".."):
        return dest
    if not os.path.lexists(dest):
        for old in _siblings(dest, "old"):  # newest first
            try:
                os.rename(old, dest)
                break
            except FileNotFoundError:  # another reader or the writer got there first
                continue
            except OSError as exc:
                if exc.errno in _RACING:  # a writer finished meanwhile
                    break
                return old  # read-only folder: read the old copy where it is
    clean_orphans(dest)
    return dest


def swap_in_flight(dest: str | Path) -> bool:
    """Whether a writer may be swapping ``dest`` now (its `.tmp-*` or `.old-*` is there): worth looking again."""
    dest = Path(dest)
    return bool(_siblings(dest, "tmp") or _siblings(dest, "old"))


def _siblings(dest: Path, kind: str) -> list[Path]:
    """`.NAME.KIND-*` entries beside dest, the most recently renamed first."""
    prefix = _sibling_prefix(dest, kind)
    try:
        with os.scandir(dest.parent) as it:
            found = [(e.path, e.stat(follow_symlinks=False)) for e in it if e.name.startswith(prefix)]
    except OSError:
        return []
    found.sort(key=lambda item: max(item[1].st_mtime_ns, item[1].st_ctime_ns), reverse=True)
    return [Path(p) for p, _ in found]


def _owner_gone(entry: Path, kind: str, dest: Path) -> bool:
    """Written by a process that no longer runs (on this host), or long enough ago that it must be a leftover."""
    try:
        st = entry.lstat()
    except OSError:
        return False
    if time.time() - max(st.st_mtime, st.st_ctime) > ORPHAN_AGE_S:
        return True
    m = re.match(r"(\d+)(?:@(\w*))?(?:-|$)", entry.name[len(_sibling_prefix(dest, kind)):])
    if m is None or (m.group(2) is not None and m.group(2) != _host_tag()):
        return False  # another host's (shared storage), or no PID in the name: only age tells
    return not _pid_alive(int(m.group(1)))


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill there terminates the process: only age tells
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def clean_orphans(dest: str | Path) -> None:
    """Delete `.NAME.tmp-*` and `.NAME.old-*` left by dead writers (or older than ORPHAN_AGE_S). An `.old-*` is kept
    while ``dest`` is missing: it is then the only copy."""
    dest = Path(dest)
    for tmp in _siblings(dest, "tmp"):
        if _owner_gone(tmp, "tmp", dest):
            _remove(tmp)
    if not os.path.lexists(dest):
        return
    for old in _siblings(dest, "old"):
        if _owner_gone(old, "old", dest):
            _discard(old, dest)


def check_writable(folder: Path, what: str) -> None:
    """Refuse before writing: the nearest existing folder on the way to ``folder`` must be a writable folder."""
    folder = Path(folder).expanduser().absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise AutoftError(f"{what} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):  # EROFS shows here for root too
        raise AutoftError(f"{what} {folder}: {existing} is not writable")


LOCK_FILE = ".lock"


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
