"""A bundle is a folder: model.safetensors + bundle.json. Saving is atomic; loading never unpickles.

This module imports neither paddle nor ray: weights travel as numpy arrays.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoft._fs import atomic_write_json, make_tmp_dir, recover_dir, swap_dir, swap_in_flight, write_safetensors
from autoft.errors import BundleError

__all__ = ["BundleMeta", "Bundle", "BundleReplaced", "save_bundle", "load_bundle", "is_bundle", "copy_bundle",
           "check_weights_fit", "WEIGHTS_FILE", "META_FILE", "MAX_IMAGE_SIZE"]

WEIGHTS_FILE = "model.safetensors"
META_FILE = "bundle.json"
FORMAT_VERSION = 1
MAX_IMAGE_SIZE = 4096  # far above any backbone's input; a larger value is a typo that would exhaust memory
_READ_TRIES = 5

Rule = Callable[[str, str, Any], Any]  # (file, key, value) -> the checked value, or raises BundleError


class BundleReplaced(BundleError):
    """The folder was swapped for a newer bundle while it was being read (a search promoting best_model/)."""


@dataclass(frozen=True)
class BundleMeta:
    backbone: str
    num_classes: int
    class_names: tuple[str, ...]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    hparams: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    num_train_samples: int = 0
    head_hidden: int = 0  # the head's hidden width (model.head_hidden); 0 is a linear head
    autoft_version: str = ""
    paddle_version: str = ""
    created: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.num_classes != len(self.class_names):
            raise BundleError(f"bundle: num_classes={self.num_classes} but {len(self.class_names)} class names")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["class_names"] = list(self.class_names)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], where: str) -> BundleMeta:
        """Check every field of a parsed bundle.json (``where`` names the file); unknown keys are ignored."""
        missing = [k for k in ("backbone", "num_classes", "class_names", "image_size", "mean", "std") if k not in raw]
        if missing:
            raise BundleError(f"{where}: lacks {', '.join(missing)}")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in names}
        for key, rule in _RULES.items():
            if key in kwargs:
                kwargs[key] = rule(where, key, kwargs[key])
        if kwargs["num_classes"] != len(kwargs["class_names"]):
            raise _bad(where, "num_classes", f"must equal the number of class_names ({len(kwargs['class_names'])})",
                       kwargs["num_classes"])
        return cls(**kwargs)


def _bad(where: str, key: str, rule: str, value: Any) -> BundleError:
    shown = repr(value)
    return BundleError(f"{where}: {key}: {rule}, got {shown if len(shown) <= 60 else shown[:57] + '...'}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(low: int, high: int | None, what: str) -> Rule:
    def rule(where: str, key: str, value: Any) -> int:
        if not _is_int(value) or value < low or (high is not None and value > high):
            span = f"in {low}..{high}" if high is not None else f">= {low}"
            raise _bad(where, key, f"must be a whole number{what} {span}", value)
        return value
    return rule


def _text(non_empty: bool) -> Rule:
    def rule(where: str, key: str, value: Any) -> str:
        if not isinstance(value, str) or (non_empty and not value):
            raise _bad(where, key, "must be a non-empty string" if non_empty else "must be a string", value)
        return value
    return rule


def _rgb(positive: bool) -> Rule:
    """mean/std: one finite number per RGB channel (std > 0: images are divided by it)."""
    def rule(where: str, key: str, value: Any) -> tuple[float, float, float]:
        numbers = isinstance(value, list) and len(value) == 3 and all(
            (_is_int(v) or isinstance(v, float)) and math.isfinite(v) for v in value)
        if not numbers or (positive and min(value) <= 0):
            raise _bad(where, key, "must be 3 finite numbers > 0 (R, G, B)" if positive
                       else "must be 3 finite numbers (R, G, B)", value)
        return float(value[0]), float(value[1]), float(value[2])
    return rule


def _class_names(where: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _bad(where, key, "must be a non-empty list of strings", value)
    seen: set[str] = set()
    for name in value:
        if name in seen:
            raise _bad(where, key, f"must not repeat a class ({name!r} twice)", value)
        seen.add(name)
    return tuple(value)


def _mapping(where: str, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(where, key, "must be a JSON object", value)
    return value


def _format_version(where: str, key: str, value: Any) -> int:
    _count(1, None, "")(where, key, value)
    if value > FORMAT_VERSION:
        raise _bad(where, key, f"is newer than this autoft reads ({FORMAT_VERSION}); upgrade autoft", value)
    return value


_RULES: dict[str, Rule] = {
    "backbone": _text(non_empty=True),
    "class_names": _class_names,
    "num_classes": _count(1, None, ""),
    "image_size": _count(1, MAX_IMAGE_SIZE, " of pixels"),
    "mean": _rgb(positive=False),
    "std": _rgb(positive=True),
    "hparams": _mapping,
    "metrics": _mapping,
    "data_fingerprint": _text(non_empty=False),
    "num_train_samples": _count(0, None, ""),
    "head_hidden": _count(0, 16384, ""),
    "autoft_version": _text(non_empty=False),
    "paddle_version": _text(non_empty=False),
    "created": _text(non_empty=False),
    "format_version": _format_version,
}


@dataclass(frozen=True)
class Bundle:
    path: Path
    meta: BundleMeta
    weights_id: tuple[int, ...] | None = field(default=None, compare=False, repr=False)  # see _file_id

    def weights(self) -> dict[str, np.ndarray]:
        """The weights that belong to ``meta``: BundleReplaced if a newer bundle was swapped in since load_bundle."""
        from safetensors.numpy import load_file

        file = self.path / WEIGHTS_FILE
        try:
            arrays = load_file(str(file))
        except Exception as exc:  # safetensors raises its own error types
            self._check_unchanged(file)  # gone mid-swap is not a broken file
            raise BundleError(f"{file}: cannot read weights ({exc})") from None
        self._check_unchanged(file)
        return arrays

    def _check_unchanged(self, file: Path) -> None:
        if self.weights_id is not None and _file_id(file) != self.weights_id:
            raise BundleReplaced(f"{self.path}: replaced by a newer bundle while it was read; load it again")


def _file_id(path: Path) -> tuple[int, ...] | None:
    """Which file ``path`` names now: a swapped-in bundle's weights are another file (a rename keeps these)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def check_weights_fit(weights: Mapping[str, np.ndarray], expected: Mapping[str, Sequence[int]], where: str,
                      model: str) -> None:
    """One BundleError line unless ``weights`` has exactly ``expected``'s tensor names and shapes (``model`` says
    what expects them). Paddle's set_state_dict only warns on a wrong shape and keeps the random tensor."""
    missing, unexpected = set(expected) - set(weights), set(weights) - set(expected)
    if missing or unexpected:
        names = sorted(missing)[:3] or sorted(unexpected)[:3]
        raise BundleError(f"{where}: weights do not fit {model}: {len(missing)} missing, {len(unexpected)} "
                          f"unexpected (e.g. {', '.join(names)})")
    wrong = [(k, list(weights[k].shape), [int(d) for d in shape]) for k, shape in expected.items()
             if tuple(weights[k].shape) != tuple(int(d) for d in shape)]
    if wrong:
        name, got, want = wrong[0]
        more = {1: "", 2: " (1 more tensor differs)"}.get(len(wrong), f" ({len(wrong) - 1} more tensors differ)")
        raise BundleError(f"{where}: tensor {name} has shape {got}, but {model} needs {want}{more}")


def _versions() -> tuple[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def get(*names: str) -> str:
        for name in names:
            try:
                return version(name)
            except PackageNotFoundError:
                continue
        return ""

    return get("autoft"), get("paddlepaddle", "paddlepaddle-gpu")


def save_bundle(path: str | Path, weights: Mapping[str, np.ndarray], meta: BundleMeta) -> Path:

    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    autoft_v, paddle_v = _versions()
    meta = dataclasses.replace(meta, autoft_version=meta.autoft_version or autoft_v,
                               paddle_version=meta.paddle_version or paddle_v,
                               created=meta.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    tmp = make_tmp_dir(dest)
    try:
        arrays = {k: np.ascontiguousarray(v) for k, v in weights.items()}
        write_safetensors(tmp / WEIGHTS_FILE, arrays)
        atomic_write_json(tmp / META_FILE, meta.to_json())
        swap_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def copy_bundle(src: str | Path, dest: str | Path) -> Path:
    """Copy a bundle folder atomically (used to promote the winner to best_model/)."""
    src, dest = load_bundle(src).path, Path(dest)
    tmp = make_tmp_dir(dest)
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        swap_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _has_files(path: Path) -> bool:
    return (path / META_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def _find(path: Path) -> Path | None:
    """The bundle folder to read for ``path`` (recovered first if a crash mid-swap left it in `.NAME.old-*`), or
    None. Where a swap has no atomic exchange ``path`` is missing for an instant: retried while one is in flight,
    and once more after a look that saw none (a whole swap can fall between checking the files and the siblings)."""
    quiet = 0  # looks in a row that saw no swap in flight: one may have begun and ended between two checks
    for attempt in range(4 * _READ_TRIES):
        folder = recover_dir(path)
        if _has_files(folder):
            return folder
        quiet = 0 if swap_in_flight(path) else quiet + 1
        if quiet >= 2:
            return None
        time.sleep(0.001 * min(attempt, 10))
    return None


def is_bundle(path: str | Path) -> bool:
    """A folder with bundle.json and the weights (after recovering a crashed swap's `.NAME.old-*`, see _find)."""
    return _find(Path(path)) is not None


def load_bundle(path: str | Path) -> Bundle:
    """Read and check bundle.json; weights are read on demand by Bundle.weights()."""
    path = Path(path)
    for _ in range(_READ_TRIES):
        folder = _find(path)
        if folder is None:
            if not path.exists():
                raise BundleError(f"{path}: no such bundle folder")
            raise BundleError(f"{path}: not a bundle (needs {META_FILE} and {WEIGHTS_FILE}); "
                              "give a run's best_model/ folder or a trial's bundle/")
        before = _file_id(folder / WEIGHTS_FILE)
        raw = _read_json(folder / META_FILE)
        if raw is not None and before is not None and _file_id(folder / WEIGHTS_FILE) == before:
            # the weights file was the same before and after: bundle.json came from the same folder
            return Bundle(path=folder, meta=BundleMeta.from_json(raw, str(folder / META_FILE)), weights_id=before)
    raise BundleReplaced(f"{path}: replaced {_READ_TRIES} times while it was read; try again")


def _read_json(file: Path) -> dict[str, Any] | None:
    """bundle.json's object; None when the file went away (its folder was swapped out meanwhile)."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise BundleError(f"{file}: not UTF-8 text") from None
    except OSError as exc:
        raise BundleError(f"{file}: cannot read ({exc.strerror})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{file}: must hold a JSON object, got {type(raw).__name__}")
    return raw
