"""Ray itself: start or attach (``ray_init``), how many trials fit at once, and one Tune run of the trainable
(``run_tuner``), used by the search and by the reruns."""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import Callback
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import SearchAlgorithm, Searcher

from autoft.config import RunConfig
from autoft.errors import ConfigError
from autoft.run.layout import RunDir
from autoft.run.storage import CONNECT_TIMEOUT_ENV, connect_timeout
from autoft.search.recorder import Recorder, RecorderCallback
from autoft.search.trial import TrialJob, trainable

__all__ = ["ray_init", "check_address", "ray_temp_dir", "check_resources", "RaySession", "max_concurrent",
           "run_tuner"]


def ray_init(address: str | None, dashboard: bool, on_dashboard: Callable[[str], None] | None = None,
             temp_dir: str | None = None) -> bool:
    """Start (or attach to) Ray; True when this call started it, so the search also shuts it down. A local Ray
    keeps its session files in ``temp_dir`` (a new temporary folder when None). A bad or unreachable ``address`` is
    one line (ConfigError)."""

    if ray.is_initialized():
        return False
    # Ray keeps token auth on; its notice about it is not news to an autoft user. Failed trials are recorded in
    # trial.json and the leaderboard, so Tune's own tracebacks on the console only repeat them (AUTOFT_DEBUG=1 shows).
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if os.environ.get("AUTOFT_DEBUG") != "1":
        for name in ("ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
    if address:
        check_address(address)
        _token_mode_for_attach()
        with tempfile.TemporaryFile(mode="w+b") as said:
            try:
                with _stderr_into(said):  # Ray's core logs each failed retry on fd 2: keep them for the reason
                    context = ray.init(address=address, **kwargs)
            except Exception as exc:  # ConnectionError, ValueError, AuthenticationError…: Ray's reasons, one line
                said.seek(0)
                raise ConfigError(f"--address {address}: cannot attach to a Ray cluster "
                                  f"({_reason(exc, said.read().decode(errors='replace'))})") from None
            said.seek(0)
            _replay_warnings(said.read().decode(errors="replace"))
    else:
        context = ray.init(include_dashboard=dashboard, _temp_dir=temp_dir or ray_temp_dir(), **kwargs)
    url = getattr(context, "dashboard_url", None)
    if on_dashboard is not None and url:
        on_dashboard(url if "://" in url else f"http://{url}")
    return True


# Ray puts Unix sockets at TEMP/session_<date>_<pid>/sockets/plasma_store, and a socket path may not exceed 107
# bytes: a long TMPDIR (macOS's /var/folders/…, a test's tmp_path) would stop Ray from starting at all
_RAY_TEMP_MAX = 24


def ray_temp_dir() -> str:
    """A new folder for a local Ray's session files: under the temp folder, or under /tmp when that path is too long
    for Ray's sockets."""
    base = tempfile.gettempdir()
    if len(base) > _RAY_TEMP_MAX and os.access("/tmp", os.W_OK):
        base = "/tmp"
    return tempfile.mkdtemp(prefix="autoft-ray-", dir=base)


def check_address(address: str) -> None:
    """The cheap checks of ``--address``, made before any data is decoded: its form, Ray Client for ray://, and
    that Ray's GCS answers at HEAD:PORT within ``AUTOFT_CONNECT_TIMEOUT`` seconds."""
    _check_client(address)
    _check_reachable(address)


def _check_client(address: str) -> None:
    if address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
        raise ConfigError(f"--address {address}: a ray:// address needs Ray Client (ray[client]); "
                          "pip install 'autoft[client]', or give the head's GCS address HEAD:6379")


def _check_reachable(address: str) -> None:
    """A HEAD:PORT where nothing listens, or something other than Ray's GCS (a web server, a port that never
    answers, another gRPC service), is one line now: Ray itself would retry it for many minutes, silently."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address {address}: must be HEAD:PORT (the head's GCS port, 6379 unless `ray start "
                          "--head --port` chose another), ray://HEAD:10001 or auto")
    timeout = connect_timeout()
    deadline = time.monotonic() + timeout
    silent = f"no answer in {timeout:g} s; {CONNECT_TIMEOUT_ENV} sets the wait"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            # with TLS the handshake is Ray's own, so only its GCS client below can tell
            reason = None if _ray_tls() else _http2_reason(conn, deadline, silent)
    except TimeoutError:
        reason = silent
    except OSError as exc:
        raise ConfigError(f"--address {address}: cannot attach to a Ray cluster (nothing answers there: "
                          f"{exc.strerror or type(exc).__name__}); is `ray start --head --port {port}` running "
                          "on that machine?") from None
    reason = reason or _gcs_reason(address, deadline)
    if reason:
        raise ConfigError(f"--address {address}: not a Ray GCS ({reason}); give the head's GCS address HEAD:PORT "
                          "(6379 unless `ray start --head --port` chose another)")


def _ray_tls() -> bool:
    return os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")


# the HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS is one) answers with its SETTINGS
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_H2_SETTINGS = 4


def _http2_reason(conn: socket.socket, deadline: float, silent: str) -> str | None:
    """Why the peer is not a gRPC server, or None: a web server answers HTTP/1, a wrong port may never answer."""
    head = b""
    try:
        conn.sendall(_H2_PREFACE)
        while len(head) < 9:
            conn.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = conn.recv(9 - len(head))
            if not chunk:
                break
            head += chunk
    except TimeoutError:
        return silent
    except OSError:
        pass  # a reset: said below as a closed connection
    if len(head) == 9 and head[3] == _H2_SETTINGS:
        return None
    if not head:
        return "it closed the connection without answering"
    text = head.decode("ascii", errors="replace")
    shown = repr(text.strip()) if text.isprintable() else head.hex(" ")
    return f"it answers {shown}…: a web server or another service, not gRPC"


def _gcs_reason(address: str, deadline: float) -> str | None:
    """Ray's own GCS client asks for the cluster id (``ray._raylet.InnerGcsClient``: private, pinned by the cluster
    tests): another gRPC server (a raylet's port, any other service) answers UNIMPLEMENTED. A cluster that refuses
    this driver's authentication is a GCS all the same: ray.init then says what it needs."""
    from ray._raylet import InnerGcsClient  # type: ignore[attr-defined]  # private: ray's _raylet.pyi omits it
    from ray.exceptions import AuthenticationError

    budget_ms = max(1000, int((deadline - time.monotonic()) * 1000))
    with tempfile.TemporaryFile(mode="w+b") as said, _stderr_into(said):  # its failed-retry log lines on fd 2
        try:
            InnerGcsClient.standalone(address, None, budget_ms)
        except AuthenticationError:
            return None
        except Exception as exc:  # RpcError (code 12: UNIMPLEMENTED), a timeout
            code = getattr(exc, "rpc_code", None)
            return f"it speaks gRPC but not as Ray's GCS: {_reason(exc)}{f' (gRPC code {code})' if code else ''}"
    return None


def _token_mode_for_attach() -> None:
    """Like ``ray start --head``: with a token at hand and no mode chosen, attach in token mode. A head without
    authentication accepts any token, so this only helps; RAY_AUTH_MODE=disabled turns it off."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or \
            (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


@contextlib.contextmanager
def _stderr_into(sink: Any) -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(sink.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _replay_warnings(logged: str) -> None:
    """What Ray's core said while attaching, less its retry chatter, for a search that goes on."""
    kept = [line for line in logged.splitlines() if line.strip() and "Failed to connect" not in line
            and "Failed to get cluster ID" not in line]
    if kept:
        print("\n".join(kept), file=sys.stderr)


def _reason(exc: BaseException, logged: str = "") -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    said = f"{exc} {logged}".lower()
    if "invalidauthtoken" in said or "unauthenticated" in said or ("auth" in said and "token" in said):
        text += ("; the cluster refused this driver's authentication: every node and this driver need the same "
                 "RAY_AUTH_MODE and, with tokens, the head's token (RAY_AUTH_TOKEN, or `ray get-auth-token` on the "
                 "head)")
    return f"{type(exc).__name__}: {text[:300]}"


def check_resources(cfg: RunConfig, address: str | None) -> None:
    """One line before any trial when no node can run a trial (Tune would wait for it forever, silently)."""
    need = cfg.search.resources_per_trial
    nodes = [n.get("Resources") or {} for n in ray.nodes() if n.get("Alive")]
    where = "the cluster" if address else "this machine"
    for key, label, amount in (("GPU", "GPU", need.gpu), ("CPU", "CPU", need.cpu)):
        if amount <= 0:
            continue
        largest = max((float(r.get(key, 0)) for r in nodes), default=0.0)
        if amount > largest:
            total = sum(float(r.get(key, 0)) for r in nodes)
            per_node = f" (its largest node has {largest:g})" if len(nodes) > 1 and total >= amount else ""
            raise ConfigError(f"search.resources_per_trial: needs {amount:g} {label}{'s' if amount != 1 else ''} "
                              f"per trial; {where} has {total:g}{per_node}")


class RaySession:
    """Ray for one search: started (or attached) once, resources checked, shut down once if this search started
    it, and a local Ray's session folder (``$TMPDIR/autoft-ray-*``) removed then. ``start`` and ``close`` may be
    called again; they do nothing the second time."""

    def __init__(self, cfg: RunConfig, address: str | None, dashboard: bool,
                 on_dashboard: Callable[[str], None] | None = None) -> None:
        self.cfg, self.address, self.dashboard, self.on_dashboard = cfg, address, dashboard, on_dashboard
        self.started = False
        self.checked = False
        self.temp_dir: str | None = None

    def start(self) -> None:
        if self.checked:
            return
        if not self.address and not ray.is_initialized():
            self.temp_dir = ray_temp_dir()
        try:
            self.started = ray_init(self.address, self.dashboard, self.on_dashboard, self.temp_dir) or self.started
            check_resources(self.cfg, self.address)
        except BaseException:
            self.close()
            raise
        self.checked = True

    def close(self) -> None:
        if self.started:
            ray.shutdown()
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.started = False
        self.checked = False
        self.temp_dir = None


def max_concurrent(cfg: RunConfig) -> int:

    if cfg.search.max_concurrent != "auto":
        return int(cfg.search.max_concurrent)
    res = ray.cluster_resources()
    need = cfg.search.resources_per_trial
    slots = int(res.get("CPU", 1) // need.cpu)
    if need.gpu > 0:
        slots = min(slots, int(res.get("GPU", 0) // need.gpu))
    return max(1, slots)


def run_tuner(cfg: RunConfig, run_dir: Path, *, searcher: Searcher | SearchAlgorithm, recorder: Recorder, name: str,
              num_samples: int, param_names: Sequence[str], scheduler: TrialScheduler | None = None,
              stop: Callable[[str, Mapping[str, Any]], bool] | None = None, callbacks: Sequence[Callback] = (),
              costs: Mapping[tuple[str, int], float] | None = None) -> bool:
    """Run up to ``num_samples`` trials of ``cfg`` under Tune; True when Ctrl-C (or a crash) left trials running,
    which are then marked interrupted. ``costs``: measured epoch seconds per (backbone, image size)
    (autoft.search.costs)."""
    job = TrialJob(cfg=cfg, run_dir=str(run_dir), param_names=tuple(param_names),
                   costs=dict(costs) if costs is not None else None)
    res = cfg.search.resources_per_trial
    fn = tune.with_resources(tune.with_parameters(trainable, job=job), {"cpu": res.cpu, "gpu": res.gpu})
    ray_dir = RunDir(run_dir).ray
    attempt = len(list(ray_dir.glob(f"{name}-*"))) if ray_dir.is_dir() else 0
    tuner = tune.Tuner(
        fn,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples,
                                    max_concurrent_trials=max_concurrent(cfg), reuse_actors=True),
        run_config=tune.RunConfig(name=f"{name}-{attempt}", storage_path=str(ray_dir), verbose=0,
                                  callbacks=[RecorderCallback(recorder), *callbacks], stop=stop,
                                  failure_config=tune.FailureConfig(max_failures=cfg.search.max_failures)))
    interrupted = False
    try:
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # Tune handles Ctrl-C itself (it stops the trials and returns): trials left running mean it did
        interrupted = recorder.interrupt_running() or interrupted
    return interrupted
