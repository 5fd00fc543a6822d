"""7. `autoft --help` wall time (interpreter start included): the CLI must not import paddle, ray, optuna or pandas."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks import Goal, Recorder, median

REPEATS = 9


def _once(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    rec = Recorder("cli_help", Goal("`autoft --help` wall seconds", "<", 0.6))
    autoft = str(Path(sys.executable).parent / "autoft")
    bare = [sys.executable, "-c", "pass"]
    _once([autoft, "--help"])  # warm the page cache
    helps, pythons = [], []
    for _ in range(REPEATS):
        helps.append(_once([autoft, "--help"]))
        pythons.append(_once(bare))
    value = median(helps)
    summary = f"`autoft --help` {value:.3f}s median of {REPEATS} (bare `python -c pass` {median(pythons):.3f}s)"
    rec.finish(value, summary,
               {"help_seconds": [round(v, 4) for v in helps], "python_startup_seconds": [round(v, 4) for v in pythons],
                "median_help_s": round(value, 4), "median_python_s": round(median(pythons), 4)})


if __name__ == "__main__":
    main()
