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
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
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
    curves: dict[tuple, dict[str, Any]]  # recorded configuration (bin key) → its row

    @classmethod
    def load(cls, path: Path) -> Table:
        doc = json.loads(Path(path).read_text())
        t = cls(doc["table"], doc, {})
        for row in doc["configs"]:
            t.curves[t.key(row["params"])] = row
        return t

    @property
    def epochs(self) -> int:
        return int(self.doc["epochs"])

    def key(self, params: dict[str, Any]) -> tuple:
        """The recorded point a sampled one falls on: a float's bin in its (log) range, a categorical's value."""
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

    def row(self, params: dict[str, Any]) -> dict[str, Any]:
        k = self.key(params)
        if k in self.curves:
            return self.curves[k]
        names = list(self.doc["space"])  # recorded in part: the nearest recorded configuration

        def distance(other: tuple) -> float:
            d = 0.0
            for name, a, b in zip(names, k, other):
                if self.doc["space"][name]["type"] == "categorical":
                    d += 0.0 if a == b else 1.0
                else:
                    d += abs(a - b) / max(1, len(self.doc["levels"][name]) - 1)
            return d

        return self.curves[min(self.curves, key=distance)]

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
        trial = SimTrial(trial_id, dict(params), self.table.row(params), cost=self._cost(params, self.measured),
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
