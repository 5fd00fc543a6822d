"""Real servers for tests, started and stopped by the test that needs them: a PostgreSQL server (Debian's
`postgresql` binaries, initdb + pg_ctl on a free loopback port under a temp folder) and a two-node Ray cluster
(`ray start --head` + `ray start --address` on this machine). Only the processes started here are ended, by PID;
never `ray stop` (it is machine-wide)."""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl (on PATH, or Debian's /usr/lib/postgresql/<v>/bin), None without."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").is_file() and Path(folder, "pg_ctl").is_file():
            return Path(folder)
    return None


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str

    def url(self, *, password: bool = True, scheme: str = "postgresql") -> str:
        secret = f":{self.password}" if password else ""
        return f"{scheme}://{self.user}{secret}@{self.host}:{self.port}/{self.database}"


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A private PostgreSQL with password (scram) authentication and one database; removed afterwards."""
    bindir = pg_binaries()
    if bindir is None:
        raise RuntimeError("no PostgreSQL binaries")
    root = Path(tempfile.mkdtemp(prefix="autoft-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the `postgres` user
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    password = "pg-" + secrets.token_hex(8)
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if as_user:
        os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
    data, port = root / "data", free_port()
    env = {**os.environ, "LC_ALL": "C"}
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "autoft", "-A", "scram-sha-256",
                    f"--pwfile={pwfile}", "-E", "UTF8"], check=True, capture_output=True, env=env)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w",
                    "start"], check=True, capture_output=True, env=env)
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="autoft", password=password, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE autoft")
        yield Postgres("127.0.0.1", port, "autoft", password, "autoft")
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, env=env)
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class RayCluster:
    address: str
    env: dict[str, str]  # what the driver needs: the cluster's auth mode and token


def marked_pids(marker: str) -> list[int]:
    """PIDs of processes whose environment holds ``marker`` (a `NAME=value` the test put there: every process a
    started search or `ray start` spawns inherits it; Ray's agents outlive a SIGKILLed driver)."""
    needle = marker.encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def kill_marked(marker: str, grace: float = 0.0) -> None:
    """End the marked processes, by PID: SIGTERM first when ``grace`` > 0, then SIGKILL."""
    for sig in ((signal.SIGTERM, signal.SIGKILL) if grace > 0 else (signal.SIGKILL,)):
        for pid in marked_pids(marker):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.time() + (grace or 5)
        while marked_pids(marker) and time.time() < deadline:
            time.sleep(0.3)


@contextmanager
def ray_cluster(cpus_per_node: int = 1) -> Iterator[RayCluster]:
    """A head and a second node on this machine, token authentication on (one token for every node and the
    driver, as docs/clusters.md's recipe says), one CPU each."""
    marker = secrets.token_hex(8)
    port = free_port()
    ray_cli = str(Path(sys.executable).parent / "ray")
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, **auth, "AUTOFT_TEST_CLUSTER": marker, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus", str(cpus_per_node), "--num-gpus", "0", "--node-ip-address", "127.0.0.1",
              "--disable-usage-stats"]
    temp = tempfile.mkdtemp(prefix="autoft-raycluster-")
    try:
        subprocess.run([ray_cli, "start", "--head", "--port", str(port), "--include-dashboard", "false",
                        "--temp-dir", temp, *common], check=True, capture_output=True, env=env, timeout=180)
        subprocess.run([ray_cli, "start", "--address", f"127.0.0.1:{port}", *common], check=True,
                       capture_output=True, env=env, timeout=180)
        yield RayCluster(f"127.0.0.1:{port}", auth)
    finally:
        kill_marked(f"AUTOFT_TEST_CLUSTER={marker}", grace=10)
        shutil.rmtree(temp, ignore_errors=True)
