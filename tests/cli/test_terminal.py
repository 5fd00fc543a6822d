"""What a user sees in a real terminal: `autoft leaderboard` run under a pty of 80 and 160 columns, the live line
fitted to a width, and the ETA that does not jump. The run folder is made of real trial.json files."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from autoft.cli.display import EtaSmoother, progress_line
from autoft.run.records import TrialRecord, TrialStatus
from autoft.search.progress import Progress

BIN = Path(sys.executable).parent
PARAMS = ("learning_rate", "regularization_coeff", "batch_size", "optimizer", "strategy", "head_hidden")


def _run_folder(tmp: Path) -> Path:
    run = tmp / "fashion-mnist-20261202-101112"
    rows = [("21f57735_3", TrialStatus.COMPLETED, [0.8811, 0.9026], 1.0e-5),
            ("a0b1c2d3_12", TrialStatus.STOPPED, [0.8523], 3.2e-4),
            ("e4f5a6b7_7", TrialStatus.INTERRUPTED, [0.6612], 7.5e-6),
            ("c8d9e0f1_1", TrialStatus.FAILED, [], 2.0e-3)]
    for i, (tid, status, accs, reg) in enumerate(rows):
        params = {"learning_rate": 5.37e-4 * (i + 1), "regularization_coeff": reg, "batch_size": 64,
                  "optimizer": "adamw", "strategy": "ulmfit", "head_hidden": 1024}
        hist = tuple({"epoch": e + 1, "val_acc": a, "val_loss": 0.3 + e / 10} for e, a in enumerate(accs))
        error = ("TrialError: the loss became nan at epoch 1 step 40 (learning_rate too high for this batch size?)"
                 if status is TrialStatus.FAILED else None)
        TrialRecord(tid, params, status, history=hist, error=error, started=float(i),
                    seconds=1234.5 / (i + 1)).save(run / "trials" / tid)
    return run


def _in_pty(args: list[str], columns: int) -> str:
    """Run autoft with its stdout on a pty of ``columns`` columns; everything it printed, escapes removed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "TERM")}
    proc = subprocess.Popen([str(BIN / "autoft"), *args], stdin=slave, stdout=slave, stderr=slave,
                            env={**env, "TERM": "xterm-256color"}, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.time() + 120
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed its side
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    text = b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


@pytest.mark.parametrize("columns", [80, 120])
def test_the_leaderboard_fits_the_terminal_and_says_how_to_see_the_rest(tmp_path: Path, columns: int) -> None:
    run = _run_folder(tmp_path)
    out = _in_pty(["leaderboard", str(run)], columns)
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[0] == "Leaderboard (ranked by val_acc)"
    long = [line for line in lines if len(line) > columns]
    assert all(line.strip() == f"{run}" for line in long), long  # only the run's path, kept whole, may not fit
    table = lines[1:7]
    for tid in ("21f57735_3", "a0b1c2d3_12", "e4f5a6b7_7", "c8d9e0f1_1"):  # ids whole, in rank order
        assert sum(tid in line for line in table) == 1, (tid, out)
    assert [line.split()[1] for line in table[2:]] == ["21f57735_3", "a0b1c2d3_12", "e4f5a6b7_7", "c8d9e0f1_1"]
    assert re.search(r"\b0\.9026\b", table[2]) and re.search(r"\b0\.8523\b", table[3])  # numbers whole
    header = table[0].split()
    assert header[:4] == ["rank", "trial_id", "status", "lr"]  # searched params by their short names
    hint = " ".join(lines[7:])
    assert f"autoft leaderboard {run} --wide" in hint and "leaderboard.csv" in hint
    if columns == 80:
        assert "val_loss" in hint and "val_loss" not in header
    wide = _in_pty(["leaderboard", str(run), "--wide"], columns)
    wide_header = [line for line in wide.splitlines() if line.startswith("rank")][0].split()
    assert wide_header == ["rank", "trial_id", "status", *PARAMS, "val_acc", "val_loss", "best_epoch",
                           "epochs_run", "seconds", "error"]
    assert "--wide" not in wide.splitlines()[-1]


def test_piped_leaderboard_is_the_markdown_table(tmp_path: Path) -> None:
    run = _run_folder(tmp_path)
    out = subprocess.run([str(BIN / "autoft"), "leaderboard", str(run)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == ("| rank | trial_id | status | " + " | ".join(PARAMS) +
                                          " | val_acc | val_loss | best_epoch | epochs_run | seconds | error |")
    assert "| 1 | 21f57735_3 | completed |" in out.stdout


def _progress(**kw: object) -> Progress:
    base = dict(budget=40, done=12, running=2, stopped=9, failed=1, interrupted=0, best_val_acc=0.9026,
                best_params={"learning_rate": 5.37e-4, "regularization_coeff": 9.44e-7, "batch_size": 64,
                             "optimizer": "adamw", "head_hidden": 1024, "dropout": 0.233},
                elapsed=725.0, last_event="21f57735_3 completed")
    base.update(kw)
    return Progress(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("width", [60, 80, 120, 200, 300])
def test_the_live_line_keeps_counts_best_and_eta_first(width: int) -> None:
    line = progress_line(_progress(), width=width, eta=481.0)
    assert len(line) <= width, line
    assert line.startswith("trials 22/40") and "best val_acc 0.9026" in line and line.endswith("eta ~8m01s")
    if width >= 200:
        assert "12m05s" in line and "dropout=0.233" in line
    if width == 300:
        assert "learning_rate=0.000537, regularization_coeff=9.44e-07" in line
    if width == 200:
        assert "lr=5.4e-04, reg=9.4e-07, batch=64" in line
    if width == 120:
        assert "(lr=5.4e-04, …)" in line  # params shortened, then cut, before the counts go
    if width <= 80:
        assert "lr=" not in line  # params dropped before the counts, best and ETA


def test_the_eta_does_not_jump_between_events() -> None:
    smoother = EtaSmoother()
    etas = []
    # trials end at an uneven pace: a burst of quick ASHA stops, then slow finishers
    for finished, elapsed in [(1, 60), (2, 62), (3, 64), (4, 200), (5, 420), (6, 425), (7, 700), (8, 710)]:
        eta = smoother.update(_progress(budget=20, done=finished, stopped=0, failed=0, elapsed=float(elapsed)))
        etas.append(eta)
    for before, after in zip(etas, etas[1:]):
        assert 0.5 <= after / before <= 2.0, etas
    capped = EtaSmoother(time_budget=900.0)
    assert capped.update(_progress(budget=20, done=1, stopped=0, failed=0, elapsed=600.0)) == 300.0


@pytest.mark.parametrize("command", [["--help"], ["search", "--help"], ["predict", "--help"], ["datasets", "--help"]])
def test_help_fits_80_columns_with_whole_option_names(command: list[str]) -> None:
    out = _in_pty(command, 80)
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert "<bool>" not in out and "--no-" not in out  # flags are flags
    cut = [line for line in lines[1:] if "…" in line or line.rstrip().endswith("...")]
    assert not cut, cut  # no summary or option cut short
    if command == ["search", "--help"]:
        for option in ("--results-dir", "--evaluate-test", "--warm-start", "--ray-dashboard", "--storage"):
            assert re.search(rf"^\s+{option}\b", out, re.M), option
        assert "autoft[client]" in out and "--set KEY=VALUE" in out


@pytest.mark.slow
def test_a_real_search_in_an_80_column_pty_keeps_its_live_line_whole(shapes_dir: Path, tmp_path: Path) -> None:
    import yaml

    from searched_run import shapes_config

    raw = shapes_config(shapes_dir, trials=4, max_concurrent=2, scheduler="fifo")
    raw["train"]["epochs"] = 1
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    screen = _in_pty(["search", str(config), "--results-dir", str(tmp_path / "results"), "--name", "pty"], 80)
    frames = [seg for line in screen.split("\n") for seg in line.split("\r") if "trials " in seg and "/4" in seg]
    assert frames, screen[-2000:]
    assert all(len(f.rstrip()) <= 80 for f in frames), [f for f in frames if len(f.rstrip()) > 80]
    assert any("eta ~" in f for f in frames), frames  # the ETA shows at 80 columns once a trial has finished
    assert all(f.lstrip().startswith("trials ") for f in frames), frames  # never cut at the front
    table = [line for line in screen.splitlines() if line.startswith("   ") and "pty" not in line]
    assert table and all(len(line) <= 80 for line in table)
