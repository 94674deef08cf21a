"""The whole system under the supervisor (``python -m shared.supervisor up``) on free ports and a temp
data dir, plus the bench's own trivial aiohttp server; both stopped by their process ids."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from bench.common import free_port, log
from shared.supervisor import terminate_with_parent

READY_TIMEOUT = 120.0
STOP_TIMEOUT = 40.0
REPO = Path(__file__).resolve().parent.parent


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


class System:
    """A running supervisor: ``base`` is the gateway's API root, ``data_dir`` its temp data folder."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env or {}
        self.data_dir = Path(tempfile.mkdtemp(prefix="coditect-bench-"))
        self.nats_port = free_port()
        self.gateway_port = free_port()
        self.base = f"http://127.0.0.1:{self.gateway_port}/api/v5"
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.started_in = float("nan")

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if "[coditect] ready:" in line:
                self._ready.set()

    def start(self) -> None:
        env = {
            **os.environ,
            "CODITECT_DATA_DIR": str(self.data_dir),
            "CODITECT_NATS_PORT": str(self.nats_port),
            "CODITECT_GATEWAY_PORT": str(self.gateway_port),
            # Load generators register many users from one address: lift the sign-up limits.
            "CODITECT_REGISTER_ADDRESS_LIMIT": "1000000",
            "CODITECT_REGISTER_GLOBAL_LIMIT": "1000000",
            "CODITECT_MAX_ACTIVE_SESSIONS_PER_USER": "100000000",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        log(f"starting the system (supervisor) on gateway port {self.gateway_port}, data in {self.data_dir}")
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shared.supervisor", "up"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=terminate_with_parent,  # a killed bench leaves no system running
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._ready.wait(0.5) or http_status(f"{self.base}/ready") == 200:
                log(f"system ready after {time.monotonic() - started:.1f}s")
                self.started_in = time.monotonic() - started
                return
            if self.process.poll() is not None:
                break
        output = "\n".join(self.lines[-20:])
        self.stop()
        raise RuntimeError(f"the system did not become ready:\n{output}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            log("stopping the system (SIGINT to the supervisor)")
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log("the supervisor did not stop in time; killing it (its children get SIGTERM)")
                self.process.kill()
                self.process.wait()
        self.process = None

    def connect_options(self, identity: str) -> dict[str, str]:
        """``nats.connect`` arguments that make a bench client one of the system's bus identities."""
        return {"nkeys_seed": str(self.data_dir / "bus" / f"{identity}.nk"), "inbox_prefix": f"_INBOX.{identity}"}

    def log_tail(self, name: str, lines: int = 5) -> list[str]:
        path = self.data_dir / "logs" / f"{name}.log"
        if not path.exists():
            return []
        return path.read_text(errors="replace").splitlines()[-lines:]

    def log_sizes(self) -> dict[str, int]:
        logs = self.data_dir / "logs"
        return {p.stem: p.stat().st_size for p in sorted(logs.glob("*.log"))} if logs.exists() else {}

    def cleanup(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


def front_count() -> int:
    """How many HTTP processes each reference runs: as many as the system's gateway (the supervisor's
    rule, ``CODITECT_GATEWAY_WORKERS``), so that the ratios compare like with like."""
    from shared.supervisor import gateway_workers

    return gateway_workers(os.environ)


def wait_listening(pids: list[int], port: int, timeout: float = 30.0) -> None:
    """Until every process has its socket on ``port`` (with several on one port, one answering says
    nothing of the others)."""
    import psutil

    deadline = time.monotonic() + timeout
    for pid in pids:
        while not any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in psutil.Process(pid).net_connections("tcp")
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"process {pid} is not listening on port {port}")
            time.sleep(0.05)


@contextlib.contextmanager
def trivial_server() -> Iterator[tuple[str, list[int]]]:
    """The bench's trivial aiohttp JSON handler in processes of its own sharing one port (``front_count``);
    yields its URL and the process ids."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with contextlib.ExitStack() as stack:
        processes = [
            stack.enter_context(_serving(["bench.trivial_server", str(port)], url, "the trivial server"))
            for _ in range(front_count())
        ]
        pids = [process.pid for process in processes]
        wait_listening(pids, port)
        yield url, pids


@contextlib.contextmanager
def _serving(
    args: list[str], url: str, what: str, ready: str | None = None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """A bench process until the block ends: started, waited for (``url`` answers, or ``ready`` on
    its stdout), stopped with SIGINT."""
    process = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE if ready else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=terminate_with_parent,
    )
    try:
        deadline = time.monotonic() + 30
        if ready is not None:
            assert process.stdout is not None
            line = process.stdout.readline()
            if ready not in line:
                raise RuntimeError(f"{what} did not start: {line}{process.stderr.read() if process.stderr else ''}")
        else:
            while http_status(url) == 0:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start: {process.stderr.read() if process.stderr else ''}")
                time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def bare_hop(
    nats_url: str, responder_kind: str = "raw", bus_dir: Path | None = None
) -> Iterator[tuple[str, dict[str, list[int]]]]:
    """Reference (r): its URL and the process ids of its HTTP front and its responder (raw nats-py, or
    one of the others ``bench.bare_hop`` offers). ``bus_dir``: the system's bus folder (identities)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    respond = ["bench.bare_hop", "respond", nats_url, responder_kind]
    env = {**os.environ, "CODITECT_BUS_DIR": str(bus_dir)} if bus_dir is not None else None
    front = ["bench.bare_hop", "http", str(port), nats_url]
    with contextlib.ExitStack() as stack:
        responder = stack.enter_context(
            _serving(respond, url, f"the bare-hop responder ({responder_kind})", ready="ready", env=env)
        )
        fronts = [
            stack.enter_context(_serving(front, url, "the bare-hop front", env=env)).pid for _ in range(front_count())
        ]
        wait_listening(fronts, port)
        yield url, {"hop front": fronts, "hop responder": [responder.pid]}


@contextlib.contextmanager
def fastapi_reference() -> Iterator[tuple[str, str, dict[str, list[int]]]]:
    """Reference (p): its URL, a valid token, and the ids of uvicorn's processes (main and workers)."""
    import psutil

    from bench.fastapi_ref import prepare

    directory = Path(tempfile.mkdtemp(prefix="coditect-bench-fastapi-"))
    try:
        token = prepare(directory)
        port = free_port()
        url = f"http://127.0.0.1:{port}/users/me"
        with _serving(["bench.fastapi_ref", str(port), str(directory)], url, "the FastAPI reference") as server:
            deadline = time.monotonic() + 30
            while len(children := psutil.Process(server.pid).children(recursive=True)) < 2:
                if time.monotonic() > deadline:
                    raise RuntimeError("uvicorn's workers did not start")
                time.sleep(0.1)
            time.sleep(1.0)  # both workers listening
            yield url, token, {"fastapi": [server.pid, *(child.pid for child in children)]}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def call_json(method: str, url: str, body: object = None, token: str | None = None) -> tuple[int, dict[str, object]]:
    """One JSON request (setup only, not measured): status and decoded body."""
    import json

    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read() or b"{}")


def register_and_login(base: str, email: str, password: str) -> str:
    """Register a user (a new tenant) and log in once; the access token."""
    status, body = call_json(
        "POST", f"{base}/auth/register", {"email": email, "password": password, "name": "Bench", "tenant_name": "Bench"}
    )
    if status != 201:
        raise RuntimeError(f"register {email} answered {status}: {body}")
    status, body = call_json("POST", f"{base}/auth/login", {"email": email, "password": password})
    if status != 200:
        raise RuntimeError(f"login {email} answered {status}: {body}")
    data = body["data"]
    assert isinstance(data, dict)
    return str(data["access_token"])


class CpuMeter:
    """CPU seconds (user + system) used by each process of the system, the bench's own servers, and the
    load generators this process ran and waited for (``RUSAGE_CHILDREN``), between two snapshots."""

    def __init__(self, system: System | None, extra: Mapping[str, int | list[int]] | None = None) -> None:
        self.pids: dict[int, str] = {}
        for name, pids in (extra or {}).items():
            for pid in pids if isinstance(pids, list) else [pids]:
                self.pids[pid] = name
        try:
            import psutil
        except ImportError:
            self.available = False
            return
        self.available = True
        if system is not None and system.process is not None:
            for child in psutil.Process(system.process.pid).children(recursive=True):
                self.pids[child.pid] = _process_name(child.cmdline())

    def snapshot(self) -> dict[str, float]:
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        totals = {"load generator": usage.ru_utime + usage.ru_stime}
        if not self.available:
            return totals
        import psutil

        for pid, name in self.pids.items():
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                totals[name] = totals.get(name, 0.0) + times.user + times.system
        return totals

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: after[name] - before.get(name, 0.0) for name in after}


def _process_name(cmdline: list[str]) -> str:
    if "-m" in cmdline:
        module = cmdline[cmdline.index("-m") + 1]
        return module.rsplit(".", 1)[-1]  # the service: gateway, auth, session, audit, ...
    if cmdline and cmdline[0].endswith("nats-server"):
        return "nats"
    return "other"


def cpu_text(cpu: dict[str, float], count: int, unit: str = "ms") -> str:
    """CPU per operation by process, biggest first: '25.1 ms: auth 22.0, gateway 1.1, ...' (ms or µs)."""
    if count <= 0:
        return "n/a"
    scale, digits = (1e6, 0) if unit == "µs" else (1e3, 2)
    parts = sorted(((seconds / count * scale, name) for name, seconds in cpu.items() if seconds > 0), reverse=True)
    total = sum(value for value, _ in parts)
    # Processes under 2 % of the total (idle services, stray wake-ups) are summed as "rest": noise, not cost.
    shown = [(value, name) for value, name in parts if value >= 0.02 * total]
    rest = total - sum(value for value, _ in shown)
    if round(rest, digits) > 0:
        shown.append((rest, "rest"))
    return f"{total:.{digits}f} {unit}: " + ", ".join(f"{name} {value:.{digits}f}" for value, name in shown)
