"""The allow-list .pdparams reader: real paddle.save files round-trip, pickles that would run code are refused."""
from __future__ import annotations

import contextlib
import functools
import os
import pickle
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import paddle
import pytest

from autoft.backbones import create
from autoft.backbones.loading import load_pretrained, read_weights_file
from autoft.backbones.pdparams import read_pdparams
from autoft.config import load_config
from autoft.data import load_for_config
from autoft.errors import WeightsError
from cli_helpers import assert_one_line_exit_2, image, run, search_yaml


def _state() -> dict[str, paddle.Tensor]:
    """One tensor per dtype a state dict holds, plus the shapes that trip readers up: 0-d and empty."""
    return {
        "conv.weight": paddle.to_tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 7),
        "bn._mean": paddle.to_tensor([0.5, -1.25], dtype="float32"),
        "half": paddle.to_tensor([1.5, -2.0, 65504.0], dtype="float16"),
        "double": paddle.to_tensor([[1e-300, 2.0]], dtype="float64"),
        "steps": paddle.to_tensor([7, -3], dtype="int64"),
        "mask": paddle.to_tensor([True, False]),
        "bf16": paddle.ones([2, 2], dtype="bfloat16"),
        "scalar": paddle.to_tensor(3.25),
        "empty": paddle.zeros([0, 3]),
    }


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)
        assert got[key].flags["C_CONTIGUOUS"] and got[key].flags["OWNDATA"] and got[key].flags["WRITEABLE"], key


def _paddle_arrays(path: Path) -> dict[str, np.ndarray]:
    """What Paddle itself reads back (the test's reference; autoft never calls paddle.load)."""
    raw = paddle.load(str(path), return_numpy=True)
    return {k: v for k, v in raw.items() if isinstance(v, np.ndarray)}


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_paddle_save_state_dict_round_trips(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "w.pdparams"
    paddle.save(_state(), str(path), protocol=protocol)
    got = read_pdparams(path)
    _assert_same(got, _paddle_arrays(path))
    assert "StructuredToParameterName@@" not in got  # paddle.save's name table is not a tensor
    assert got["bf16"].dtype == np.uint16  # bfloat16 arrives as its raw bits, as paddle.load gives it


def test_numpy_1_pickles_and_every_array_layout(tmp_path: Path) -> None:
    arrays = {"fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "big_endian": np.arange(4, dtype=">i4"),
              "strided": np.arange(10.0)[::3], "complex": np.array([1 + 2j], dtype=np.complex64)}
    data = pickle.dumps(arrays, protocol=2)
    # the module numpy 1.x names in the files Paddle published (written before numpy 2 moved it)
    assert b"numpy._core.multiarray" in data
    path = tmp_path / "old.pdparams"
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    got = read_pdparams(path)
    _assert_same(got, {k: np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("=")) for k, v in arrays.items()})


def test_nested_paddle_save_keeps_the_top_level_tensors(tmp_path: Path) -> None:
    # Not a plain state dict: paddle.save pickles each tensor as builtins.tuple((name, ndarray)).
    weight = paddle.to_tensor([[1.0, 2.0]])
    path = tmp_path / "checkpoint.pdparams"
    paddle.save({"fc.weight": weight, "epoch": 3, "optimizer": {"lr": 0.1}}, str(path))
    assert read_pdparams(path).keys() == {"fc.weight"}
    np.testing.assert_array_equal(read_pdparams(path)["fc.weight"], weight.numpy())


def test_big_arrays_split_by_protocol_2_are_joined(tmp_path: Path) -> None:
    # paddle.save with protocol 2/3 splits arrays over 1 GiB this way; written by hand to stay small.
    whole = np.arange(12, dtype=np.float32).reshape(3, 4)
    flat = whole.ravel()
    saved = {"small": np.ones(2, np.float32), "w@@.0": flat[:5], "w@@.1": flat[5:10], "w@@.2": flat[10:],
             "UnpackBigParamInfor@@": {"w": {"OriginShape": (3, 4), "slices": ["w@@.0", "w@@.1", "w@@.2"]}}}
    path = tmp_path / "big.pdparams"
    path.write_bytes(pickle.dumps(saved, protocol=2))
    got = read_pdparams(path)
    _assert_same(got, {"small": np.ones(2, np.float32), "w": whole})
    _assert_same(got, _paddle_arrays(path))


def test_a_paddle_save_file_loads_as_model_pretrained(tmp_path: Path) -> None:
    paddle.seed(3)
    source = create("mobilenet_v3_small", 4, pretrained="none")
    path = tmp_path / "mine.pdparams"
    paddle.save(source.state_dict(), str(path))
    assert read_weights_file(path).keys() == source.state_dict().keys()
    paddle.seed(4)
    target = create("mobilenet_v3_small", 4, pretrained="none")
    load_pretrained(target, str(path))
    for key, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[key].numpy(), value.numpy(), err_msg=key)


# --- pickles that run code on a plain unpickler -----------------------------------------------------

def _short(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE


def stack_global_call(module: str, name: str, argument: str) -> bytes:
    """Protocol 4: module.name(argument) through STACK_GLOBAL, inside a dict as paddle.save writes it."""
    call = _short(module) + _short(name) + b"\x93" + b"X" + struct.pack("<I", len(argument.encode()))
    call += argument.encode() + b"\x85R"  # STACK_GLOBAL, BINUNICODE argument, TUPLE1, REDUCE
    return b"\x80\x04" + b"}" + _short("conv.weight") + call + b"s."  # EMPTY_DICT key value SETITEM STOP


class _Payload:
    """Pickles as a call of `fn(*args)`: how a real attacker builds an evil file with pickle itself."""

    def __init__(self, fn: object, *args: object) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.fn, self.args


def _evil_files(tmp_path: Path, helpers: SimpleNamespace, marker: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, the global the refusal must name)."""
    touch = f"touch {marker}"
    create_marker = f"open({str(marker)!r}, 'w').close()"
    legit = {"w": np.ones(3, np.float32)}  # the payload hides among real arrays
    return {
        "os-system-protocol-2": (helpers.forbidden_pickle("os", "system", touch), "os.system"),
        "posix-system-by-pickle": (pickle.dumps({**legit, "x": _Payload(os.system, touch)}, protocol=4),
                                   f"{os.system.__module__}.system"),
        "exec-stack-global": (stack_global_call("builtins", "exec", create_marker), "builtins.exec"),
        "eval-stack-global": (stack_global_call("builtins", "eval", create_marker), "builtins.eval"),
        "partial": (pickle.dumps({**legit, "x": _Payload(functools.partial(os.system, touch))}, protocol=4),
                    "functools.partial"),
        "getattr": (stack_global_call("builtins", "getattr", "x"), "builtins.getattr"),
        "matrix-subclass": (pickle.dumps({"w": np.matrix([[1.0]])}, protocol=4), "numpy.matrix"),
        "masked-subclass": (pickle.dumps({"w": np.ma.masked_array([1.0])}, protocol=4), "numpy.ma.core"),
    }


RUNS_CODE = ["os-system-protocol-2", "posix-system-by-pickle", "exec-stack-global", "eval-stack-global", "partial"]


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix, built only to be refused
@pytest.mark.parametrize("case", RUNS_CODE)
def test_the_payloads_are_real(tmp_path: Path, helpers: SimpleNamespace, case: str) -> None:
    # What paddle.load did with these files: the marker appears. The refusal test below is only meaningful so.
    marker = tmp_path / "MARKER"
    with contextlib.suppress(Exception):  # the call may come back as a value the dict cannot hold
        pickle.loads(_evil_files(tmp_path, helpers, marker)[case][0])
    assert marker.exists()


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.parametrize("case", [*RUNS_CODE, "getattr", "matrix-subclass", "masked-subclass"])
def test_code_running_pickles_are_refused_before_they_run(
        tmp_path: Path, helpers: SimpleNamespace, case: str) -> None:
    marker = tmp_path / "MARKER"
    data, refused = _evil_files(tmp_path, helpers, marker)[case]
    path = tmp_path / "evil.pdparams"
    path.write_bytes(data)
    with pytest.raises(WeightsError) as info:
        read_weights_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and refused in message, message
    assert message.startswith("the .pdparams reader refuses to load "), message
    assert not marker.exists()


@pytest.mark.parametrize(("array", "dtype"), [
    (np.array([1, "rm -rf"], dtype=object), "'O8'"),
    (np.array(["text"]), "'U4'"),
    (np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]), "'V8'"),
    (np.array(["2024-01-01"], dtype="datetime64[D]"), "'M8'"),
])
def test_non_numeric_arrays_are_refused(tmp_path: Path, array: np.ndarray, dtype: str) -> None:
    path = tmp_path / "odd.pdparams"
    path.write_bytes(pickle.dumps({"ok": np.ones(2, np.float32), "odd": array}, protocol=4))
    with pytest.raises(WeightsError, match=rf"^the \.pdparams reader refuses .*odd\.pdparams: array dtype "
                                           rf"{dtype} is not numeric"):
        read_pdparams(path)


@pytest.mark.parametrize("keep", [0, 1, 40, -9])
def test_truncated_or_empty_files_are_one_line_errors(tmp_path: Path, keep: int) -> None:
    whole = tmp_path / "whole.pdparams"
    paddle.save(_state(), str(whole))
    path = tmp_path / "cut.pdparams"
    path.write_bytes(whole.read_bytes()[:keep])
    with pytest.raises(WeightsError, match=r"cut\.pdparams is not a readable Paddle \.pdparams file \(\w+: .*\)$") \
            as info:
        read_pdparams(path)
    assert "\n" not in str(info.value)


def test_array_bytes_must_match_its_shape(tmp_path: Path) -> None:
    data = pickle.dumps({"w": np.arange(4, dtype=np.float32)}, protocol=3)  # protocol 4's frames hold lengths
    raw = np.arange(4, dtype=np.float32).tobytes()
    path = tmp_path / "short.pdparams"
    # the same SHORT_BINBYTES, 4 shorter: the shape says 16 bytes, the data holds 12
    short = data.replace(b"C\x10" + raw, b"C\x0c" + raw[:12])
    assert len(short) == len(data) - 4
    path.write_bytes(short)
    with pytest.raises(WeightsError, match=r"short\.pdparams: array w \(4,\) float32 has 12 bytes, expected 16$"):
        read_pdparams(path)


def test_a_file_without_arrays_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "none.pdparams"
    path.write_bytes(pickle.dumps({"epoch": 3}, protocol=4))
    with pytest.raises(WeightsError, match=r"none\.pdparams holds no arrays$"):
        read_pdparams(path)
    path.write_bytes(pickle.dumps([np.ones(2)], protocol=4))
    with pytest.raises(WeightsError, match=r"none\.pdparams does not hold a state dict \(found list\)$"):
        read_pdparams(path)


def test_cli_train_refuses_evil_pretrained_weights(tmp_path: Path, helpers: SimpleNamespace) -> None:
    # `autoft train` is the CLI path through loading.py; `autoft search` checks model.pretrained up front in
    # config/search (another module), so here the refusal is seen where the weights are read.
    marker = tmp_path / "MARKER"
    evil = tmp_path / "evil.pdparams"
    evil.write_bytes(helpers.forbidden_pickle("os", "system", f"touch {marker}"))
    for cls in ("cat", "dog"):
        for i in range(3):
            image(tmp_path / "data" / cls / f"{i}.png")
    checkpoints = tmp_path / "ckpt"
    config = search_yaml(tmp_path, model={"backbone": "mobilenet_v3_small", "pretrained": str(evil)},
                         train={"checkpoint_dir": str(checkpoints)})
    load_for_config(load_config(config))  # a warm data cache: no "decoding N images" line on stderr
    out = run("train", str(config), cwd=tmp_path)
    assert_one_line_exit_2(out, f"refuses to load os.system from {evil}", checkpoints)
    assert not marker.exists()
