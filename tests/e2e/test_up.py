"""The README's first command, as processes: everything comes up, dies, restarts and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support import connection_refusal, free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@dataclass
class Runner:
    process: subprocess.Popen[str]
    gateway_port: int
    nats_port: int
    data_dir: Path
    announced: str = ""

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/api/v5"

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def child(self, module: str) -> psutil.Process:
        return next(p for p in self.children() if module in " ".join(p.cmdline()))


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    except OSError as error:
        return 0, str(error)


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last})")


def start_runner(
    data_dir: Path, gateway_port: int, nats_port: int, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "CODITECT_DATA_DIR": str(data_dir),
        "CODITECT_GATEWAY_PORT": str(gateway_port),
        "CODITECT_NATS_PORT": str(nats_port),
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "shared.supervisor", "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_runner(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.stdout.read() if process.stdout else ""


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    gateway_port, nats_port = free_port(), free_port()
    process = start_runner(tmp_path / "data", gateway_port, nats_port)
    running = Runner(process, gateway_port, nats_port, tmp_path / "data")
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the runner announces readiness once /ready is 200
            running.announced += line
            if "ready: gateway at" in line:
                break
        assert http("GET", f"{running.api}/ready")[0] == 200, running.announced
        yield running
    finally:
        stop_runner(process)


def test_two_gateway_workers_share_the_port_and_stop_with_the_rest(tmp_path: Path) -> None:
    gateway_port, nats_port = free_port(), free_port()
    process = start_runner(tmp_path / "data", gateway_port, nats_port, {"CODITECT_GATEWAY_WORKERS": "2"})
    running = Runner(process, gateway_port, nats_port, tmp_path / "data")
    try:
        assert process.stdout is not None
        for line in process.stdout:
            running.announced += line
            if "ready: gateway at" in line:
                break
        gateways = [p for p in running.children() if "services.gateway" in p.cmdline()]
        assert len(gateways) == 2

        def listening(gateway: psutil.Process) -> bool:
            return any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == gateway_port for c in gateway.net_connections("tcp")
            )

        wait_until(lambda: all(listening(gateway) for gateway in gateways), 10)
        for _ in range(10):  # a new connection each time: whichever process takes it answers
            assert http("GET", f"{running.api}/health")[0] == 200
        assert (tmp_path / "data" / "logs" / "gateway-2.log").exists()
    finally:
        output = running.announced + stop_runner(process)
    assert process.returncode == 0, output
    for gateway in gateways:
        assert not gateway.is_running() or gateway.status() == psutil.STATUS_ZOMBIE
    assert not port_in_use(gateway_port)


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_brings_seven_processes_and_a_spare_monitor_to_ready_and_ctrl_c_stops_them_all(runner: Runner) -> None:
    children = runner.children()
    # Provisioning keeps one workspace monitor started ahead of need (README "Workspaces": a warm spare).
    monitors = [p for p in children if "services.monitor" in " ".join(p.cmdline())]
    assert len(monitors) == 1
    names = " ".join(" ".join(p.cmdline()) for p in children)
    for module in (
        "nats-server",
        "services.auth",
        "services.session",
        "services.provisioning",
        "services.file_event",
        "services.audit",
        "services.gateway",
    ):
        assert module in names
    assert len(children) == 7 + 1
    assert_bus_secured(runner)
    output = runner.announced + stop_runner(runner.process)
    assert runner.process.returncode == 0
    assert "ready: gateway at" in output and "stopped" in output
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert not port_in_use(runner.gateway_port) and not port_in_use(runner.nats_port)


def assert_bus_secured(runner: Runner) -> None:
    """The bus of ./dev up: every child on its own identity (secrets 0600, never in the runner's
    output), anonymous connections refused, and no permission refused in normal operation."""
    import asyncio

    bus = runner.data_dir / "bus"
    seeds = sorted(bus.glob("*.nk"))
    assert {p.stem for p in seeds} >= {"auth", "session", "provisioning", "file_event", "audit", "gateway"}
    for path in bus.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
    for child in runner.children():
        if "services.monitor" in " ".join(child.cmdline()):
            # A workspace monitor has only its workspace's identity, never provisioning's or the issuer's key.
            leaked = {"CODITECT_NATS_SEED_FILE", "CODITECT_MONITOR_ISSUER_SEED_FILE"} & set(child.environ())
            assert not leaked, leaked
        elif "services." in " ".join(child.cmdline()):
            name = next(part for part in child.cmdline() if part.startswith("services.")).split(".")[1]
            assert child.environ()["CODITECT_NATS_SEED_FILE"] == str(bus / f"{name}.nk")
    for seed in seeds:
        assert seed.read_text().strip() not in runner.announced

    assert asyncio.run(connection_refusal(f"nats://127.0.0.1:{runner.nats_port}")) is not None
    assert "Violation" not in (runner.data_dir / "logs" / "nats.log").read_text().replace(
        "Authorization Violation",
        "",  # the anonymous attempt just made
    )


def test_a_killed_service_makes_ready_name_it_and_is_restarted(runner: Runner) -> None:
    session = runner.child("services.session")
    session.kill()
    status, body = wait_until(lambda: (r := http("GET", f"{runner.api}/ready"))[0] == 503 and r, 5, 0.05)
    assert body["error"]["details"]["down"] == ["session"]
    wait_until(lambda: http("GET", f"{runner.api}/ready")[0] == 200, 30, 0.2)
    assert runner.child("services.session").pid != session.pid


def test_kill_9_of_auth_loses_no_registered_user(runner: Runner) -> None:
    email = f"durable-{time.time_ns()}@example.com"
    status, body = http("POST", f"{runner.api}/auth/register", {"email": email, "password": "durable password"})
    assert status == 201, body
    runner.child("services.auth").kill()
    wait_until(lambda: http("GET", f"{runner.api}/ready")[0] == 503, 5, 0.05)
    wait_until(lambda: http("GET", f"{runner.api}/ready")[0] == 200, 30, 0.2)
    status, body = http("POST", f"{runner.api}/auth/login", {"email": email, "password": "durable password"})
    assert status == 200, body
    status, body = http("POST", f"{runner.api}/auth/register", {"email": email, "password": "durable password"})
    assert status == 409


def test_data_survives_a_full_restart(tmp_path: Path) -> None:
    gateway_port, nats_port = free_port(), free_port()
    api = f"http://127.0.0.1:{gateway_port}/api/v5"
    email = f"restart-{time.time_ns()}@example.com"
    for attempt in range(2):
        process = start_runner(tmp_path / "data", gateway_port, nats_port)
        try:
            wait_until(lambda: http("GET", f"{api}/ready")[0] == 200, 60, 0.25)
            if attempt == 0:
                assert http("POST", f"{api}/auth/register", {"email": email, "password": "persisted pw"})[0] == 201
            else:
                assert http("POST", f"{api}/auth/login", {"email": email, "password": "persisted pw"})[0] == 200
        finally:
            stop_runner(process)


def test_a_taken_port_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        started = time.monotonic()
        process = start_runner(tmp_path / "data", taken, free_port())
        output = stop_runner(process) if process.wait(10) is None else process.stdout.read()  # type: ignore[union-attr]
        assert process.returncode == 1
        assert time.monotonic() - started < 10
        assert f"port {taken}" in output and "CODITECT_GATEWAY_PORT" in output


def test_a_service_started_before_nats_logs_why_and_joins_when_nats_arrives(tmp_path: Path) -> None:
    from shared.busauth import BusFolder
    from tests.support import _bootstrap, _spawn_nats

    port = free_port()
    bus = BusFolder(tmp_path / "bus")
    config = bus.write_server_config(port=port, store_dir=tmp_path / "nats")
    env = {
        **os.environ,
        "CODITECT_NATS_URL": f"nats://127.0.0.1:{port}",
        "CODITECT_NATS_SEED_FILE": str(bus.seed_file("session")),
        "CODITECT_DATA_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    service = subprocess.Popen(
        [sys.executable, "-m", "services.session"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    nats = None
    try:
        assert service.stdout is not None
        lines = [json.loads(service.stdout.readline())["msg"] for _ in range(2)]
        assert any("session cannot reach NATS at" in line for line in lines), lines
        time.sleep(1.5)
        assert service.poll() is None
        nats = _spawn_nats(port, tmp_path / "nats", config=config)
        _bootstrap(f"nats://127.0.0.1:{port}", bus.seed_file("bootstrap"))
        deadline = time.monotonic() + 30
        serving = False
        while time.monotonic() < deadline and not serving:
            serving = "session is serving" in service.stdout.readline()
        assert serving
        service.send_signal(signal.SIGTERM)
        assert service.wait(15) == 0
    finally:
        if service.poll() is None:
            service.kill()
        if nats is not None:
            nats.terminate()
            nats.wait(10)
