"""The curve recorder (benchmarks/record_curves.py) of the seeded tables (issue 27): a conditional grid records a
combination the strategy does not tell apart once, every configuration is trained once per seed with autoft's own
trainer, and a table resumes: rows without a seed (the tables recorded before) are seed 0, a seed added later is
recorded alone."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.record_curves import ADAMW_DECAY_READS_NO_OPTIMIZER, TABLES, grid, pinned, record


def _tiny(seeds: list[int]) -> dict[str, Any]:
    """Three configurations (adamw_decay reads no optimizer: two of the product's four are one), 1 epoch on 20
    bundled images at 32 px, from random weights."""
    return {"title": "tiny", "dataset": "fashion", "mode": "full", "seeds": seeds,
            "config": {"name": "tiny",
                       "data": {"dataset": "fashion-mnist-demo", "image_size": 32, "max_train_per_class": 2,
                                "max_val_per_class": 2},
                       "model": {"backbone": "efficientnet_lite0", "pretrained": "none"},
                       "train": {"epochs": 1, "batch_size": 8, "learning_rate": 0.01, "eval_interval": "epoch",
                                 "log_interval": 50, "device": "cpu"}},
            "space": {"optimizer": {"type": "categorical", "choices": ["adam", "momentum"]},
                      "strategy": {"type": "categorical", "choices": ["default", "adamw_decay"]}},
            "bins": {}, "pins": [ADAMW_DECAY_READS_NO_OPTIMIZER]}


def test_a_pinned_grid_records_what_the_strategy_does_not_read_once() -> None:
    table = _tiny([0])
    assert grid(table) == [{"optimizer": "adam", "strategy": "default"},
                           {"optimizer": "adamw", "strategy": "adamw_decay"},
                           {"optimizer": "momentum", "strategy": "default"}]
    assert pinned({"optimizer": "momentum", "strategy": "adamw_decay"}, table["pins"]) == {
        "optimizer": "adamw", "strategy": "adamw_decay"}
    assert pinned({"optimizer": "momentum", "strategy": "default"}, table["pins"])["optimizer"] == "momentum"
    for name, spec in TABLES.items():  # the committed tables' grids: no two rows of one fine-tune
        if "adamw_decay" in spec["space"].get("strategy", {}).get("choices", []) and "pins" in spec:
            assert {p["optimizer"] for p in grid(spec) if p["strategy"] == "adamw_decay"} == {"adamw"}, name


@pytest.mark.slow  # three worker pools (each imports paddle): ~30 s on 2 busy cores
def test_seeded_rows_are_recorded_per_seed_and_a_table_resumes(tmp_path: Path) -> None:
    out = tmp_path / "curves-tiny.json"
    record("tiny", 1, False, table=_tiny([0]), out=out)
    first = json.loads(out.read_text())
    assert first["seeds"] == [0] and first["grid_size"] == 3 and first["recorded"] == 3
    assert {(r["index"], r["seed"]) for r in first["configs"]} == {(0, 0), (1, 0), (2, 0)}
    for row in first["configs"]:  # the format recorded before seeds: no seed in a row
        del row["seed"]
    out.write_text(json.dumps(first))

    # a second seed added: the seedless rows count as seed 0, so only seed 1 is trained, 2 runs now and 1 later
    record("tiny", 1, False, limit=2, table=_tiny([0, 1]), out=out)
    partial = json.loads(out.read_text())
    assert partial["recorded"] == 5 and partial["recorded_configs"] == 2
    record("tiny", 1, False, table=_tiny([0, 1]), out=out)
    done = json.loads(out.read_text())
    rows = {(r["index"], r.get("seed", 0)): r for r in done["configs"]}
    assert sorted(rows) == [(i, s) for i in range(3) for s in (0, 1)]
    assert done["recorded"] == 6 and done["recorded_configs"] == 3 and done["seeds"] == [0, 1]
    for row in first["configs"]:  # the first sitting's rows are kept as they were
        assert rows[(row["index"], 0)] == row
    for (index, _seed), row in rows.items():
        assert row["params"] == grid(_tiny([0]))[index]
        assert row["error"] is None and len(row["val_acc"]) == len(row["val_loss"]) == 1
    # the seed reaches the trainer (data order, the head's initial weights): seeds 0 and 1 train differently
    assert all(rows[(i, 0)]["val_loss"] != rows[(i, 1)]["val_loss"] for i in range(3))
