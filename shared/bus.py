"""Bus wiring: the FastStream NATS broker, JetStream streams, requests, events, reply handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats
import orjson
from faststream.exceptions import IncorrectState
from faststream.nats import NatsBroker
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from nats.errors import NoRespondersError
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from opentelemetry.propagate import inject
from opentelemetry.trace import TracerProvider
from pydantic import BaseModel, ValidationError

from contracts import subjects
from contracts.envelope import ErrorCode, Reply
from contracts.events import Event
from shared.errors import ServiceError
from shared.store.base import StoreUnavailable

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

DUPLICATE_WINDOW_SECONDS = 120.0


def make_broker(
    url: str,
    client_name: str,
    *,
    tracer_provider: TracerProvider | None = None,
    graceful_timeout: float = 10.0,
) -> NatsBroker:
    async def disconnected() -> None:
        log.warning("lost the connection to NATS at %s; reconnecting", url)

    async def reconnected() -> None:
        log.info("reconnected to NATS at %s", url)

    middlewares = [NatsTelemetryMiddleware(tracer_provider=tracer_provider)] if tracer_provider else []
    return NatsBroker(
        url,
        name=client_name,
        logger=None,
        connect_timeout=2,
        reconnect_time_wait=1,
        max_reconnect_attempts=-1,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        graceful_timeout=graceful_timeout,
        middlewares=middlewares,
    )


async def _quiet(error: Exception) -> None:
    """Connection errors while probing are reported once per attempt by ``wait_for_nats``."""


async def wait_for_nats(url: str, who: str, *, stop: asyncio.Event | None = None, max_delay: float = 15.0) -> None:
    """Return once NATS answers; until then log one clear line per attempt and back off."""
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            # nats-py treats max_reconnect_attempts=0 as "forever", even for the first connect.
            nc = await nats.connect(
                url,
                allow_reconnect=False,
                connect_timeout=2,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,
                error_cb=_quiet,
            )
        except Exception as error:
            log.error(
                "%s cannot reach NATS at %s (%s: %s); retrying in %.1fs (attempt %d)",
                who,
                url,
                type(error).__name__,
                error or "no answer",
                delay,
                attempt,
            )
        else:
            await nc.close()
            if attempt > 1:
                log.info("%s reached NATS at %s after %d attempts", who, url, attempt)
            return
        if stop is not None and stop.is_set():
            raise asyncio.CancelledError
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)


# Events carry client addresses and user agents: JetStream keeps them for a bounded time. The audit
# service keeps what must last; everyone else reads the stream within minutes.
EVENTS_MAX_AGE_SECONDS = 7 * 24 * 3600.0
FILE_EVENTS_MAX_AGE_SECONDS = 7 * 24 * 3600.0


def stream_configs() -> list[StreamConfig]:
    return [
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=list(subjects.EVENTS_SUBJECTS),
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            max_age=EVENTS_MAX_AGE_SECONDS,
        ),
        StreamConfig(
            name=subjects.FILE_EVENTS_STREAM,
            subjects=list(subjects.FILE_EVENTS_SUBJECTS),
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            max_age=FILE_EVENTS_MAX_AGE_SECONDS,
        ),
    ]


async def ensure_streams(broker: NatsBroker) -> None:
    """Create the JetStream streams every service relies on, if missing. An existing stream is left
    as it is: an operator may have tuned its limits, and a starting process must not undo that."""
    js = broker.config.connection_state.stream
    for config in stream_configs():
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            with contextlib.suppress(BadRequestError):  # another process created it just now
                await js.add_stream(config)


async def request(broker: NatsBroker, subject: str, payload: BaseModel | dict[str, Any], *, timeout: float) -> Reply:
    """Send a request and return its reply; no responders and timeouts become error replies."""
    body = payload.model_dump_json().encode() if isinstance(payload, BaseModel) else orjson.dumps(payload)
    headers = {"content-type": "application/json"}
    # The raw client, not broker.request: on the gateway's hot path FastStream's publish pipeline
    # cost a third of its CPU. The trace context is injected here instead of by its middleware.
    inject(headers)
    try:
        message = await broker.config.connection_state.connection.request(subject, body, timeout, headers=headers)
    except NoRespondersError:
        return Reply.failure(ErrorCode.SERVICE_UNAVAILABLE, f"no service answers {subject}")
    except TimeoutError:
        return Reply.failure(ErrorCode.TIMEOUT, f"{subject} did not answer within {timeout:g}s")
    except (nats.errors.ConnectionClosedError, IncorrectState):
        return Reply.failure(ErrorCode.SERVICE_UNAVAILABLE, "the bus is not connected")
    try:
        return Reply.model_validate_json(message.data)
    except ValidationError:
        return Reply.failure(ErrorCode.INTERNAL, f"{subject} sent a reply that is not an envelope")


async def publish_event(broker: NatsBroker, event: Event, *, stream: str = subjects.EVENTS_STREAM) -> None:
    """Publish to JetStream and wait for the ack; ``Nats-Msg-Id`` makes a re-publish a no-op."""
    await broker.publish(
        event.model_dump_json().encode(),
        event.subject,
        headers={"Nats-Msg-Id": str(event.id), "content-type": "application/json"},
        stream=stream,
        timeout=5.0,
    )


def replies(model: type[M]) -> Callable[[Callable[[M], Awaitable[Any]]], Callable[[Any], Awaitable[bytes]]]:
    """Wrap a handler so it takes the raw body, validates it, and always answers with the envelope.

    Validation failures, domain errors and crashes all become replies with a stable code, so a
    requester never waits for a timeout because a handler raised.
    """

    def decorate(fn: Callable[[M], Awaitable[Any]]) -> Callable[[Any], Awaitable[bytes]]:
        async def handler(body: Any) -> bytes:
            try:
                message = model.model_validate(body if body not in (b"", "", None) else {})
                result = await fn(message)
                reply = Reply.success(result.model_dump(mode="json") if isinstance(result, BaseModel) else result)
            except ValidationError as error:
                reply = Reply.failure(
                    ErrorCode.VALIDATION_FAILED,
                    "the request is not valid",
                    [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in error.errors()],
                )
            except ServiceError as error:
                reply = error.to_reply()
            except StoreUnavailable as error:
                log.error("store unavailable: %s", error)
                reply = Reply.failure(ErrorCode.SERVICE_UNAVAILABLE, "the store is unavailable")
            except Exception:
                log.exception("handler %s failed", fn.__name__)
                reply = Reply.failure(ErrorCode.INTERNAL, "internal error")
            return reply.model_dump_json(exclude_none=True).encode()

        # Not functools.wraps: FastStream would read the wrapped signature and validate the raw body
        # and the reply against the domain models itself.
        handler.__name__ = getattr(fn, "__name__", "handler")
        handler.__qualname__ = getattr(fn, "__qualname__", handler.__name__)
        handler.__doc__ = fn.__doc__
        return handler

    return decorate
