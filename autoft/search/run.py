"""`autoft search`: the run folder, the study, resume, then trials under Ray Tune (autoft.search.tuner,
autoft.search.trial), then the leaderboard, the winner and the report. Ray and Optuna are imported only when a search
runs."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.util
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autoft._fs import LOCK_FILE, RunLock, atomic_write_text, autoft_home, check_writable, remove_tree
from autoft.config import RunConfig, config_to_dict
from autoft.config.rules import check_run_name
from autoft.errors import PADDLE_MISSING, AutoftError, ConfigError
from autoft.observe.report import try_write_report
from autoft.run.layout import RunDir
from autoft.run.leaderboard import Leaderboard, promote_best, write_leaderboard
from autoft.run.storage import (
    StudyRef,
    check_study_name,
    open_storage,
    read_study,
    recorded_url,
    shown_url,
    write_study,
)
from autoft.search.progress import Progress
from autoft.search.resume import check_resumed_space, prepare_resume
from autoft.search.trial import load_trial_data

__all__ = ["search", "SearchOutcome", "Progress", "load_trial_data", "load_run_config"]

@dataclass(frozen=True)
class SearchOutcome:
    run_dir: Path
    leaderboard: Leaderboard
    best_model: Path | None
    stopped_on_budget: bool
    interrupted: bool
    test_metrics: dict[str, Any] | None = None

    @property
    def all_failed(self) -> bool:
        return bool(self.leaderboard.records) and self.leaderboard.best is None

    def most_common_error(self) -> str:
        errors = Counter(r.error for r in self.leaderboard.records if r.error)
        return errors.most_common(1)[0][0] if errors else "no trial finished"


def new_run_dir(cfg: RunConfig, results_dir: str | Path, name: str | None) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = check_run_name("--name", name) if name is not None else f"{cfg.name}-{stamp}"
    run_dir = Path(results_dir).resolve() / folder
    _refuse_used(run_dir)
    return run_dir


def _refuse_used(run_dir: Path) -> None:
    if run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        raise ConfigError(f"--name {run_dir.name}: {run_dir} already holds a run; pick another name or --resume it")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--name {run_dir.name}: {run_dir} is a file")


def _claim_run_dir(run_dir: Path) -> tuple[RunLock, bool]:
    """Create (or take the empty) run folder and lock it; a second search with the same name is refused. True:
    this call made the folder (so a failure before the first trial removes it again: only that one)."""
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir()  # exist_ok=False: of two searches making it at once, only one made it
        created = True
    except FileExistsError:
        created = False
    except OSError as exc:
        raise AutoftError(f"--results-dir {run_dir.parent}: cannot create {run_dir.name} ({exc.strerror})") from None
    lock = RunLock(run_dir, f"--name {run_dir.name}")
    lock.acquire()
    try:
        _refuse_used(run_dir)  # another search may have claimed it between our check and our lock
    except ConfigError:
        lock.release()
        raise
    return lock, created


def load_run_config(run_dir: str | Path, what: str = "--resume") -> RunConfig:
    """The config a run was started with (``RunDir.load_config``)."""
    return RunDir(Path(run_dir)).load_config(what)


def _absolute_paths(cfg: RunConfig) -> RunConfig:
    """Trials run in other working folders (and on other nodes): relative paths mean the user's current folder."""
    if cfg.data.path is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=str(Path(cfg.data.path).resolve())))
    if cfg.model.pretrained not in ("imagenet", "none"):
        pretrained = str(Path(cfg.model.pretrained).expanduser().resolve())
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=pretrained))
    return cfg


def _check_ray_dashboard_deps() -> None:
    try:
        import ray.dashboard.optional_deps  # noqa: F401  (Ray's own test for its `default` extra)
    except ImportError:
        raise ConfigError("--ray-dashboard: the Ray dashboard needs ray[default]; "
                          "pip install 'autoft[ray-dashboard]'") from None


def search(cfg: RunConfig | None = None, *, results_dir: str | Path = "results", name: str | None = None,
           resume: str | Path | None = None, address: str | None = None, storage_url: str | None = None,
           study: str | None = None, ray_dashboard: bool = False,
           on_progress: Callable[[Progress], None] | None = None,
           on_dashboard: Callable[[str], None] | None = None, on_message: Callable[[str], None] | None = None,
           evaluate_test: bool = False) -> SearchOutcome:
    """Run (or resume) a search; returns the ranked leaderboard and where the best bundle is.

    ``storage_url`` puts the study in a database (PostgreSQL, MySQL, SQLite) instead of the run's optuna.db; the
    study is named after the run folder unless ``study`` joins (or starts) one by name. ``on_dashboard(url)`` hears
    the Ray dashboard's URL (``ray_dashboard``, or the cluster's with ``address``); ``on_message`` gets the dataset
    check's warnings; ``evaluate_test`` scores the best bundle once on the test split at the end.

    Everything that can refuse a new search (config, storage, study name, data, Ray address, resources) is
    checked before its run folder is made.
    """
    if importlib.util.find_spec("paddle") is None:
        raise AutoftError(PADDLE_MISSING)  # trials would all fail on it, one by one
    message = on_message or (lambda _m: None)
    if ray_dashboard and not address:
        _check_ray_dashboard_deps()  # before a run folder is made
    if resume is not None:
        if study is not None:
            raise ConfigError("--study: a resumed run keeps its own study; drop --study")
        run_dir = Path(resume).resolve()
        cfg = load_run_config(run_dir)
        recorded = read_study(RunDir(run_dir), cfg.name)
        url = storage_url or recorded.url
        ref = StudyRef(url=recorded_url(url) if url else None, name=recorded.name,
                       sampler_seed=recorded.sampler_seed)
    else:
        if cfg is None:
            raise ConfigError("search: give a config or --resume RUN_DIR")
        cfg = _absolute_paths(cfg)
        run_dir = new_run_dir(cfg, results_dir, name)
        check_writable(run_dir.parent, "--results-dir")
        url = storage_url
        ref = StudyRef(url=recorded_url(url) if url else None,
                       name=check_study_name("--study", study) if study is not None else run_dir.name)
    check_writable(autoft_home(), "AUTOFT_HOME")
    # a resumed or shared study is opened before the data is decoded: a bad one fails fast, before anything is written
    storage = open_storage(run_dir, url, write=True) if resume is not None or url else None
    if resume is None and storage is not None:
        _refuse_taken_study(storage, ref, url or "", cfg, message, joining=study is not None)
    if resume is not None:  # before the data is decoded: an edited space that cannot go on changes nothing
        assert storage is not None  # opened above for every resume
        check_resumed_space(run_dir, storage, ref.name, cfg.space.to_optuna(), message)
    if address:
        from autoft.search.tuner import check_address

        check_address(address)
    _check_data(cfg, message)
    if resume is None:
        from autoft.config import inert_searched_keys

        for line in inert_searched_keys(cfg):
            message(f"config warning: {line}")
    from autoft.search.tuner import RaySession

    ray_session = RaySession(cfg, address, ray_dashboard, on_dashboard)
    try:
        if resume is None:
            ray_session.start()  # an --address that refuses us, resources no node has: before any decoding or folder
        # validates the data and fills the shared cache (each image size the space draws) before any trial starts
        data = load_trial_data(cfg, every_size=True)
        if evaluate_test and data.test is None:
            raise ConfigError(f"--evaluate-test: {data.source} has no test split")
        if resume is not None:
            lock, created = RunLock(run_dir, f"--resume {run_dir}"), False
            lock.acquire()
        else:
            lock, created = _claim_run_dir(run_dir)
        with lock:
            try:
                return _search_locked(cfg, run_dir, data, storage, ref, resuming=resume is not None,
                                      joining=study is not None, ray_session=ray_session, storage_url=url,
                                      on_progress=on_progress, on_message=message, evaluate_test=evaluate_test)
            except BaseException:
                if resume is None:
                    _undo_new_run(run_dir, created)
                raise
    finally:
        ray_session.close()


def _undo_new_run(run_dir: Path, created: bool) -> None:
    """A new run refused (or stopped) before its first trial leaves its folder as the search found it: gone when
    the search made it, else empty again (``_claim_run_dir`` took it empty)."""
    trials = RunDir(run_dir).trials
    if trials.is_dir() and any(trials.iterdir()):
        return
    if created:
        remove_tree(run_dir)
        return
    for child in run_dir.iterdir():
        if child.name != LOCK_FILE:
            remove_tree(child)


def _refuse_taken_study(storage: Any, ref: StudyRef, url: str, cfg: RunConfig, message: Callable[[str], None], *,
                        joining: bool) -> None:
    """Two runs never share a study by accident: joining one that exists is ``--study NAME``, and its space must be
    one the study's trials can go on with (Optuna would fail at the first trial that draws a changed parameter)."""
    from autoft.search.study_space import check_study_space

    if not joining:
        if any(s.study_name == ref.name for s in storage.get_all_studies()):
            raise _taken(ref, url)
        return
    for note in check_study_space(storage, ref.name, cfg.space.to_optuna(), f"--study {ref.name}",
                                  "search it as the study does, or join another --study"):
        message(f"--study {ref.name}: {note} (Optuna goes on with this run's space)")


def _taken(ref: StudyRef, url: str | None) -> ConfigError:
    return ConfigError(f"--storage {shown_url(url or '')}: it already holds a study named {ref.name!r}; pass "
                       f"--study {ref.name} to add this run's trials to it, or --name to start another")


def _open_study(cfg: RunConfig, run_dir: Path, storage: Any, ref: StudyRef, url: str | None, *, resuming: bool,
                joining: bool, on_message: Callable[[str], None]) -> tuple[Any, StudyRef]:
    """trials/, the storage, the study (created here, or joined: autoft.search.searcher.joined_seed), config.yaml
    and study.json."""
    run = RunDir(run_dir)
    run.trials.mkdir(exist_ok=True)
    storage = storage if storage is not None else open_storage(run_dir, url, write=True)
    if not resuming:
        ref = _create_or_join(storage, ref, run_dir, cfg, url, joining, on_message)
        atomic_write_text(run.config_file, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    if not resuming or read_study(run, cfg.name) != ref:
        write_study(run, ref)  # where the study lives, without the password (autoft.run.storage)
    _enqueue_first(cfg, storage, ref.name, resuming)
    return storage, ref


def _create_or_join(storage: Any, ref: StudyRef, run_dir: Path, cfg: RunConfig, url: str | None, joining: bool,
                    on_message: Callable[[str], None]) -> StudyRef:
    """The one driver that creates the study samples with search.seed; a driver that finds it made (``--study``)
    gets a seed of its own, kept in study.json: with the same seed it would propose the other drivers' points."""
    from autoft.run.storage import create_or_join_study
    from autoft.search.searcher import joined_seed

    if create_or_join_study(storage, ref.name):
        return ref
    if not joining:  # another run of this name made it since _refuse_taken_study looked
        raise _taken(ref, url)
    ref = dataclasses.replace(ref, sampler_seed=joined_seed(cfg.search.seed, run_dir))
    on_message(f"--study {ref.name}: joined a study other runs draw in; this run's sampler starts from seed "
               f"{ref.sampler_seed} (kept in study.json), so its points differ from theirs")
    return ref


def _search_locked(cfg: RunConfig, run_dir: Path, data: Any, storage: Any, ref: StudyRef, *, resuming: bool,
                   joining: bool, ray_session: Any, storage_url: str | None,
                   on_progress: Callable[[Progress], None] | None, on_message: Callable[[str], None],
                   evaluate_test: bool) -> SearchOutcome:
    from autoft.search.budget import Budget
    from autoft.search.costs import measured_costs
    from autoft.search.recorder import Recorder
    from autoft.search.schedulers import make_scheduler
    from autoft.search.searcher import make_searcher, sampler_seed
    from autoft.search.tuner import run_tuner

    storage, ref = _open_study(cfg, run_dir, storage, ref, storage_url, resuming=resuming, joining=joining,
                               on_message=on_message)
    counted = prepare_resume(run_dir, storage, ref.name, cfg.train.epochs) if resuming else 0
    remaining = cfg.search.trials - counted
    budget = Budget()
    interrupted = False
    if remaining > 0:
        ray_session.start()
        started = time.time()  # the budget counts from when trials can start
        budget = Budget.starting(started, cfg.search.time_budget)
        seed = sampler_seed(cfg, ref, counted)
        searcher = make_searcher(cfg, storage, ref.name, seed, budget)
        recorder = Recorder(run_dir, cfg, searcher, on_progress, started)
        # a searched backbone or image size: each combination's epoch is timed once, before the trials
        costs = measured_costs(cfg, run_dir, len(data.train), len(data.val))
        interrupted = run_tuner(cfg, run_dir, searcher=searcher, recorder=recorder, name="tune",
                                num_samples=remaining, param_names=cfg.space.names,
                                scheduler=make_scheduler(cfg, recorder, costs), stop=budget.stopper(), costs=costs)
    if cfg.search.rerun_top_k and not interrupted and not budget.hit:
        from autoft.search.reruns import run_reruns

        ray_session.start()
        run_reruns(cfg, run_dir, on_progress=on_progress)
    ray_session.close()  # the final fit and the test split run here, without Ray
    board = write_leaderboard(run_dir)
    best = promote_best(run_dir, board)  # by mean over reruns when there are some (autoft.run.selection)
    refit = cfg.search.final_fit == "train+val"
    score_test = evaluate_test or (refit and data.test is not None)  # once, on the final model
    test_metrics = None
    if best is not None and (refit and not interrupted or score_test):
        from autoft.training.evaluation import cpu_threads

        with cpu_threads(os.cpu_count() or 1):  # no trial runs now: the driver may use every core
            if refit and not interrupted:
                from autoft.run.selection import select_winner
                from autoft.search.reruns import final_fit

                winner = select_winner(board.records) or board.best
                assert winner is not None  # promote_best found it: best is not None
                on_message(f"final fit: trial {winner.trial_id}'s configuration on train+val "
                           f"({len(data.train) + len(data.val)} images)")
                best = final_fit(cfg, run_dir, winner, data)
            if score_test:
                on_message(f"scoring {best.name}/ once on the test split ({len(data.test)} images)")
                test_metrics = _evaluate_test(run_dir, best, data)
    if not interrupted:  # after Ctrl-C the user wants out; `autoft report RUN` draws it later
        try_write_report(run_dir, storage_url=storage_url)
    return SearchOutcome(run_dir=run_dir, leaderboard=board, best_model=best,
                         stopped_on_budget=budget.hit, interrupted=interrupted, test_metrics=test_metrics)


def _check_data(cfg: RunConfig, message: Callable[[str], None]) -> None:
    """The dataset check: its warnings are shown, its errors (training impossible) stop the search."""
    from autoft.data.check import check_for_config

    report = check_for_config(cfg)
    for warning in report.warnings:
        message(f"data warning: {warning}")
    report.raise_for_errors()


def _evaluate_test(run_dir: Path, best: Path, data: Any) -> dict[str, Any]:
    """The test split, scored once at the end and never used for selection; kept in test_metrics.json."""
    from autoft._fs import atomic_write_json
    from autoft.serving.evaluate import evaluate_bundle

    metrics = evaluate_bundle(best, "test", data=data)
    atomic_write_json(RunDir(run_dir).test_metrics, {"bundle": str(best), **metrics})
    return metrics


def _enqueue_first(cfg: RunConfig, storage: Any, study_name: str, resuming: bool) -> None:
    """`search.enqueue` (and PaddleHub init_values) run first; a resumed study already has them."""
    import optuna

    if resuming or not cfg.search.enqueue or cfg.search.scheduler == "pbt":  # pbt draws its population itself
        return
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True)
    for params in cfg.search.enqueue:
        study.enqueue_trial(dict(params), skip_if_exists=True)
