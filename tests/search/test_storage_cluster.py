"""Outgrowing one machine: searches sharing a real PostgreSQL server, a real two-node Ray cluster, and the starts
that must be refused before anything is written. Real PostgreSQL (Debian's binaries, our own server on a free
loopback port), real Ray, real Paddle; no stand-ins."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml

from autoft.errors import ConfigError
from autoft.run.records import read_trials
from autoft.run.storage import driver_url, public_url, read_study, shown_url, with_password
from autoft.run.layout import RunDir

from cli_helpers import assert_one_line_exit_2, run
from searched_run import shapes_config
from servers import free_port, ray_cluster

BIN = Path(sys.executable).parent


def _config(tmp: Path, shapes_dir: Path, **search: object) -> Path:
    raw = shapes_config(shapes_dir, trials=2, max_concurrent=2, scheduler="fifo", **search)
    raw["train"]["epochs"] = 1
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("AUTOFT_DEBUG", "AUTOFT_STORAGE_PASSWORD")}
    return subprocess.run([str(BIN / "autoft"), *args], capture_output=True, text=True, timeout=timeout,
                          env={**full, **(env or {})})


def _files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


# --- URLs: the driver SQLAlchemy can load, the password never kept or shown ---------------------------------------

def test_postgresql_urls_get_an_installed_driver_and_lose_their_password() -> None:
    url = "postgresql://me:s3cret@db.example:5432/autoft"
    assert driver_url(url) == "postgresql+psycopg://me:s3cret@db.example:5432/autoft"  # psycopg 3 is installed
    assert driver_url("postgres://me@db/x") == "postgresql+psycopg://me@db/x"
    assert public_url(url) == "postgresql://me@db.example:5432/autoft"
    assert shown_url(url) == "postgresql://me:***@db.example:5432/autoft"
    assert driver_url("sqlite:///rel/o.db") == f"sqlite:///{Path('rel/o.db').resolve()}"


@pytest.mark.parametrize("url, extra", [("postgresql+psycopg2://me:pw@h/db", "postgres"), ("mysql://me:pw@h/db", "mysql")])
def test_a_missing_driver_names_the_extra_and_hides_the_password(url: str, extra: str) -> None:
    for module in ("psycopg2", "MySQLdb", "pymysql"):
        if __import__("importlib").util.find_spec(module) is not None:
            pytest.skip(f"{module} is installed here")
    with pytest.raises(ConfigError) as caught:
        driver_url(url)
    assert f"pip install 'autoft[{extra}]'" in str(caught.value) and "pw" not in str(caught.value).replace("pip", "")


def test_the_password_comes_from_the_environment_when_the_url_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOFT_STORAGE_PASSWORD", "p@ss/word")
    full = with_password("postgresql+psycopg://me@h:5/db")
    assert full == "postgresql+psycopg://me:p%40ss%2Fword@h:5/db"
    assert with_password("postgresql+psycopg://me:given@h/db") == "postgresql+psycopg://me:given@h/db"


def test_a_tampered_study_json_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "study.json").write_text(json.dumps({"study": "x", "storage": "postgresql://u:pw@h/db"}))
    with pytest.raises(ConfigError, match="must not hold a password"):
        read_study(RunDir(tmp_path), "x")
    (tmp_path / "study.json").write_text(json.dumps({"study": "../up", "storage": None}))
    with pytest.raises(ConfigError, match="study"):
        read_study(RunDir(tmp_path), "x")


# --- one PostgreSQL database, several runs ------------------------------------------------------------------------

def test_a_long_temp_folder_still_lets_a_local_ray_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autoft.search.tuner import ray_temp_dir

    deep = tmp_path / ("x" * 60)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    made = Path(ray_temp_dir())
    try:
        assert made.parent == Path("/tmp") and made.name.startswith("autoft-ray-")
        assert len(str(made / "session_2026-12-02_13-41-44_810663_4194304" / "sockets" / "plasma_store")) <= 107
    finally:
        made.rmdir()
    short = tmp_path.parent.parent  # /tmp/pytest-of-USER: short enough to keep
    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    kept = Path(ray_temp_dir())
    kept.rmdir()
    assert kept.parent == Path("/tmp") and short.exists()


@pytest.mark.slow
def test_two_runs_in_one_database_keep_their_own_studies_and_no_output_shows_the_password(
        pg, shapes_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    config = _config(tmp_path, shapes_dir)
    results = tmp_path / "results"
    scratch = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    outputs = []
    for name in ("first", "second"):
        out = _cli("search", str(config), "--storage", pg.url(), "--results-dir", str(results), "--name", name,
                   "--plain", env={"TMPDIR": str(scratch)})
        outputs.append(out.stdout + out.stderr)
        assert out.returncode == 0, out.stderr[-3000:]
    assert list(scratch.glob("autoft-ray-*")) == []  # the local Ray's session folder goes with the search
    summaries = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(driver_url(pg.url()))}
    assert summaries == {"first": 2, "second": 2}  # each run has its own study, named after its folder
    for name in ("first", "second"):
        run_dir = results / name
        ref = read_study(RunDir(run_dir), "shapes")
        assert (ref.name, ref.url) == (name, pg.url(password=False))
        study = optuna.load_study(study_name=name, storage=driver_url(pg.url()))
        ids = {t.user_attrs["ray_trial_id"] for t in study.trials}
        assert ids == {r.trial_id for r in read_trials(run_dir)}  # only its own trials

    mask = os.umask(0)
    os.umask(mask)
    best = results / "first" / "best_model"
    assert best.stat().st_mode & 0o777 == 0o777 & ~mask  # a teammate can read the winner (the umask decides)
    assert {p.stat().st_mode & 0o777 for p in best.rglob("*") if p.is_file()} == {0o666 & ~mask}

    # later commands find the study from the run alone; the password comes from the environment
    first = results / "first"
    report = first / "report" / "report.html"
    before = report.read_bytes()
    denied = _cli("report", str(first))
    outputs.append(denied.stdout + denied.stderr)
    assert_one_line_exit_2(denied, "cannot open the Optuna study storage")
    assert report.read_bytes() == before  # a good report is not replaced by one without the Optuna plots
    drawn = _cli("report", str(first), env={"AUTOFT_STORAGE_PASSWORD": pg.password})
    outputs.append(drawn.stdout + drawn.stderr)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    for plot in ("optimization_history", "param_importances", "parallel_coordinate"):
        assert (first / "report" / f"{plot}.png").is_file(), plot

    # the Optuna dashboard names the database without its password
    dash = subprocess.Popen([str(BIN / "autoft"), "dashboard", "optuna", str(first), "--port", str(free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "AUTOFT_STORAGE_PASSWORD": pg.password})
    try:
        line = dash.stdout.readline()
    finally:
        dash.kill()
        dash.communicate()
    outputs.append(line)
    assert line.startswith(f"Optuna dashboard for postgresql+psycopg://autoft:***@127.0.0.1:{pg.port}/autoft"), line
    assert "this run's study: first" in line

    assert all(pg.password not in text for text in outputs), [t for t in outputs if pg.password in t][:1]
    assert _files_holding(results, pg.password) == []  # nor any file of either run (ray/ included)


@pytest.mark.slow
def test_joining_a_study_is_explicit(pg, shapes_dir: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, shapes_dir)
    a, b = tmp_path / "a", tmp_path / "b"
    joined = _cli("search", str(config), "--storage", pg.url(), "--results-dir", str(a), "--name", "team",
                  "--study", "shared", "--quiet")
    assert joined.returncode == 0, joined.stderr[-2000:]
    again = _cli("search", str(config), "--storage", pg.url(), "--results-dir", str(b), "--name", "shared",
                 "--quiet")
    assert_one_line_exit_2(again, "already holds a study named 'shared'; pass --study shared", b)
    second = _cli("search", str(config), "--storage", pg.url(), "--results-dir", str(b), "--name", "mine",
                  "--study", "shared", "--quiet")
    assert second.returncode == 0, second.stderr[-2000:]
    study = optuna.load_study(study_name="shared", storage=driver_url(pg.url()))
    assert len(study.trials) == 4  # both drivers' trials, and TPE saw the first run's when the second sampled
    assert len({t.params["learning_rate"] for t in study.trials}) == 4  # the joiner did not repeat seed 0's points
    assert len(read_trials(b / "mine")) == 2 and len(read_trials(a / "team")) == 2  # each run lists its own
    assert read_study(RunDir(a / "team"), "shapes").sampler_seed is None  # it made the study: search.seed
    assert read_study(RunDir(b / "mine"), "shapes").sampler_seed is not None  # it joined: a seed of its own
    assert "joined a study other runs draw in" in second.stdout


# --- starts that are refused before anything is written ----------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("flags, needle", [
    (["--storage", "postgresql://autoft:hunter2@127.0.0.1:1/none"], "cannot open the Optuna study storage"),
    (["--address", "ray://127.0.0.1:1"], "pip install 'autoft[client]'"),
    (["--set", "search.resources_per_trial.gpu=1"], "needs 1 GPU per trial; this machine has 0"),
    (["--set", "search.resources_per_trial.cpu=64", "--set", "search.max_concurrent=1"],
     "needs 64 CPUs per trial; this machine has"),
])
def test_a_search_that_cannot_start_leaves_the_results_folder_empty(shapes_dir: Path, tmp_path: Path,
                                                                    flags: list[str], needle: str) -> None:
    if flags[0] == "--address" and __import__("importlib").util.find_spec("grpc") is not None:
        pytest.skip("ray[client] is installed here; the missing-extra line cannot be shown")
    results = tmp_path / "results"
    out = run("search", str(_config(tmp_path, shapes_dir)), "--results-dir", str(results), *flags)
    assert_one_line_exit_2(out, needle, results)
    assert "hunter2" not in out.stderr


@pytest.mark.slow
def test_an_unreachable_cluster_is_one_line(shapes_dir: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    out = run("search", str(_config(tmp_path, shapes_dir)), "--results-dir", str(results), "--address",
              "127.0.0.1:9", timeout=400)
    assert_one_line_exit_2(out, "--address 127.0.0.1:9: cannot attach to a Ray cluster", results)


# --- a real two-node Ray cluster ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_two_node_cluster_runs_trials_on_both_nodes_and_each_trial_names_its_node(shapes_dir: Path,
                                                                                    tmp_path: Path) -> None:
    config = _config(tmp_path, shapes_dir, resources_per_trial={"cpu": 1, "gpu": 0})
    with ray_cluster(cpus_per_node=1) as cluster:
        nodes = subprocess.run(
            [sys.executable, "-c", "import json, ray; ray.init(address=%r, log_to_driver=False, logging_level='ERROR');"
             "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))" % cluster.address],
            capture_output=True, text=True, timeout=120, env={**os.environ, **cluster.env})
        assert nodes.returncode == 0, nodes.stderr[-2000:]
        node_ids = set(json.loads(nodes.stdout.strip().splitlines()[-1]))
        assert len(node_ids) == 2
        out = _cli("search", str(config), "--address", cluster.address, "--results-dir", str(tmp_path / "r"),
                   "--name", "cluster", "--plain", env=cluster.env)
        assert out.returncode == 0, out.stderr[-3000:]
    records = read_trials(tmp_path / "r" / "cluster")
    assert len(records) == 2 and all(r.status.finished for r in records), [r.error for r in records]
    assert {r.extra["node_id"] for r in records} == node_ids  # one trial on each node (one CPU each)
    assert all(r.extra["hostname"] for r in records)
    raw = json.loads((tmp_path / "r" / "cluster" / "trials" / records[0].trial_id / "trial.json").read_text())
    assert raw["extra"]["node_id"] in node_ids


def _raylet_ports(gcs_address: str) -> list[int]:
    """The TCP ports the cluster's raylets listen on: gRPC servers of Ray's own that are not its GCS."""
    import psutil

    gcs_port = gcs_address.rpartition(":")[2]
    ports = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        flags = proc.info["cmdline"] or []  # the raylet names the GCS by the machine's IP: match on the port
        if proc.info["name"] == "raylet" and any(f.startswith("--gcs-address=") and f.endswith(f":{gcs_port}")
                                                 for f in flags):
            ports += [c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    return sorted(set(ports))


@pytest.mark.slow
def test_a_cluster_with_tokens_refuses_a_driver_without_the_token(shapes_dir: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    config = str(_config(tmp_path, shapes_dir))
    with ray_cluster(cpus_per_node=1) as cluster:
        wrong = {**cluster.env, "RAY_AUTH_TOKEN": "0" * 64}
        out = _cli("search", config, "--address", cluster.address, "--results-dir", str(results), env=wrong,
                   timeout=300)
        ports = _raylet_ports(cluster.address)
        assert ports
        # a raylet's port is a real gRPC server but not the GCS: Ray's GCS client hears UNIMPLEMENTED (this pins
        # the private ray._raylet.InnerGcsClient the probe uses; the two-node test pins it against a GCS)
        elsewhere = _cli("search", config, "--address", f"127.0.0.1:{ports[0]}", "--results-dir", str(results),
                         env=cluster.env, timeout=60)
    assert_one_line_exit_2(out, "the same RAY_AUTH_MODE", results)
    assert_one_line_exit_2(elsewhere, f"--address 127.0.0.1:{ports[0]}: not a Ray GCS (it speaks gRPC but not as "
                                      "Ray's GCS: RpcError", results)
