"""Run folders: names that cannot escape, one search per folder, damaged run files, unwritable folders, OOM deaths."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from autoft.config import config_to_dict, load_config
from autoft.run.records import TrialStatus, read_trials

from cli_helpers import assert_one_line_exit_2, run
from servers import kill_marked
from test_reliability import start_search, wait_until
from searched_run import shapes_config


def tiny_config(shapes_dir: Path, tmp: Path, trials: int = 2) -> Path:
    raw = shapes_config(shapes_dir, trials=trials, max_concurrent=1)
    raw["train"]["epochs"] = 1
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", ["../escaped", "/tmp/absolute-run", "a/b", ".hidden", ".."])
def test_name_that_is_a_path_is_refused(name: str, shapes_dir: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    out = run("search", str(tiny_config(shapes_dir, tmp_path)), "--name", name, "--results-dir", str(results))
    assert_one_line_exit_2(out, "--name: must be letters, digits", results)
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/absolute-run").exists()


@contextlib.contextmanager
def read_only_folder(tmp: Path) -> Iterator[Path]:
    """A folder nobody can write: a read-only tmpfs when root (root ignores mode bits), else mode 0555."""
    folder = tmp / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.decode().strip()}")
        try:
            yield folder
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)


@pytest.mark.parametrize("where", ["results-dir", "AUTOFT_HOME"])
@pytest.mark.parametrize("blocked", ["file", "read-only"])
def test_unwritable_results_dir_or_home_is_one_line(where: str, blocked: str, shapes_dir: Path,
                                                    tmp_path: Path) -> None:
    cfg = tiny_config(shapes_dir, tmp_path)
    with contextlib.ExitStack() as stack:
        if blocked == "file":
            target = tmp_path / "blocker"
            target.write_text("a file where a folder should be")
        else:
            target = stack.enter_context(read_only_folder(tmp_path)) / "inside"
        env = {**os.environ, "AUTOFT_HOME": str(target)} if where == "AUTOFT_HOME" else os.environ
        results = target / "results" if where == "results-dir" else tmp_path / "results"
        out = subprocess.run([sys.executable, "-m", "autoft.cli", "search", str(cfg), "--results-dir", str(results)],
                             capture_output=True, text=True, timeout=300, env={k: v for k, v in env.items()
                                                                               if k != "AUTOFT_DEBUG"})
        needle = "is a file, not a folder" if blocked == "file" else "is not writable"
        assert_one_line_exit_2(out, needle, tmp_path / "results")
        assert ("--results-dir" if where == "results-dir" else "AUTOFT_HOME") in out.stderr


def _run_folder(tmp: Path, shapes_dir: Path) -> Path:
    """A run folder as a search leaves it: config.yaml and trials/*/trial.json (two scored trials)."""
    run_dir = tmp / "results" / "handmade"
    (run_dir / "trials").mkdir(parents=True)
    cfg = load_config(tiny_config(shapes_dir, tmp))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    for i, acc in enumerate((0.5, 0.75)):
        trial = run_dir / "trials" / f"t{i}"
        trial.mkdir()
        (trial / "trial.json").write_text(json.dumps({
            "trial_id": f"t{i}", "params": {"learning_rate": 0.001, "optimizer": "adam"}, "status": "completed",
            "number": i, "history": [{"epoch": 1, "val_acc": acc, "val_loss": 1.0}], "started": i, "seconds": 3}))
    return run_dir


@pytest.mark.parametrize("damage", ['{"trial_id": "t1", "params": {"learning_r', "", '{"history": [1, 2]}', "[]"])
def test_a_damaged_trial_json_is_named_once_and_skipped(damage: str, shapes_dir: Path, tmp_path: Path) -> None:
    run_dir = _run_folder(tmp_path, shapes_dir)
    (run_dir / "trials" / "t1" / "trial.json").write_text(damage)
    out = run("leaderboard", str(run_dir))
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if "trial.json" in ln]
    assert len(warnings) == 1 and str(run_dir / "trials" / "t1" / "trial.json") in warnings[0], out.stderr
    assert "skipped" in warnings[0]
    assert "t0" in out.stdout and "t1" not in out.stdout.replace("t1/", "")
    report = run("report", str(run_dir))
    assert report.returncode == 0, report.stderr
    assert "Traceback" not in report.stderr and (run_dir / "report" / "report.html").is_file()


def test_garbage_optuna_db_on_resume_is_one_line(shapes_dir: Path, tmp_path: Path) -> None:
    run_dir = _run_folder(tmp_path, shapes_dir)
    (run_dir / "optuna.db").write_bytes(b"this is not an sqlite database, just bytes\n" * 50)
    before = sorted(p.name for p in run_dir.rglob("*"))
    out = run("search", "--resume", str(run_dir))
    assert_one_line_exit_2(out, f"{run_dir / 'optuna.db'}: cannot open the Optuna study storage")
    assert sorted(p.name for p in run_dir.rglob("*") if p.name != ".lock") == before


def _holder_pid(run_dir: Path) -> bool:
    lock = run_dir / ".lock"
    return lock.is_file() and lock.read_text().strip().isdigit()


@pytest.mark.slow
def test_a_second_search_or_resume_of_one_folder_is_refused(shapes_dir: Path, tmp_path: Path) -> None:
    """Two searches with one --name, then two resumes at once: the second of each is refused; budgets hold."""
    results, run_dir = tmp_path / "results", tmp_path / "results" / "same"
    cfg = tiny_config(shapes_dir, tmp_path, trials=2)
    first, marker = start_search(cfg, results, "same", "--quiet")
    try:
        wait_until(lambda: _holder_pid(run_dir), "lock on the run folder", first)
        second = run("search", str(cfg), "--name", "same", "--results-dir", str(results), "--quiet")
        assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert "same" in second.stderr and ("in use by another autoft search" in second.stderr
                                            or "already holds a run" in second.stderr)
        out, err = first.communicate(timeout=600)
        assert first.returncode == 0, err
    finally:
        kill_marked(marker)
    assert len(read_trials(run_dir)) == 2
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    saved["search"]["trials"] = 3  # a hand-edited budget: resume runs one more trial
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    resume = subprocess.Popen([sys.executable, "-m", "autoft.cli", "search", "--resume", str(run_dir), "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: any(r.status is TrialStatus.RUNNING for r in read_trials(run_dir)), "a resumed trial",
                   resume)
        again = run("search", "--resume", str(run_dir), "--quiet")
        assert_one_line_exit_2(again, "is in use by another autoft search")
        assert str(resume.pid) in again.stderr
        resume.communicate(timeout=600)
        assert resume.returncode == 0
    finally:
        if resume.poll() is None:
            resume.kill()
    records = read_trials(run_dir)
    assert len(records) == 3 and all(r.status.finished for r in records), [(r.trial_id, r.status) for r in records]


def _cgroup_v1(tmp_name: str, limit: int) -> Path | None:
    root = Path("/sys/fs/cgroup/memory")
    group = root / tmp_name
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit))
        if (group / "memory.memsw.limit_in_bytes").exists():  # no swapping out of the limit either
            (group / "memory.memsw.limit_in_bytes").write_text(str(limit))
    except OSError:
        return None
    return group


@pytest.mark.slow
def test_a_trial_killed_by_the_kernel_oom_killer_is_recorded_as_out_of_memory(shapes_dir: Path,
                                                                              tmp_path: Path) -> None:
    """A real OOM kill: the search runs in a memory cgroup too small for a 512 px trial, Ray's monitor off."""
    group = _cgroup_v1(f"autoft-test-{os.getpid()}", 2_500 * 2**20)
    if group is None:
        pytest.skip("no writable cgroup v1 memory controller here")
    raw = shapes_config(shapes_dir, trials=1, max_concurrent=1)
    raw["train"].update(epochs=1, batch_size=32)
    raw["data"]["image_size"] = 512
    raw["space"] = {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
    cfg = tmp_path / "big.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "RAY_memory_monitor_refresh_ms": "0"}  # leave the kill to the kernel
    procs = group / "cgroup.procs"
    try:
        out = subprocess.run([sys.executable, "-m", "autoft.cli", "search", str(cfg), "--name", "oom",
                              "--results-dir", str(tmp_path / "results"), "--quiet"], env=env, capture_output=True,
                             text=True, timeout=900, preexec_fn=lambda: procs.write_text(str(os.getpid())))
    finally:
        deadline = time.time() + 30
        while procs.read_text().strip() and time.time() < deadline:
            time.sleep(0.5)  # Ray's agents end with the driver's session
        with contextlib.suppress(OSError):
            group.rmdir()
    assert out.returncode == 1, out.stderr[-3000:]
    (record,) = read_trials(tmp_path / "results" / "oom")
    assert record.status is TrialStatus.FAILED
    assert record.error.startswith("infeasible: out of memory with these params"), record.error
