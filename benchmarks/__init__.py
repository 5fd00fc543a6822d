"""Ratio benchmarks: each module measures autoft against a baseline side by side in one process run (the machine
may be shared and noisy, so only ratios of interleaved measurements are compared with the goals), writes
``benchmarks/results/<name>.json`` and prints one summary line. ``python -m benchmarks [NAME...]`` runs them."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BENCHMARKS", "RESULTS", "Goal", "Recorder", "interleave", "paired_ratio", "median", "machine", "quiet"]

BENCHMARKS = ("trainer_step", "search_efficiency", "preprocess_cache", "feature_cache", "predict_throughput",
              "sample_efficiency", "cli_help", "eval_throughput", "train_throughput",
              "demo_search", "train_command", "replay", "zero_config")
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Goal:
    """``value op target``, e.g. Goal("trainer / bare loop images/s", ">=", 0.95)."""

    metric: str
    op: str  # ">=" | "<=" | "<"
    target: float

    def met(self, value: float) -> bool:
        return {">=": value >= self.target, "<=": value <= self.target, "<": value < self.target}[self.op]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def interleave(runs: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Call each measurement in turn ``warmup + repeats`` rounds, the order reversed every round (A B, B A, …), and
    keep the last ``repeats`` values: slow phases of a shared machine hit both sides alike."""
    out: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for i in range(warmup + repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            value = runs[name]()
            if i >= warmup:
                out[name].append(value)
    return out


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """The median of the per-round ratios a[i] / b[i]: robust to load that drifts between rounds."""
    return median([x / y for x, y in zip(a, b)])


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return ""

    return {"cpus": os.cpu_count(), "machine": platform.machine(), "processor": _cpu_model(),
            "python": platform.python_version(), "paddlepaddle": ver("paddlepaddle") or ver("paddlepaddle-gpu"),
            "ray": ver("ray"), "optuna": ver("optuna"), "gpu": "none"}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


class Recorder:
    """Collects one benchmark's figures; ``finish`` writes the JSON and prints the summary line."""

    def __init__(self, name: str, goal: Goal) -> None:
        self.name, self.goal = name, goal
        self.started = time.time()
        self.load_start = os.getloadavg()

    def finish(self, value: float, summary: str, figures: dict[str, Any], notes: str = "",
               also: bool = True, **top: Any) -> dict[str, Any]:
        """``also``: a second condition of the goal (a 90th percentile, say), which ``met`` requires too; ``top``:
        fields beside ``value`` (the replay's ``seeds``)."""
        met = self.goal.met(value) and also
        result = {"name": self.name, "goal": {"metric": self.goal.metric, "op": self.goal.op,
                                              "target": self.goal.target},
                  "value": round(value, 4), "met": met, **top, "summary": summary, "figures": figures,
                  "notes": notes,
                  "loadavg_start": [round(v, 2) for v in self.load_start],
                  "loadavg_end": [round(v, 2) for v in os.getloadavg()],
                  "seconds": round(time.time() - self.started, 1),
                  "measured": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine()}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{self.name}.json").write_text(json.dumps(result, indent=2) + "\n")
        verdict = "ok" if met else "BELOW GOAL"
        print(f"{self.name}: {summary} (goal {self.goal.op} {self.goal.target:g}: {verdict})", flush=True)
        return result


def quiet() -> None:
    """Keep the summary readable: Paddle's and Ray's warnings go nowhere."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("autoft").setLevel(logging.ERROR)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.stderr.flush()
