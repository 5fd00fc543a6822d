"""The static graph and Paddle's inference engine, shared by export and predict: a paddle.jit export of a
predictor's model (``jit_save``), the files it makes, the engine that runs it (``InferenceRunner``), the
export cached by weights hash (``cached_export``) and the fixed images every export is checked on. Every trace
goes through ``_save_static``, which clears what a failed trace leaves in Paddle (``trace_leftovers_cleared``)."""
from __future__ import annotations

import contextlib
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from autoft._fs import atomic_write_json, autoft_home, clean_orphans, make_tmp_dir, swap_dir
from autoft.errors import BundleError
from autoft.run.bundle import META_FILE

__all__ = ["TOLERANCE", "INFERENCE_DIR", "PREFIX", "is_exported", "program_file", "jit_save", "export_layer",
           "trace_leftovers_cleared", "check_batch", "InferenceRunner", "cached_export"]

TOLERANCE = 1e-4
INFERENCE_DIR = "inference"
PREFIX = "inference"
_PROGRAM_SUFFIXES = (".json", ".pdmodel")


def is_exported(folder: str | Path) -> bool:
    """A Paddle inference export with its bundle.json (what ``export_bundle(..., "paddle")`` writes)."""
    folder = Path(folder)
    return (folder / META_FILE).is_file() and any((folder / f"{PREFIX}{s}").is_file() for s in _PROGRAM_SUFFIXES)


def program_file(folder: Path) -> Path:
    """inference.json (Paddle 3's PIR) or inference.pdmodel (older Paddle)."""
    for suffix in _PROGRAM_SUFFIXES:
        if (folder / f"{PREFIX}{suffix}").is_file():
            return folder / f"{PREFIX}{suffix}"
    raise BundleError(f"{folder}: no {PREFIX}.json or {PREFIX}.pdmodel (not a Paddle inference export)")


def check_batch(size: int, count: int) -> np.ndarray:
    """Fixed pseudo-images (uint8 NHWC), the same on every run: smooth gradients plus noise."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    base = (ramp[None, :, None, None] + ramp[None, None, :, None]) / 2
    noise = rng.normal(0, 40, size=(count, size, size, 3)).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@contextlib.contextmanager
def trace_leftovers_cleared() -> Iterator[None]:
    """Around a paddle.jit trace: what it left in dy2static's global recorders is dropped when it ends.

    Paddle (3.3.1) records a trace's parameters there under ``id(main_program)`` and pops them only when the trace
    succeeds (``graph_tracing_guard`` has no ``finally``). After a failed trace (a layer that cannot be traced,
    which ``train.eval_engine: auto`` then evaluates with the dynamic graph) they outlive their program, and the
    next trace whose program is allocated at the same address takes them: ``paddle.jit.save`` reads a value of
    the freed program and the process dies of SIGSEGV. A trace runs in one thread of a process, so any entry
    added during the block is its own. The one place autoft reaches into these private names (pinned by
    tests/serving/test_trace_leftovers.py)."""
    from paddle.jit.dy2static.parameter_recorder import _global_inplace_map, _global_parameter_recorder

    tables = (_global_parameter_recorder.params_dict, _global_parameter_recorder.tensor2value,
              _global_inplace_map.params_dict)
    before = [set(table) for table in tables]
    try:
        yield
    finally:
        for table, kept in zip(tables, before, strict=True):
            for key in set(table) - kept:
                del table[key]


def _save_static(layer: Any, image_size: int, dest: Path) -> None:
    """``layer`` (put in eval mode) traced on NCHW float32 images and saved as ``dest/inference.*``."""
    import paddle

    dest.mkdir(parents=True, exist_ok=True)
    layer.eval()
    spec = paddle.static.InputSpec([None, 3, image_size, image_size], "float32", name="image")
    with trace_leftovers_cleared():
        paddle.jit.save(layer, str(dest / PREFIX), input_spec=[spec])


def jit_save(predictor: Any, dest: Path) -> tuple[Path, ...]:
    """``predictor.model`` as a static graph in ``dest`` (plus its bundle.json); → the files written."""
    _save_static(predictor.model, predictor.meta.image_size, dest)
    atomic_write_json(dest / META_FILE, predictor.meta.to_json())  # the meta of these weights, not a re-read
    return tuple(sorted(p for p in dest.iterdir() if p.name.startswith(PREFIX) or p.name == META_FILE))


def export_layer(layer: Any, image_size: int, dest: Path) -> Path:
    """``layer`` (put in eval mode) as a static inference program in ``dest``; → the program file. Any layer that
    takes an NCHW float32 batch: a classifier, or a backbone alone (the feature cache)."""
    _save_static(layer, image_size, dest)
    return program_file(dest)


def _onednn_available() -> bool:
    from paddle.base import core

    check = getattr(core, "is_compiled_with_onednn", None) or getattr(core, "is_compiled_with_mkldnn", None)
    return bool(check()) if check is not None else False


class InferenceRunner:
    """paddle.inference on a jit export: the optimised static graph (tens of times the dynamic graph's speed on
    CPU, with oneDNN where Paddle was built with it; the GPU's own config when ``gpu``)."""

    def __init__(self, folder: Path, threads: int, gpu: bool, gpu_id: int = 0) -> None:
        from paddle import inference

        config = inference.Config(str(program_file(folder)), str(folder / f"{PREFIX}.pdiparams"))
        if gpu:
            config.enable_use_gpu(256, gpu_id)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(max(1, threads))
            if _onednn_available():
                config.enable_mkldnn()
        config.disable_glog_info()
        self.predictor = inference.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.input.reshape(list(x.shape))
        self.input.copy_from_cpu(np.ascontiguousarray(x, dtype=np.float32))
        self.predictor.run()
        return self.output.copy_to_cpu()


def cached_export(predictor: Any) -> Path:
    """<AUTOFT_HOME>/cache/inference/<hash of the weights + image size>/, exported once and swapped into place;
    when another process published it meanwhile, theirs stays."""
    key = f"{predictor.weights_digest}:{predictor.meta.backbone}:{predictor.meta.image_size}"
    folder = autoft_home() / "cache" / "inference" / hashlib.sha256(key.encode()).hexdigest()[:24]
    if (folder / META_FILE).is_file():
        return folder
    tmp = make_tmp_dir(folder)
    try:
        jit_save(predictor, tmp)
        if not (folder / META_FILE).is_file():
            swap_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    clean_orphans(folder)  # the tmp folders of exports killed midway
    return folder
