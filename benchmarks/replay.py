"""Replay benchmark: recorded learning curves (benchmarks/data/curves-*.json, made by benchmarks.record_curves) are
replayed through autoft's own searcher (StudySearch over the Optuna sampler ``search.sampler`` builds, behind Ray's
ConcurrencyLimiter as Tune puts it) and Ray Tune's scheduler classes (``search.scheduler``, as autoft builds them),
driven by a simulated-clock event loop: a trial's epochs end at its start time plus the seconds recorded for them,
so results arrive in the order a real search with ``max_concurrent`` workers would see them.

A sampled point is snapped to its recorded configuration (each float's log bin, categoricals as they are; the nearest
recorded one while a table is recorded only in part). PBT is left out: its exploits make curves never recorded.

``python -m benchmarks replay``: TPE+ASHA against random search (no early stopping), ``SEEDS`` seeds each, on every
table; ``--all`` adds the sampler × scheduler matrix. value = median over seeds of (TPE+ASHA epochs until an
evaluation reaches the target) / (random search's epochs for its whole budget); target = random search's median best
at the full budget. Both searches get the same epoch budget (``TRIALS`` × the table's epochs).

The seeded tables (several seeds per configuration, issue 27) are left out of that score: ``--noise-aware`` scores
them instead (``score_noise_aware``): a trial replays one of its configuration's seeds, drawn at random; the target
is one standard error below the best configuration's mean over seeds, and a search has reached it when its
incumbent (the trial with the best val_acc seen) is a configuration whose mean is there, however lucky a val_acc
it saw; beside TPE+ASHA and random search, the perfect-stopper bound and the configuration that is best on the
other tables of the same space. benchmarks/results/replay-noise.json.
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import RESULTS, Goal, Recorder, median, quiet

DATA = Path(__file__).resolve().parent / "data"
SEEDS = 30
TRIALS = 20          # random search's budget: TRIALS full trials
WORKERS = 2          # the demo's max_concurrent


@dataclass
class Table:
    name: str
    doc: dict[str, Any]
    curves: dict[tuple, dict[str, Any]]  # recorded configuration (bin key) → its row (the lowest seed's)
    # → every seed's row; a seeded table keeps only configurations recorded with all of its seeds
    runs: dict[tuple, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Table:
        doc = json.loads(Path(path).read_text())
        t = cls(doc["table"], doc, {})
        for row in sorted(doc["configs"], key=lambda r: r.get("seed", 0)):  # a row without a seed is seed 0
            t.runs.setdefault(t.key(row["params"]), []).append(row)
        if t.seeded:
            t.runs = {k: rows for k, rows in t.runs.items() if len(rows) == len(doc["seeds"])}
        t.curves = {k: rows[0] for k, rows in t.runs.items()}
        return t

    @property
    def epochs(self) -> int:
        return int(self.doc["epochs"])

    @property
    def seeded(self) -> bool:
        """Recorded with several seeds per configuration (issue 27's tables): scored by ``score_noise_aware``."""
        return len(self.doc.get("seeds", [0])) > 1

    def key(self, params: dict[str, Any]) -> tuple:
        """The recorded point a sampled one falls on: through the table's pins (a value the strategy does not read
        is the one recorded), a float's bin in its (log) range, a categorical's value."""
        from benchmarks.record_curves import pinned

        params = pinned(params, self.doc.get("pins", []))
        out = []
        for name, spec in self.doc["space"].items():
            v = params[name]
            if spec["type"] == "categorical":
                out.append(v)
                continue
            bins = len(self.doc["levels"][name])
            lo, hi, x = spec["low"], spec["high"], float(v)
            if spec.get("log"):
                lo, hi, x = math.log(lo), math.log(hi), math.log(x)
            out.append(min(bins - 1, max(0, int((x - lo) / (hi - lo) * bins))))
        return tuple(out)

    def nearest(self, params: dict[str, Any]) -> tuple:
        """The key of ``params``, or while the table is recorded in part, of the nearest recorded configuration."""
        k = self.key(params)
        if k in self.curves:
            return k
        names = list(self.doc["space"])

        def distance(other: tuple) -> float:
            d = 0.0
            for name, a, b in zip(names, k, other):
                if self.doc["space"][name]["type"] == "categorical":
                    d += 0.0 if a == b else 1.0
                else:
                    d += abs(a - b) / max(1, len(self.doc["levels"][name]) - 1)
            return d

        return min(self.curves, key=distance)

    def row(self, params: dict[str, Any], noise: random.Random | None = None) -> dict[str, Any]:
        """The recorded curve a trial of ``params`` replays: with ``noise``, one of its seeds' at random."""
        runs = self.runs[self.nearest(params)]
        return runs[noise.randrange(len(runs))] if noise is not None and len(runs) > 1 else runs[0]

    @property
    def best(self) -> float:
        return max(max(r["val_acc"]) for r in self.curves.values() if r["val_acc"])


def replay_config(table: Table, sampler: str, scheduler: str, seed: int, search: dict[str, Any] | None = None):
    """The RunConfig ``autoft search`` would read for this table's space (the grid sampler gets the recorded levels
    as categorical choices: its grid is then exactly the recorded one)."""
    from autoft.config import config_from_dict

    space = table.doc["space"]
    if sampler == "grid":
        space = {n: {"type": "categorical", "choices": table.doc["levels"][n]} for n in space}
    raw = json.loads(json.dumps(table.doc["config"]))
    raw["search"] = {"sampler": sampler, "scheduler": scheduler, "seed": seed, "trials": TRIALS,
                     "max_concurrent": WORKERS, **(search or {})}
    raw["space"] = space
    return config_from_dict(raw)


@dataclass(eq=False)
class SimTrial:
    """What Ray's schedulers read of a trial (its id, status, config, last result)."""

    trial_id: str
    config: dict[str, Any]
    row: dict[str, Any]
    status: str = "PENDING"
    epoch: int = 0           # epochs done
    cost: float = 1.0        # one epoch, in epochs of the space's cheapest configuration, as measured
    reported: float = 1.0    # the same as the trial reports it in ``compute`` (measured, or FLOPs-estimated)
    last_result: dict[str, Any] = field(default_factory=dict)
    is_saving: bool = False

    def __hash__(self) -> int:
        return hash(self.trial_id)

    def __str__(self) -> str:
        return self.trial_id


class Controller:
    """The part of Tune's TuneController the schedulers call: the trials, and stop_trial."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def get_trials(self) -> list[SimTrial]:
        return list(self.sim.trials)

    def get_live_trials(self) -> list[SimTrial]:
        return [t for t in self.sim.trials if t.status not in ("TERMINATED", "ERROR")]

    def stop_trial(self, trial: SimTrial) -> None:
        self.sim.stop(trial)

    def pause_trial(self, trial: SimTrial, should_checkpoint: bool = True) -> None:
        self.sim.pause(trial)


@dataclass
class Evaluation:
    time: float
    # epochs trained by all trials when this evaluation came, each counted at its cost: in epochs of the space's
    # cheapest configuration (plain epochs unless the table searches the backbone or the image size)
    epochs_spent: float
    val_acc: float
    trial_id: str
    epoch: int


class Simulation:
    """One replayed search: searcher + scheduler as autoft builds them, a clock moved from event to event."""

    def __init__(self, table: Table, cfg, epoch_budget: float | None = None, num_samples: int | None = None,
                 sampler=None, cost_aware_rungs: bool = True, measured: bool = True) -> None:
        import optuna
        from ray.tune.search import ConcurrencyLimiter

        from autoft.search.budget import Budget
        from autoft.search.costs import cost_aware
        from autoft.search.schedulers import make_scheduler
        from autoft.search.searcher import StudySearch, make_searcher

        self.table, self.cfg = table, cfg
        args = (cfg, optuna.storages.InMemoryStorage(), "replay", cfg.search.seed, Budget.starting(time.time(), None))
        self.searcher = make_searcher(*args) if sampler is None else StudySearch(*args, sampler=sampler)
        self.limited = ConcurrencyLimiter(self.searcher, max_concurrent=WORKERS)
        self.limited.set_search_properties("val_acc", "max", {})
        self.costed = cost_aware(cfg)  # the space searches the backbone or the image size: trials differ in cost
        self.measured = measured_costs(table) if self.costed else None  # what each epoch costs
        self.reported = self.measured if measured else None  # what the trials and ASHA count (None: FLOPs)
        # cost_aware_rungs=False: ASHA as it was before cost-aware rungs (in epochs, whatever a trial costs)
        self.scheduler = make_scheduler(cfg if cost_aware_rungs else _without_cost_keys(cfg), costs=self.reported)
        self.scheduler.set_search_properties("val_acc", "max")
        self.controller = Controller(self)
        self.trials: list[SimTrial] = []
        self.events: list[tuple[float, int, SimTrial]] = []
        self.clock = 0.0
        self.epochs_spent = 0
        self.epoch_budget = epoch_budget
        self.num_samples = num_samples if num_samples is not None else cfg.search.trials
        self.evaluations: list[Evaluation] = []
        self._order = 0
        self._suggested = 0
        self._exhausted = False

    # the trial lifecycle, as TuneController runs it
    def _new_trial(self) -> SimTrial | None:
        if self._exhausted or self._suggested >= self.num_samples or self._budget_spent():
            return None
        trial_id = f"t{self._suggested:04d}"
        params = self.limited.suggest(trial_id)
        if params is None:  # the limiter: as many live trials as workers
            return None
        if isinstance(params, str):  # Searcher.FINISHED
            self._exhausted = True
            return None
        self._suggested += 1
        # a seeded table: each trial replays one of its configuration's seeds, drawn per (search seed, trial)
        noise = random.Random(self.cfg.search.seed * 100_003 + self._suggested) if self.table.seeded else None
        trial = SimTrial(trial_id, dict(params), self.table.row(params, noise), cost=self._cost(params, self.measured),
                         reported=self._cost(params, self.reported))
        self.trials.append(trial)
        self.scheduler.on_trial_add(self.controller, trial)
        return trial

    def _cost(self, params: dict[str, Any], costs: dict[tuple[str, int], float] | None) -> float:
        from autoft.search.costs import relative_cost

        return relative_cost(self.cfg, params, costs) if self.costed else 1.0

    def _budget_spent(self) -> bool:
        return self.epoch_budget is not None and self.epochs_spent >= self.epoch_budget

    def _running(self) -> int:
        return sum(t.status == "RUNNING" for t in self.trials)

    def _start(self, trial: SimTrial) -> None:
        trial.status = "RUNNING"
        self._next_epoch(trial)

    def _next_epoch(self, trial: SimTrial) -> None:
        secs = trial.row["seconds"]
        k = trial.epoch
        if k >= len(trial.row["val_acc"]):  # a recorded failure (diverged): it errors now
            heapq.heappush(self.events, (self.clock, self._tick(), trial))
            return
        took = secs[k] - (secs[k - 1] if k > 0 else 0.0)
        heapq.heappush(self.events, (self.clock + max(took, 1e-6), self._tick(), trial))

    def _tick(self) -> int:
        self._order += 1
        return self._order

    def stop(self, trial: SimTrial) -> None:
        if trial.status in ("TERMINATED", "ERROR"):
            return
        if trial.status in ("PENDING", "PAUSED"):
            self.scheduler.on_trial_remove(self.controller, trial)
            self.limited.on_trial_complete(trial.trial_id)
        else:
            self.scheduler.on_trial_complete(self.controller, trial, trial.last_result)
            self.limited.on_trial_complete(trial.trial_id, result=trial.last_result)
            self.events = [e for e in self.events if e[2] is not trial]
            heapq.heapify(self.events)
        trial.status = "TERMINATED"

    def pause(self, trial: SimTrial) -> None:
        if trial.status == "RUNNING":
            self.events = [e for e in self.events if e[2] is not trial]
            heapq.heapify(self.events)
        trial.status = "PAUSED"

    def _fill(self) -> None:
        while self._running() < WORKERS and not self._budget_spent():
            chosen = self.scheduler.choose_trial_to_run(self.controller)
            if chosen is None:
                chosen = self._new_trial()
                if chosen is None:
                    return
                chosen = self.scheduler.choose_trial_to_run(self.controller) or chosen
            self._start(chosen)

    def run(self) -> Simulation:
        self._fill()
        while self.events:
            self.clock, _, trial = heapq.heappop(self.events)
            self._epoch_done(trial)
            self._fill()
        for trial in self.trials:  # the budget ran out: what is left ends as Tune ends a run
            if trial.status in ("PENDING", "PAUSED"):
                self.stop(trial)
        return self

    def _epoch_done(self, trial: SimTrial) -> None:
        row, k = trial.row, trial.epoch
        if k >= len(row["val_acc"]):
            trial.status = "ERROR"
            self.scheduler.on_trial_error(self.controller, trial)
            self.limited.on_trial_complete(trial.trial_id, error=True)
            return
        trial.epoch = k + 1
        self.epochs_spent += trial.cost
        best = max(row["val_acc"][:k + 1])
        result = {"epoch": k + 1, "training_iteration": k + 1, "val_acc": row["val_acc"][k],
                  "val_loss": row["val_loss"][k], "best_val_acc": best, "time_total_s": row["seconds"][k],
                  "trial_id": trial.trial_id}
        if self.costed:  # what a trial of autoft's reports when its space searches the backbone or the size
            from autoft.search.costs import COMPUTE

            result[COMPUTE] = (k + 1) * trial.reported
        self.evaluations.append(Evaluation(self.clock, self.epochs_spent, row["val_acc"][k], trial.trial_id, k + 1))
        decision = self.scheduler.on_trial_result(self.controller, trial, result)
        if decision != "STOP":
            self.limited.on_trial_result(trial.trial_id, result)
        trial.last_result = result
        if decision == "STOP" or trial.epoch >= self.table.epochs or self._budget_spent():
            if trial.status == "RUNNING":
                self.stop(trial)
        elif decision == "PAUSE":
            self.pause(trial)
        else:
            self._next_epoch(trial)


def _without_cost_keys(cfg):
    """``cfg`` with a space that no longer names the backbone or the image size: what the scheduler saw before
    autoft's rungs counted compute."""
    import dataclasses

    from autoft.config.space import SearchSpace
    from autoft.search.costs import COST_KEYS

    return dataclasses.replace(cfg, space=SearchSpace(tuple(p for p in cfg.space.params if p.name not in COST_KEYS)))


def simulate(table: Table, sampler: str, scheduler: str, seed: int, *, search: dict[str, Any] | None = None,
             epoch_budget: float | None = None, num_samples: int | None = None) -> Simulation:
    """``search`` holds ``search:`` keys, and ``tpe.NAME`` keys: settings of autoft's TPE (``tpe_sampler``'s
    keywords: startup, multivariate, group, constant_liar) that are not config keys; with any of them the searcher
    gets that TPE variant instead of the sampler ``search.sampler`` names. When the table's configurations differ in
    cost, each epoch counts at its configuration's measured cost (``measured_costs``: as autoft's probe measures it
    before a search); ``cost=flops`` there: at its FLOPs-estimated cost instead; ``cost_aware=false``: the
    scheduler's rungs count epochs."""
    from autoft.search.samplers import tpe_sampler

    search = dict(search or {})
    tpe = {k.split(".", 1)[1]: search.pop(k) for k in [k for k in search if k.startswith("tpe.")]}
    rungs = bool(search.pop("cost_aware", True))
    measured = search.pop("cost", "measured") == "measured"
    cfg = replay_config(table, sampler, scheduler, seed, search)
    variant = tpe_sampler(cfg.search.trials, seed, **tpe) if tpe else None
    return Simulation(table, cfg, epoch_budget, num_samples, sampler=variant, cost_aware_rungs=rungs,
                      measured=measured).run()


def measured_costs(table: Table) -> dict[tuple[str, int], float]:
    """Seconds per epoch of each (backbone, image size) the table recorded: the median over its configurations of
    the epochs after the first (the first also builds the model), as a search measures them."""
    from autoft.search.costs import combination

    cfg = replay_config(table, "random", "fifo", 0)
    per: dict[tuple[str, int], list[float]] = {}
    for row in table.curves.values():
        secs = row["seconds"]
        if len(secs) >= 2:
            per.setdefault(combination(cfg, row["params"]), []).append((secs[-1] - secs[0]) / (len(secs) - 1))
    return {key: statistics.median(values) for key, values in per.items()}


def mean_cost(table: Table) -> float:
    """The mean epoch cost over the recorded configurations, in epochs of the cheapest (1 when all cost alike)."""
    from autoft.search.costs import cost_aware, relative_cost

    cfg = replay_config(table, "random", "fifo", 0)
    if not cost_aware(cfg):
        return 1.0
    measured = measured_costs(table)
    return statistics.fmean(relative_cost(cfg, row["params"], measured) for row in table.curves.values())


# scoring
def _first_reaching(evals: list[Evaluation], target: float) -> Evaluation | None:
    return next((e for e in evals if e.val_acc >= target - 1e-12), None)


def _percentile(values: list[float], q: float) -> float:
    vals = sorted(values)
    if not vals:
        return float("nan")
    pos = (len(vals) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    a, b = vals[lo], vals[hi]
    if math.isinf(a) or math.isinf(b):
        return a if pos == lo else float("inf")
    return a + (b - a) * (pos - lo)


def score(table: Table, methods: list[tuple[str, str, dict[str, Any]]], seeds: int) -> dict[str, Any]:
    # TRIALS full trials of the average configuration; "epochs" below count each epoch at its cost (1 for tables
    # whose configurations all cost alike)
    cost = mean_cost(table)
    budget = math.ceil(TRIALS * table.epochs * cost)
    randoms = [simulate(table, "random", "fifo", s, epoch_budget=budget) for s in range(seeds)]
    target = median([max(e.val_acc for e in r.evaluations) for r in randoms])
    out: dict[str, Any] = {"table": table.name, "title": table.doc["title"], "recorded": len(table.curves),
                           "grid_size": table.doc.get("grid_size"), "best_recorded": table.best,
                           "target": target, "epoch_budget": budget, "mean_cost": round(cost, 4),
                           "methods": {}}
    curves: dict[str, list[list[float]]] = {}
    for sampler, scheduler, extra in [("random", "fifo", {}), *methods]:
        label = f"{sampler}+{scheduler}" + "".join(f" {k}={v}" for k, v in extra.items())
        sims = randoms if (sampler, scheduler, extra) == ("random", "fifo", {}) else \
            [simulate(table, sampler, scheduler, s, search=extra, epoch_budget=budget, num_samples=budget)
             for s in range(seeds)]
        epochs, seconds, bests = [], [], []
        for sim in sims:
            hit = _first_reaching(sim.evaluations, target)
            epochs.append(hit.epochs_spent if hit else math.inf)
            seconds.append(hit.time if hit else math.inf)
            bests.append(max(e.val_acc for e in sim.evaluations))
        curves[label] = [_best_so_far(sim.evaluations, budget) for sim in sims]
        regret = [[table.best - v for v in line] for line in curves[label]]
        aucs = [statistics.fmean(r) for r in regret]
        out["methods"][label] = {
            "sampler": sampler, "scheduler": scheduler, "search": extra,
            "epochs_to_target_median": median(epochs), "epochs_to_target_p90": _percentile(epochs, 0.9),
            "ratio_median": median(epochs) / budget, "ratio_p90": _percentile(epochs, 0.9) / budget,
            "seconds_to_target_median": median(seconds), "seconds_to_target_p90": _percentile(seconds, 0.9),
            "reached": sum(math.isfinite(e) for e in epochs), "best_median": median(bests),
            # anytime performance: the regret (best recorded - best so far) averaged over the epoch budget, then
            # over seeds; steadier than the epochs to one target, which are inf for a seed that just misses it
            "regret_auc_mean": statistics.fmean(aucs),
            "regret_auc_sem": statistics.stdev(aucs) / math.sqrt(len(aucs)) if len(aucs) > 1 else 0.0,
            "final_regret_median": median([r[-1] for r in regret]),
            "trials_median": median([len(s.trials) for s in sims])}
    out["_curves"] = curves
    return out


def _best_so_far(evals: list[Evaluation], budget: int) -> list[float]:
    best, line, i = 0.0, [], 0
    for spent in range(1, budget + 1):
        while i < len(evals) and evals[i].epochs_spent <= spent:
            best = max(best, evals[i].val_acc)
            i += 1
        line.append(best)
    return line


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, res in zip(axes[0], results):
        ranked = sorted(res["methods"], key=lambda k: (res["methods"][k]["epochs_to_target_median"],
                                                       res["methods"][k]["epochs_to_target_p90"]))
        shown = ["random+fifo", "tpe+asha", *[k for k in ranked if k not in ("random+fifo", "tpe+asha")][:2]]
        for label in shown:
            lines = res["_curves"][label]
            regret = res["best_recorded"] - np.array(lines)
            x = np.arange(1, regret.shape[1] + 1)
            ax.plot(x, np.median(regret, axis=0), label=label)
            ax.fill_between(x, np.percentile(regret, 25, axis=0), np.percentile(regret, 75, axis=0), alpha=0.15)
        ax.axhline(res["best_recorded"] - res["target"], color="grey", ls=":", lw=1, label="target")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("epochs trained (all trials)" if res.get("mean_cost", 1.0) == 1.0 else
                      "epochs trained (all trials), each at its cost in epochs of the cheapest")
        ax.set_ylabel("regret: best recorded val_acc - best so far\n(median over seeds, quartiles shaded)")
        ax.set_title(f"{res['table']} ({res['recorded']} configurations): random, TPE+ASHA, the two best",
                     fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


# noise-aware scoring of the seeded tables (issue 27)
@dataclass
class Worth:
    """What each configuration of a seeded table is worth: after k epochs, the mean over its seeds of the best
    val_acc in those k (what a search that trained it k epochs keeps, on average over re-runs). The target is one
    standard error below the best configuration's mean; regret is 0 at the best mean, 1 at the median
    configuration's.

    The standard error pools the seed-to-seed variance of the best tenth of the configurations (at least 3): from
    its own two seeds, the best's is a one-degree-of-freedom guess (two seeds that agree by chance make it 0, and
    the best of hundreds of means is the likeliest to have been lucky so)."""

    table: Table
    after: dict[tuple, list[float]]  # key → worth after 1..epochs epochs
    best_key: tuple
    sem: float
    median: float

    @classmethod
    def of(cls, table: Table) -> Worth:
        after, finals = {}, {}
        for k, rows in table.runs.items():
            bests = [_best_after(r["val_acc"], table.epochs) for r in rows]
            after[k] = [statistics.fmean(b[e] for b in bests) for e in range(table.epochs)]
            finals[k] = [b[-1] for b in bests]
        ranked = sorted(after, key=lambda k: after[k][-1], reverse=True)
        near = ranked[:max(3, len(ranked) // 10)]
        sem = math.sqrt(statistics.fmean(statistics.variance(finals[k]) for k in near) / len(finals[ranked[0]]))
        return cls(table, after, ranked[0], sem, statistics.median(a[-1] for a in after.values()))

    @property
    def target(self) -> float:
        return self.best - self.sem

    @property
    def best(self) -> float:
        return self.after[self.best_key][-1]

    def at(self, key: tuple, epochs: int) -> float:
        return self.after[key][min(epochs, self.table.epochs) - 1] if epochs > 0 else self.median

    def regret(self, value: float) -> float:
        return (self.best - value) / max(self.best - self.median, 1e-12)

    def first_reaching(self, key: tuple) -> int | None:
        """The fewest epochs after which ``key`` is worth the target (None: never)."""
        return next((e + 1 for e, w in enumerate(self.after[key]) if w >= self.target - 1e-12), None)


def _best_after(acc: list[float], epochs: int) -> list[float]:
    """Best val_acc after 1..epochs epochs; a fine-tune that failed keeps its best before failing (0: none)."""
    out, best = [], 0.0
    for e in range(epochs):
        best = max(best, acc[e]) if e < len(acc) else best
        out.append(best)
    return out


@dataclass
class Course:
    """One search's course as the noise-aware score reads it: (epochs spent, what its incumbent is worth)."""

    steps: list[tuple[float, float]]

    def to_target(self, worth: Worth) -> float:
        return next((spent for spent, w in self.steps if w >= worth.target - 1e-12), math.inf)

    def regret(self, worth: Worth, budget: int) -> float:
        """The normalised regret averaged over the budget (1 before the first evaluation: the median's)."""
        total, i, value = 0.0, 0, worth.median
        for spent in range(1, budget + 1):
            while i < len(self.steps) and self.steps[i][0] <= spent:
                value = self.steps[i][1]
                i += 1
            total += worth.regret(value)
        return total / budget


def _course(sim: Simulation, worth: Worth) -> Course:
    """The incumbent after each evaluation is the trial with the best val_acc seen (what the leaderboard ranks
    first); it is worth its configuration's mean over seeds after the epochs it trained, not the lucky value seen."""
    keys = {t.trial_id: sim.table.nearest(t.config) for t in sim.trials}
    seen: dict[str, float] = {}
    trained: dict[str, int] = {}
    leader, steps = "", []
    for e in sim.evaluations:
        seen[e.trial_id] = max(seen.get(e.trial_id, 0.0), e.val_acc)
        trained[e.trial_id] = e.epoch
        if not leader or seen[e.trial_id] > seen[leader]:  # ties: the earlier trial stays first
            leader = e.trial_id
        steps.append((e.epochs_spent, worth.at(keys[leader], trained[leader])))
    return Course(steps)


def _random_key(table: Table, rng: random.Random) -> tuple:
    """A point random search draws (each level of each parameter alike), as the key it falls on."""
    return table.nearest({n: rng.choice(v) for n, v in table.doc["levels"].items()})


def _perfect_stopper(worth: Worth, seed: int, budget: int) -> Course:
    """The bound on early stopping: random search's draws, where a configuration that is never worth the target is
    stopped after 1 epoch and one that is trains all its epochs; the incumbent is the one truly worth most."""
    rng, spent, best, steps = random.Random(seed), 0, -math.inf, []
    while spent < budget:
        key = _random_key(worth.table, rng)
        reach = worth.first_reaching(key)
        for e in range(1, (worth.table.epochs if reach else 1) + 1):
            spent += 1
            best = max(best, worth.at(key, e))
            steps.append((spent, best))
    return Course(steps)


def _one_configuration(worth: Worth, key: tuple) -> Course:
    """A search that trains one chosen configuration: worth its mean after each epoch, then nothing more."""
    return Course([(e, worth.at(key, e)) for e in range(1, worth.table.epochs + 1)])


def best_elsewhere(table: Table, others: list[Table]) -> tuple | None:
    """The configuration with the best mean normalised worth (0 at a table's median, 1 at its best) over the other
    tables of the same space: one good default learned elsewhere. None without such a table."""
    same = [Worth.of(o) for o in others if o.doc["space"] == table.doc["space"] and o.name != table.name]
    keys = [k for k in table.runs if all(k in w.after for w in same)]
    if not same or not keys:
        return None
    return max(keys, key=lambda k: statistics.fmean(1 - w.regret(w.after[k][-1]) for w in same))


def _summary(courses: list[Course], worth: Worth, budget: int, seconds: float) -> dict[str, Any]:
    to = [c.to_target(worth) for c in courses]
    return {"ratio_median": median(to) / budget, "ratio_p90": _percentile(to, 0.9) / budget,
            "compute_seconds_median": median(to) * seconds, "compute_seconds_p90": _percentile(to, 0.9) * seconds,
            "reach": sum(math.isfinite(t) for t in to),
            "regret": statistics.fmean(c.regret(worth, budget) for c in courses)}


def seconds_per_epoch(table: Table) -> float:
    """The measured cost of an epoch: the median over the table's rows of a fine-tune's seconds per epoch (its
    model build shared out over its epochs: on a head's cached features the build is most of a trial's cost)."""
    return statistics.median(r["seconds"][-1] / len(r["seconds"]) for rows in table.runs.values() for r in rows
                             if r["seconds"])


def score_noise_aware(table: Table, others: list[Table], seeds: int) -> dict[str, Any]:
    """autoft's default (TPE+ASHA) beside random search, the perfect-stopper bound and the configuration best on
    the other tables, on one seeded table: compute to the target (as a fraction of random search's budget, and in
    measured seconds), seeds reaching it, mean normalised regret over the budget."""
    worth = Worth.of(table)
    budget = TRIALS * table.epochs
    cost = seconds_per_epoch(table)
    sims = {"default": [simulate(table, "tpe", "asha", s, epoch_budget=budget, num_samples=budget)
                        for s in range(seeds)],
            "random": [simulate(table, "random", "fifo", s, epoch_budget=budget) for s in range(seeds)]}
    methods = {name: _summary([_course(sim, worth) for sim in runs], worth, budget, cost)
               for name, runs in sims.items()}
    methods["perfect_stopper"] = _summary([_perfect_stopper(worth, s, budget) for s in range(seeds)], worth, budget,
                                          cost)
    elsewhere = best_elsewhere(table, others)
    if elsewhere is not None:
        alone = _one_configuration(worth, elsewhere)  # the same on every seed
        methods["best_other_tables"] = {**_summary([alone] * seeds, worth, budget, cost),
                                        "params": table.curves[elsewhere]["params"]}
    return {"name": table.name, "dataset": table.doc.get("dataset"), "mode": table.doc.get("mode"),
            "configs": len(table.runs), "grid_size": table.doc["grid_size"],
            "seeds_per_config": len(table.doc["seeds"]), "epochs": table.epochs, "epoch_budget": budget,
            "seconds_per_epoch": round(cost, 3), "best_mean": round(worth.best, 5), "sem": round(worth.sem, 5),
            "best_params": table.curves[worth.best_key]["params"], "target": round(worth.target, 5),
            "median_mean": round(worth.median, 5), "methods": methods}


def noise_aware_main(seeded: list[Table], seeds: int) -> None:
    """``python -m benchmarks replay --noise-aware``: every seeded table recorded in full (one still recording is
    listed with how far it got), benchmarks/results/replay-noise.json."""
    tables = [t for t in seeded if len(t.runs) == t.doc["grid_size"]]
    if not tables:
        raise SystemExit("no seeded table is recorded in full in benchmarks/data "
                         "(python -m benchmarks.record_curves fashion-head)")
    rec = Recorder("replay-noise", Goal("TPE+ASHA compute to the noise-aware target / random search's budget "
                                        "(median over seeds, then over tables)", "<=", 1 / 3))
    results = [score_noise_aware(t, tables, seeds) for t in tables]
    recording = {t.name: f"{len(t.runs)}/{t.doc['grid_size']} configurations" for t in seeded
                 if len(t.runs) < t.doc["grid_size"]}
    value = median([r["methods"]["default"]["ratio_median"] for r in results])
    parts = [f"{r['name']}: default {m['ratio_median']:.3f} (p90 {m['ratio_p90']:.3f}, {m['reach']}/{seeds}, regret "
             f"{m['regret']:.3f}), random {q['ratio_median']:.3f} ({q['reach']}/{seeds}, regret {q['regret']:.3f})"
             for r in results for m, q in [(r["methods"]["default"], r["methods"]["random"])]]
    rec.finish(value, "; ".join(parts), {"trials": TRIALS, "workers": WORKERS, "recording": recording}, seeds=seeds,
               tables=results,
               notes="per table: a configuration is worth the mean over its recorded seeds of its best val_acc after "
                     "the epochs it trained; target = the best configuration's mean - one standard error (the "
                     "seed-to-seed variance pooled over the best tenth of the configurations); a search reaches it "
                     "when its incumbent (the trial with the best val_acc seen) is worth the target; ratio = "
                     "epochs spent until then / random search's budget (TRIALS x epochs); compute_seconds = those "
                     "epochs x the measured seconds per epoch; regret = (best mean - incumbent's worth) / (best "
                     "mean - median configuration's mean), averaged over the budget and the seeds; "
                     "perfect_stopper: random draws, never-good configurations stopped after 1 epoch; "
                     "best_other_tables: the configuration with the best mean normalised worth on the other tables "
                     "of the same space, trained alone")


CORE = [("tpe", "asha", {})]
# a table whose configurations differ in cost: ASHA's rungs by FLOPs-estimated costs, and in epochs
COST_VARIANTS = [("tpe", "asha", {"cost": "flops"}), ("tpe", "asha", {"cost_aware": False})]
MATRIX = [(s, sch, {}) for s in ("tpe", "random", "cmaes", "qmc", "grid") for sch in ("asha", "hyperband", "median",
                                                                                     "fifo")
          if (s, sch) not in (("random", "fifo"),)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every sampler x scheduler, not only TPE+ASHA")
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--noise-aware", action="store_true",
                        help="score the seeded tables (several seeds per configuration) against a target one standard "
                             "error below the best mean instead: benchmarks/results/replay-noise.json")
    parser.add_argument("--extra", action="append", default=[], metavar="KEY=VALUE,...",
                        help="also score TPE+ASHA with these search settings (e.g. grace_period=2, scheduler=fifo) "
                             "or TPE settings (tpe.startup=5, tpe.multivariate=false, tpe.group=true, "
                             "tpe.constant_liar=false), or on a table of differing costs cost=flops or "
                             "cost_aware=false")
    args = parser.parse_args(argv)
    quiet()
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("autoft").setLevel(logging.WARNING)
    methods = list(MATRIX if args.all else CORE)
    for text in args.extra:
        extra = {k: _value(v) for k, v in (kv.split("=", 1) for kv in text.split(","))}
        methods.append(("tpe", "asha", extra))
    rec = Recorder("replay", Goal("TPE+ASHA epochs to target / random search's epochs (median over seeds)", "<=",
                                  1 / 3))
    tables = [Table.load(p) for p in sorted(DATA.glob("curves-*.json"))]
    if args.noise_aware:
        noise_aware_main([t for t in tables if t.seeded], args.seeds)
        return
    tables = [t for t in tables if not t.seeded]  # the seeded ones have their own score (--noise-aware)
    if not tables:
        raise SystemExit("no recorded tables in benchmarks/data (python -m benchmarks.record_curves demo)")
    # a table whose configurations differ in cost (backbone, image size) also scores ASHA's rungs by FLOPs-estimated
    # costs and in epochs, beside autoft's rungs by measured costs
    results = [score(t, methods + (COST_VARIANTS if mean_cost(t) > 1 else []), args.seeds) for t in tables]
    png = RESULTS / "replay.png"
    plot(results, png)
    main_res = next((r for r in results if r["table"] == "demo"), results[0])
    core = main_res["methods"]["tpe+asha"]
    value = core["ratio_median"]
    parts = []
    for r in results:
        m = r["methods"]["tpe+asha"]
        parts.append(f"{r['table']}: median {m['ratio_median']:.3f}, p90 {m['ratio_p90']:.3f} "
                     f"({m['reached']}/{args.seeds} reach {r['target']:.4f}; mean regret {m['regret_auc_mean']:.4f}"
                     f" vs random search's {r['methods']['random+fifo']['regret_auc_mean']:.4f})")
    figures = {"seeds": args.seeds, "trials": TRIALS, "workers": WORKERS, "figures": [str(png.relative_to(
        RESULTS.parent.parent))],
               "tables": [{k: v for k, v in r.items() if k != "_curves"} for r in results]}
    rec.finish(value, "; ".join(parts), figures, seeds=args.seeds,
               notes="value = median over seeds of TPE+ASHA epochs until an evaluation reaches the target / random "
                     "search's epochs for its whole budget (TRIALS x epochs); target = random search's median best; "
                     "inf when never reached; regret_auc_mean = the regret (best recorded - best so far) averaged "
                     "over the epoch budget, then over seeds (anytime performance); PBT left out (its exploits make "
                     "curves never recorded)")


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


if __name__ == "__main__":
    main(sys.argv[1:])
