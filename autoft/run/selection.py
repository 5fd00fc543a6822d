"""An honest winner: re-run the top configurations with new seeds, pick by mean, optionally refit on train+val.

``search.rerun_top_k: K`` + ``search.rerun_seeds: S`` — after the search, the K best configurations (by their
single best val_acc) run again S times each with ``train.seed`` = seed+1 … seed+S, as extra Ray trials under
FIFO (a rerun always runs every epoch: an early stop would bias its statistics). Each lands in ``trials/`` with
``extra.rerun_of`` = the original trial id and ``extra.seed``. A configuration's sample is its original trial
(when it ran every epoch) plus its reruns; the leaderboard shows mean ± std and a 95% t-interval of their
val_acc, and the winner is the configuration with the best *mean*; ``best_model/`` is that configuration's best
single run (its bundle is what was trained; a mean has no weights).

``search.final_fit: train+val`` — the winner's configuration trains again on train+val for the winner run's
best epoch count; that model becomes ``best_model/`` and the selection bundle moves to ``best_trial_model/``.

The statistics and the plan live here (paddle- and ray-free: the leaderboard calls ``select_winner``); running
the reruns and the final fit is ``autoft.search.reruns``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autoft.config import RunConfig
from autoft.run.escape import md_cell
from autoft.run.records import TrialRecord, TrialStatus

__all__ = ["RerunStats", "rerun_stats", "select_winner", "rerun_markdown", "rerun_plan", "t_quantile_975"]

# two-sided 95%: the t-distribution's 0.975 quantile for 1..30 degrees of freedom
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: a table to 30, then the Cornish-Fisher expansion around the normal's 1.96 (error < 1e-4)."""
    if df < 1:
        raise ValueError(f"`df >= 1` must hold, got df={df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


@dataclass(frozen=True)
class RerunStats:
    """val_acc over the runs of one configuration (its original trial and its reruns)."""

    trial_id: str                 # the original trial
    params: dict[str, Any]
    runs: tuple[str, ...]         # trial ids that count, original first when it counts
    values: tuple[float, ...]
    best_run: str                 # the run with the highest val_acc (its bundle is the one kept)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1); 0 for a single run."""
        if self.n < 2:
            return 0.0
        return math.sqrt(sum((v - self.mean) ** 2 for v in self.values) / (self.n - 1))

    @property
    def ci95(self) -> tuple[float, float]:
        if self.n < 2:
            return (self.mean, self.mean)
        half = t_quantile_975(self.n - 1) * self.std / math.sqrt(self.n)
        return (self.mean - half, self.mean + half)


def _val_acc(record: TrialRecord) -> float | None:
    return float(record.best["val_acc"]) if record.best is not None and record.status.finished else None


def rerun_stats(records: Sequence[TrialRecord]) -> list[RerunStats]:
    """One entry per re-run configuration, best mean first (ties: smaller std)."""
    by_id = {r.trial_id: r for r in records}
    groups: dict[str, list[TrialRecord]] = {}
    for r in records:
        origin = r.extra.get("rerun_of")
        if origin in by_id and _val_acc(r) is not None:
            groups.setdefault(origin, []).append(r)
    out = []
    for origin, reruns in groups.items():
        original = by_id[origin]
        # a scheduler-stopped original trained fewer epochs than its reruns: it is not the same experiment
        runs = ([original] if original.status is TrialStatus.COMPLETED and _val_acc(original) is not None else [])
        runs += sorted(reruns, key=lambda r: r.extra.get("seed", 0))
        values = tuple(float(r.require_best()["val_acc"]) for r in runs)  # each one passed _val_acc above
        best = max(runs, key=lambda r: (_val_acc(r), -float(r.require_best().get("val_loss", math.inf))))
        out.append(RerunStats(trial_id=origin, params=dict(original.params), runs=tuple(r.trial_id for r in runs),
                              values=values, best_run=best.trial_id))
    return sorted(out, key=lambda s: (-s.mean, s.std, s.trial_id))


def select_winner(records: Sequence[TrialRecord]) -> TrialRecord | None:
    """With reruns: the best-mean configuration's best single run. Without: None (the top-ranked trial wins)."""
    stats = rerun_stats(records)
    if not stats:
        return None
    return next(r for r in records if r.trial_id == stats[0].best_run)


def rerun_markdown(records: Sequence[TrialRecord]) -> str:
    """The reruns table for leaderboard.md (empty without reruns)."""
    stats = rerun_stats(records)
    if not stats:
        return ""
    lines = ["", "## Re-runs (winner by mean val_acc)", "",
             "| rank | trial_id | " + " | ".join(md_cell(str(k)) for k in stats[0].params)
             + " | runs | mean | std | 95% CI | best run |",
             "|" + "---|" * (len(stats[0].params) + 7)]
    for i, s in enumerate(stats, start=1):
        low, high = s.ci95
        values = " | ".join(md_cell(str(v)) for v in s.params.values())
        lines.append(f"| {i} | {md_cell(s.trial_id)} | {values} | {s.n} | {s.mean:.4f} | {s.std:.4f} | "
                     f"[{low:.4f}, {high:.4f}] | {s.best_run} |")
    return "\n".join(lines) + "\n"


def rerun_plan(cfg: RunConfig, records: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    """The reruns still to do: {"rerun_of", "seed", "params"} for the top ``rerun_top_k`` original trials.

    Runs already finished (a resumed search) are not planned again.
    """
    originals = [r for r in records if "rerun_of" not in r.extra and _val_acc(r) is not None]
    originals.sort(key=lambda r: (-float(r.require_best()["val_acc"]),
                                  float(r.require_best().get("val_loss", math.inf)), r.started))
    done = {(r.extra["rerun_of"], r.extra.get("seed")) for r in records
            if "rerun_of" in r.extra and r.status.finished}
    plan = []
    for original in originals[:cfg.search.rerun_top_k]:
        for k in range(1, cfg.search.rerun_seeds + 1):
            seed = cfg.train.seed + k
            if (original.trial_id, seed) not in done:
                plan.append({"rerun_of": original.trial_id, "seed": seed, "params": dict(original.params)})
    return plan
