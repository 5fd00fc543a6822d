"""Resumable training checkpoints: model + optimizer (+ strategy extras) as safetensors, the rest as JSON.

A checkpoint is a folder ``epoch_<k>/`` holding ``model.safetensors``, ``optimizer.safetensors`` and
``state.json``; it is written into a temp folder and swapped into place (``autoft._fs.swap_dir``), so a reader
sees all of it or nothing.
No pickle: optimizer accumulators are keyed by the model's structured parameter names (``backbone.0.weight``)
rather than paddle's process-global names (``conv2d_3.w_0``), so a checkpoint loads in another process.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle import nn

from autoft._fs import atomic_write_json, make_tmp_dir, recover_dir, swap_dir, write_safetensors
from autoft.errors import TrialError
from autoft.training.strategies import Strategy

__all__ = ["save_checkpoint", "load_checkpoint", "checkpoint_path", "model_weights", "MODEL_FILE", "OPTIMIZER_FILE",
           "STATE_FILE"]

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
_SEP = "::"  # structured parameter name :: accumulator suffix
_EXTRA = "extra::"


def checkpoint_path(checkpoint_dir: str | Path, epoch: int) -> Path:
    return Path(checkpoint_dir) / f"epoch_{epoch}"


def model_weights(model: nn.Layer) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _create_all_accumulators(optimizer: paddle.optimizer.Optimizer) -> None:
    """Give every parameter of ``optimizer`` its accumulators (moments, velocity…) now.

    Paddle creates them lazily at a parameter's first update, and after ``set_state_dict`` it refuses to create
    one the loaded state lacks. A checkpoint written while some parameters had not trained yet (ULMFiT's frozen
    groups) would therefore break the resumed run when they unfreeze; with all accumulators created (at their
    initial values, exactly what a lazy creation would give) every checkpoint is complete. Strategies always
    pass parameter groups (dicts), which every paddle optimizer's ``_create_accumulators`` accepts.
    """
    block = paddle.static.default_main_program().global_block()
    for group in optimizer._param_groups:
        optimizer._create_accumulators(block, group)


def _optimizer_arrays(model: nn.Layer, strategy: Strategy) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Optimizer state → (arrays keyed 'structured::suffix', JSON-able scalars such as the lr scheduler)."""
    _create_all_accumulators(strategy.optimizer)
    by_paddle_name = {p.name: name for name, p in model.named_parameters()}
    # longest first, so 'linear_1.w_0' never claims 'linear_1.w_01_moment1_0'
    prefixes = sorted(by_paddle_name, key=len, reverse=True)
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for key, value in strategy.optimizer.state_dict().items():
        if not isinstance(value, paddle.Tensor):
            scalars[key] = value
            continue
        owner = next((n for n in prefixes if key.startswith(n + "_")), None)
        if owner is None:
            raise TrialError(f"checkpoint: optimizer state {key!r} belongs to no model parameter")
        arrays[f"{by_paddle_name[owner]}{_SEP}{key[len(owner) + 1:]}"] = value.numpy()
    for key, value in strategy.extra_state().items():
        arrays[_EXTRA + key] = value
    return arrays, scalars


def save_checkpoint(path: str | Path, model: nn.Layer, strategy: Strategy, state: dict[str, Any]) -> Path:
    """Write model, optimizer, strategy extras and ``state`` (JSON-able: epoch, step, …) to folder ``path``."""
    dest = Path(path)
    arrays, scalars = _optimizer_arrays(model, strategy)
    tmp = make_tmp_dir(dest)
    try:
        write_safetensors(tmp / MODEL_FILE, {k: np.ascontiguousarray(v) for k, v in model_weights(model).items()})
        write_safetensors(tmp / OPTIMIZER_FILE, {k: np.ascontiguousarray(v) for k, v in arrays.items()})
        atomic_write_json(tmp / STATE_FILE, {**state, "optimizer": scalars, "global_step": strategy.global_step})
        return swap_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_checkpoint(path: str | Path, model: nn.Layer, strategy: Strategy) -> dict[str, Any]:
    """Load a ``save_checkpoint`` folder into ``model`` and ``strategy``; returns the saved ``state``."""
    from safetensors.numpy import load_file

    path = recover_dir(Path(path))
    files = [path / MODEL_FILE, path / OPTIMIZER_FILE, path / STATE_FILE]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise TrialError(f"checkpoint {path}: missing {', '.join(missing)}")
    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    weights = load_file(str(path / MODEL_FILE))
    own = model.state_dict()
    if set(weights) != set(own):
        diff = sorted(set(weights) ^ set(own))[:5]
        raise TrialError(f"checkpoint {path}: its weights do not fit the model (differing keys: {diff})")
    model.set_state_dict(weights)  # type: ignore[arg-type]  # the stubs say Tensor; numpy arrays load the same
    paddle_names = {name: p.name for name, p in model.named_parameters()}
    opt_state: dict[str, Any] = dict(state.get("optimizer", {}))
    extra: dict[str, np.ndarray] = {}
    for key, value in load_file(str(path / OPTIMIZER_FILE)).items():
        if key.startswith(_EXTRA):
            extra[key[len(_EXTRA):]] = value
            continue
        name, _, suffix = key.partition(_SEP)
        opt_state[f"{paddle_names[name]}_{suffix}"] = paddle.to_tensor(value)
    strategy.optimizer.set_state_dict(opt_state)
    strategy.load_extra_state(extra)
    strategy.set_global_step(int(state["global_step"]))
    return state
