"""The runtime every service process shares: one composition root, start-up that never gives up,
a health ping, and a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from faststream.nats import NatsBroker
from nats.js import JetStreamContext

from contracts import subjects
from contracts.events import Event
from contracts.health import Ping, Pong
from shared import bus
from shared.callerproof import CallerVerifier
from shared.dispatch import Dispatcher, Encoded
from shared.heap import freeze_startup_objects
from shared.settings import CommonSettings
from shared.store import Store, StoreUnavailable, open_store
from shared.telemetry import setup_logging, setup_tracing

log = logging.getLogger(__name__)

STORE_CHECK_TIMEOUT = 0.5
STORE_CHECK_INTERVAL = 1.0


@dataclass
class ServiceContext:
    """What handlers of a service get: its broker (JetStream, publishing), its request/reply
    dispatcher, its store, its settings."""

    name: str
    settings: CommonSettings
    broker: NatsBroker
    dispatcher: Dispatcher
    store: Store
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    store_ready: bool = False
    background: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = field(default_factory=list)
    # Run once connected, before the broker starts its subscribers: e.g. a durable consumer made (or its
    # filters updated) with what FastStream's subscriber cannot declare itself.
    before_subscribing: list[Callable[[JetStreamContext], Awaitable[None]]] = field(default_factory=list)
    on_close: list[Callable[[], None]] = field(default_factory=list)
    components: dict[str, Any] = field(default_factory=dict)  # what the service built, for tests and tools

    async def publish(self, event: Event) -> None:
        await bus.publish_event(self.broker, event)


Register = Callable[[ServiceContext], Awaitable[None] | None]


class _StoreHealth:
    """The store's health as pings report it: checked at most once a second, so pings stay cheap."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._checked_at = -STORE_CHECK_INTERVAL
        self._ok = False

    @property
    def checked_at(self) -> float:
        return self._checked_at

    async def ok(self) -> bool:
        now = time.monotonic()
        if now - self._checked_at >= STORE_CHECK_INTERVAL:
            self._checked_at = now
            healthy = False
            with contextlib.suppress(StoreUnavailable, TimeoutError):
                await asyncio.wait_for(self.store.check(), STORE_CHECK_TIMEOUT)
                healthy = True
            self._ok = healthy
        return self._ok


def _register_ping(ctx: ServiceContext) -> None:
    store_health = _StoreHealth(ctx.store)
    # A ping without an echo is the same answer until the store is checked again (at most a second):
    # made and encoded once per check, not per ping.
    answered: dict[tuple[float, bool], Encoded] = {}

    async def ping(message: Ping) -> Pong | Encoded:
        """Health ping: answers while the process is up, and says whether its store answers."""
        store_ok = await store_health.ok()
        check = (store_health.checked_at, store_ok)
        if message.echo is None and check in answered:
            return answered[check]
        pong = Pong(
            service=ctx.name,
            instance=ctx.instance,
            status="ok" if store_ok else "degraded",
            store="ok" if store_ok else "unavailable",
            echo=message.echo,
            store_stats=ctx.store.stats(),
        )
        if message.echo is None:
            answered.clear()
            answered[check] = Encoded(pong)
        return pong

    ctx.dispatcher.add(subjects.ping(ctx.name), Ping, ping, queue=subjects.queue_group(ctx.name))


async def _wait_for_store(ctx: ServiceContext, stop: asyncio.Event) -> None:
    delay = 0.5
    while not stop.is_set():
        try:
            await ctx.store.check()
        except StoreUnavailable as error:
            log.error("%s cannot reach its store (%s); retrying in %.1fs", ctx.name, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)
        else:
            ctx.store_ready = True
            return


def build_context(name: str, settings: CommonSettings) -> ServiceContext:
    tracer_provider = setup_tracing(name, settings.otel_exporter_otlp_endpoint)
    broker = bus.make_broker(
        settings.nats_url,
        f"coditect-{name}",
        identity=bus.identity_from(settings, name),
        tracer_provider=tracer_provider,
        graceful_timeout=settings.graceful_timeout,
    )
    exporting = bool(settings.otel_exporter_otlp_endpoint)
    if settings.caller_public_key is None:
        log.warning("%s has no CODITECT_CALLER_PUBLIC_KEY: callers are believed without the gateway's assertion", name)
    dispatcher = Dispatcher(
        tracer=tracer_provider.get_tracer(f"coditect.{name}") if exporting else None,
        graceful_timeout=settings.graceful_timeout,
        caller_verifier=CallerVerifier(settings.caller_public_key) if settings.caller_public_key else None,
    )
    return ServiceContext(
        name=name, settings=settings, broker=broker, dispatcher=dispatcher, store=open_store(settings, name)
    )


async def _start_broker(ctx: ServiceContext) -> None:
    await ctx.broker.connect()
    for prepare in ctx.before_subscribing:
        await prepare(ctx.broker.config.connection_state.stream)
    await ctx.broker.start()


async def serve(
    ctx: ServiceContext, register: Register, stop: asyncio.Event, *, serving: Callable[[], None] | None = None
) -> None:
    """Register handlers, connect (retrying for as long as it takes), serve until ``stop`` is set;
    ``serving`` is called once everything answers."""
    _register_ping(ctx)
    registered = register(ctx)
    if registered is not None:
        await registered
    store_task = asyncio.create_task(_wait_for_store(ctx, stop))
    tasks: list[asyncio.Task[None]] = []
    try:
        while True:
            await bus.wait_for_nats(
                ctx.settings.nats_url, ctx.name, identity=bus.identity_from(ctx.settings, ctx.name), stop=stop
            )
            try:
                # The bootstrap identity creates the streams (shared.bootstrap); a durable consumer
                # cannot bind to a missing stream, so until then starting fails here and is retried.
                await asyncio.wait_for(_start_broker(ctx), 10)
                await ctx.dispatcher.start(ctx.broker.config.connection_state.connection)
                break
            except Exception as error:
                log.error("%s could not start on NATS (%s); retrying", ctx.name, error)
                await ctx.broker.stop()
                await asyncio.sleep(1)
        # The instance (host-pid) is told here and on the bus, never on the gateway's public routes.
        log.info(
            "%s is serving on %s with the %s store as instance %s",
            ctx.name,
            ctx.settings.nats_url,
            ctx.store.name,
            ctx.instance,
        )
        tasks = [asyncio.create_task(job(stop)) for job in ctx.background]
        if serving is not None:
            serving()
        await stop.wait()
    finally:
        log.info("%s is stopping: draining in-flight messages", ctx.name)
        store_task.cancel()
        await ctx.dispatcher.stop()
        await _disconnect(ctx)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for close in ctx.on_close:
            close()
        ctx.store.close()
        log.info("%s stopped", ctx.name)


async def _disconnect(ctx: ServiceContext) -> None:
    """Drain the bus connection; with NATS away (a drain is refused while reconnecting) close it, so
    the stop still reaches its end (tasks ended, store closed) instead of raising half-way."""
    try:
        await ctx.broker.stop()
    except Exception as error:
        log.warning("%s could not drain its bus connection (%s); closing it", ctx.name, error)
        connection = ctx.broker.config.connection_state.connection
        with contextlib.suppress(Exception):
            await connection.close()


def run_service(name: str, settings: CommonSettings, register: Register) -> None:
    """Entry point of a service process: logs, tracing, signals, then ``serve``."""
    setup_logging(name, settings.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        ctx = build_context(name, settings)
        with contextlib.suppress(asyncio.CancelledError):
            await serve(ctx, register, stop, serving=freeze_startup_objects)

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def run_bare_service(name: str) -> None:
    """A service process whose only handler so far is its health ping (its features are its own issue)."""
    run_service(name, CommonSettings(), lambda ctx: None)
