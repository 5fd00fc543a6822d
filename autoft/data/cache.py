"""The decoded-image cache: uint8 .npy arrays per (source fingerprint, preprocessing), shared via memmap.

One entry per image size. When a search draws the image size from its space, the entries of every size are built
together (``load_or_build_sizes``): one pass over the source, each image decoded once and resized to each size.

Layout: <cache_dir>/<fingerprint>/{train,val,test}_{images,labels}.npy + meta.json. A cache entry is
built in a temporary folder and swapped into place (``autoft._fs.swap_dir``), so readers never see half an
entry; when two processes race, the first to publish wins and the loser uses the winner's entry.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from autoft._fs import autoft_home, make_tmp_dir, recover_dir, swap_dir
from autoft.data.dataset import Split
from autoft.data.source import RawSplit, Source, SplitName
from autoft.errors import DataError

__all__ = ["PREPROCESS_VERSION", "MAX_UNREADABLE_FRACTION", "autoft_home", "default_cache_dir", "fingerprint",
           "load_or_build", "load_or_build_sizes"]

PREPROCESS_VERSION = 2  # 2: bit depth from the file, EXIF orientation and transparency as predict reads them
MAX_UNREADABLE_FRACTION = 0.05
_CHUNK = 256
_META = "meta.json"

log = logging.getLogger("autoft.data")


def default_cache_dir() -> Path:
    return autoft_home() / "cache" / "data"


def fingerprint(content_hash: str, image_size: int, params: Mapping[str, Any]) -> str:
    """24 hex chars of sha256 over the source's content hash, the image size and the split parameters."""
    payload = {"content": content_hash, "image_size": image_size, "version": PREPROCESS_VERSION, **params}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def load_or_build(
    source: Source, plan: Mapping[SplitName, RawSplit], key: str, image_size: int, cache_dir: Path
) -> dict[SplitName, Split]:
    """Return the splits from the cache entry `key`, decoding `plan` into it first when it is missing."""
    return load_or_build_sizes(source, plan, {image_size: key}, cache_dir)[image_size]


def load_or_build_sizes(
    source: Source, plan: Mapping[SplitName, RawSplit], keys: Mapping[int, str], cache_dir: Path
) -> dict[int, dict[SplitName, Split]]:
    """The splits of each image size's cache entry (``keys``: size -> entry). The missing entries are built together
    in one pass over the source, each image decoded once and resized to every missing size."""
    found = {size: _try_load(recover_dir(cache_dir / key), key) for size, key in keys.items()}
    missing = {size: keys[size] for size, splits in found.items() if splits is None}
    for size, splits in found.items():
        if splits is not None:
            log.debug("data cache hit: %s", cache_dir / keys[size])
    if not missing:
        return found  # type: ignore[return-value]
    tmps = {size: make_tmp_dir(cache_dir / key) for size, key in missing.items()}
    try:
        _build(tmps, source, plan, missing)
        for size, key in missing.items():
            _publish(tmps[size], cache_dir / key, key)
    finally:
        for tmp in tmps.values():
            shutil.rmtree(tmp, ignore_errors=True)
    for size, key in missing.items():
        found[size] = _try_load(cache_dir / key, key)
        if found[size] is None:
            raise DataError(f"{cache_dir / key}: data cache entry is unreadable right after writing it")
    return found  # type: ignore[return-value]


def _try_load(entry: Path, key: str) -> dict[SplitName, Split] | None:
    try:
        meta = json.loads((entry / _META).read_text())
        if meta.get("fingerprint") != key or meta.get("preprocess_version") != PREPROCESS_VERSION:
            return None
        splits = {
            SplitName(name): Split(
                np.load(entry / f"{name}_images.npy", mmap_mode="r"),
                np.load(entry / f"{name}_labels.npy").astype(np.int64, copy=False),
            )
            for name in meta["counts"]
        }
    except (OSError, ValueError, KeyError):
        return None
    if any(len(splits[SplitName(name)]) != count for name, count in meta["counts"].items()):
        return None
    return splits


def _publish(tmp: Path, entry: Path, key: str) -> None:
    """Swap ``tmp`` in at ``entry`` (replacing a damaged or stale entry) unless another process published a good
    one meanwhile: then the first one stays and this copy is dropped."""
    if _try_load(entry, key) is not None:
        log.debug("data cache: another process wrote %s first; using it", entry)
        return
    swap_dir(tmp, entry)


def _build(tmps: Mapping[int, Path], source: Source, plan: Mapping[SplitName, RawSplit],
           keys: Mapping[int, str]) -> None:
    total = sum(len(raw) for raw in plan.values())
    sizes = tuple(sorted(tmps))
    for key in keys.values():
        _note_build(key)
    log.info("decoding %d images from %s at %s px into %s", total, source.description,
             ", ".join(f"{s}x{s}" for s in sizes), next(iter(tmps.values())).parent)
    unreadable: list[str] = []
    counts = {}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for split, raw in plan.items():
            labels = _decode_split(tmps, split.value, raw, source, pool, unreadable)
            counts[split.value] = int(len(labels))
            if split is SplitName.TRAIN:
                _check_every_class_has_images(source, labels)
    _report_unreadable(source, unreadable, total)
    for size, tmp in tmps.items():
        meta = {
            "fingerprint": keys[size],
            "preprocess_version": PREPROCESS_VERSION,
            "image_size": size,
            "source": source.description,
            "class_names": list(source.class_names),
            "counts": counts,
            "unreadable": unreadable,
        }
        (tmp / _META).write_text(json.dumps(meta, indent=1))


def _note_build(key: str) -> None:
    """With $AUTOFT_CACHE_BUILD_LOG set to a file, every decode appends "<key> <pid>" to it: a count of decodes
    across processes (a trial's Ray worker included) that tests and benchmarks can read."""
    path = os.environ.get("AUTOFT_CACHE_BUILD_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{key} {os.getpid()}\n")


def _decode_split(
    tmps: Mapping[int, Path], name: str, raw: RawSplit, source: Source, pool: ThreadPoolExecutor,
    unreadable: list[str],
) -> np.ndarray:
    """Decode into <name>_images.npy of every size's folder (dropping unreadable files); write and return the kept
    labels."""
    sizes = tuple(sorted(tmps))
    arrays = {size: np.lib.format.open_memmap(tmps[size] / f"{name}_images.full.npy", mode="w+", dtype=np.uint8,
                                              shape=(len(raw), size, size, 3)) for size in sizes}
    ok = np.ones(len(raw), dtype=bool)

    def decode(item: Any) -> list[np.ndarray] | str:
        try:
            return source.decode_many(item, sizes)
        except DataError as exc:
            return str(exc)

    for start in range(0, len(raw), _CHUNK):
        chunk = raw.items[start:start + _CHUNK]
        for offset, result in enumerate(pool.map(decode, chunk)):
            if isinstance(result, str):
                ok[start + offset] = False
                unreadable.append(result)
            else:
                for size, image in zip(sizes, result, strict=True):
                    arrays[size][start + offset] = image
    labels = raw.labels[ok]
    for size, images in arrays.items():
        images.flush()
        _compact(tmps[size] / f"{name}_images.full.npy", tmps[size] / f"{name}_images.npy", images, ok)
        np.save(tmps[size] / f"{name}_labels.npy", labels)
    return labels


def _compact(full: Path, final: Path, images: np.ndarray, ok: np.ndarray) -> None:
    if ok.all():
        full.rename(final)
        return
    kept = np.lib.format.open_memmap(final, mode="w+", dtype=np.uint8, shape=(int(ok.sum()),) + images.shape[1:])
    rows = np.flatnonzero(ok)
    for start in range(0, len(rows), _CHUNK):
        kept[start:start + _CHUNK] = images[rows[start:start + _CHUNK]]
    kept.flush()
    full.unlink()


def _check_every_class_has_images(source: Source, labels: np.ndarray) -> None:
    present = set(np.unique(labels).tolist())
    missing = [name for i, name in enumerate(source.class_names) if i not in present]
    if missing:
        raise DataError(f"{source.description}: class(es) {missing} have no readable training images")


def _report_unreadable(source: Source, unreadable: list[str], total: int) -> None:
    if not unreadable:
        return
    first = "; ".join(unreadable[:3]) + (" …" if len(unreadable) > 3 else "")
    if len(unreadable) > MAX_UNREADABLE_FRACTION * total:
        raise DataError(f"{source.description}: {len(unreadable)} of {total} images are unreadable "
                        f"(more than {MAX_UNREADABLE_FRACTION:.0%}): {first}")
    log.warning("skipped %d unreadable image(s) of %d in %s: %s", len(unreadable), total,
                source.description, first)

