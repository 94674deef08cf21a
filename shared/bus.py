"""Bus wiring: the FastStream NATS broker, JetStream streams, requests, events (request/reply
handlers are ``shared.dispatch``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import orjson
import pydantic_core
from faststream.exceptions import IncorrectState
from faststream.nats import NatsBroker, NatsNKey
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import StreamConfig, StreamSource
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, BadRequestError, NoStreamResponseError, NotFoundError
from opentelemetry.trace import TracerProvider
from pydantic import BaseModel, ValidationError

from contracts import auth, subjects
from contracts.envelope import ErrorCode, Reply
from contracts.events import Event
from shared.buspolicy import inbox_prefix
from shared.dispatch import NO_RESULT, SUCCESS_PREFIX
from shared.requester import Requester
from shared.settings import CommonSettings
from shared.telemetry import inject_trace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BusIdentity:
    """Who a process is on the bus: its identity's name (its inbox prefix) and its nkey seed file."""

    name: str
    seed_file: Path | None = None

    @property
    def inbox(self) -> str:
        return inbox_prefix(self.name)

    def connect_options(self) -> dict[str, Any]:
        """For ``nats.connect``."""
        # The client name puts the identity in the server's log lines (a refusal names who was refused).
        options: dict[str, Any] = {"inbox_prefix": self.inbox, "name": f"coditect-{self.name}"}
        if self.seed_file is not None:
            options["nkeys_seed"] = str(self.seed_file)
        return options


_warned_anonymous: set[str] = set()


def identity_from(settings: CommonSettings, name: str) -> BusIdentity:
    """The process's identity from its settings; without a seed file it connects anonymously (a
    developer's open server), said once."""
    if settings.nats_seed_file is None and name not in _warned_anonymous:
        _warned_anonymous.add(name)
        log.warning("%s has no NATS credentials (CODITECT_NATS_SEED_FILE); connecting anonymously", name)
    return BusIdentity(name, settings.nats_seed_file)


DUPLICATE_WINDOW_SECONDS = 120.0


class _Broker(NatsBroker):
    """A broker whose JetStream subscribers take their delivery inboxes under the identity's prefix
    (FastStream's default is the plain ``_INBOX.``, which no identity may subscribe to)."""

    delivery_inbox: bytes = b"_INBOX."

    def subscriber(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("inbox_prefix", self.delivery_inbox)
        return super().subscriber(*args, **kwargs)


def make_broker(
    url: str,
    client_name: str,
    *,
    identity: BusIdentity | None = None,
    tracer_provider: TracerProvider | None = None,
    graceful_timeout: float = 10.0,
) -> NatsBroker:
    async def disconnected() -> None:
        log.warning("lost the connection to NATS at %s; reconnecting", url)

    async def reconnected() -> None:
        log.info("reconnected to NATS at %s", url)

    identity = identity or BusIdentity(client_name)
    middlewares = [NatsTelemetryMiddleware(tracer_provider=tracer_provider)] if tracer_provider else []
    broker = _Broker(
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
        inbox_prefix=identity.inbox,
        security=NatsNKey.from_file(identity.seed_file) if identity.seed_file is not None else None,
    )
    broker.delivery_inbox = identity.inbox.encode() + b"."
    return broker


async def _quiet(error: Exception) -> None:
    """Connection errors while probing are reported once per attempt by ``wait_for_nats``."""


async def wait_for_nats(
    url: str,
    who: str,
    *,
    identity: BusIdentity | None = None,
    stop: asyncio.Event | None = None,
    max_delay: float = 15.0,
) -> None:
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
                **(identity or BusIdentity(who)).connect_options(),
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
# Dead letters wait for an operator: kept longer, bounded in bytes so a flood of poison cannot fill the disk.
DEAD_LETTERS_MAX_AGE_SECONDS = 30 * 24 * 3600.0
DEAD_LETTERS_MAX_BYTES = 1024 * 1024 * 1024


def stream_configs() -> list[StreamConfig]:
    return [
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=list(subjects.EVENTS_SUBJECTS),
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            max_age=EVENTS_MAX_AGE_SECONDS,
        ),
        StreamConfig(
            name=subjects.REVOCATIONS_STREAM,
            sources=[StreamSource(name=subjects.EVENTS_STREAM, filter_subject=auth.SESSION_REVOKED_SUBJECT)],
            max_age=EVENTS_MAX_AGE_SECONDS,
        ),
        StreamConfig(
            name=subjects.FILE_EVENTS_STREAM,
            subjects=list(subjects.FILE_EVENTS_SUBJECTS),
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            max_age=FILE_EVENTS_MAX_AGE_SECONDS,
        ),
        StreamConfig(
            name=subjects.DEAD_LETTER_STREAM,
            subjects=list(subjects.DEAD_LETTER_SUBJECTS),
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            max_age=DEAD_LETTERS_MAX_AGE_SECONDS,
            max_bytes=DEAD_LETTERS_MAX_BYTES,
        ),
        # Signed audit checkpoints, kept forever and never deletable: the copy a store-writer cannot rewrite.
        StreamConfig(
            name=subjects.AUDIT_CHECKPOINTS_STREAM,
            subjects=list(subjects.AUDIT_CHECKPOINTS_SUBJECTS),
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            deny_delete=True,
            deny_purge=True,
        ),
    ]


async def ensure_streams(broker: NatsBroker) -> None:
    """``create_streams`` on a broker's connection (the caller's identity must be allowed to)."""
    await create_streams(broker.config.connection_state.stream)


async def create_streams(js: JetStreamContext) -> None:
    """Create the JetStream streams every service relies on, if missing. An existing stream is left
    as it is: an operator may have tuned its limits, and a starting process must not undo that.
    Only the bootstrap identity may create streams (``shared.bootstrap``); services wait for them."""
    for config in stream_configs():
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            with contextlib.suppress(BadRequestError):  # another process created it just now
                await js.add_stream(config)


async def request(
    connection: Client | Requester,
    subject: str,
    payload: BaseModel | dict[str, Any] | bytes,
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> Reply:
    """Send a request and return its reply; no responders and timeouts become error replies."""
    answer = await exchange(connection, subject, payload, timeout=timeout, headers=headers)
    return answer if isinstance(answer, Reply) else parse_reply(subject, answer)


async def exchange(
    connection: Client | Requester,
    subject: str,
    payload: BaseModel | dict[str, Any] | bytes,
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> bytes | Reply:
    """``request``'s reply as the bytes that came back, or the error reply when none came."""
    if isinstance(payload, bytes):
        body = payload
    elif isinstance(payload, BaseModel):
        body = pydantic_core.to_json(payload)
    else:
        body = orjson.dumps(payload)
    headers = dict(headers) if headers else {}
    # The raw client, not broker.request: on the gateway's hot path FastStream's publish pipeline
    # cost a third of its CPU. The trace context is written here instead of by its middleware; the
    # dispatcher reads every body as JSON, so no content-type travels.
    inject_trace(headers)
    try:
        message = await connection.request(subject, body, timeout, headers=headers or None)
    except NoRespondersError:
        return Reply.failure(ErrorCode.SERVICE_UNAVAILABLE, f"no service answers {subject}")
    except TimeoutError:
        return Reply.failure(ErrorCode.TIMEOUT, f"{subject} did not answer within {timeout:g}s")
    except (nats.errors.ConnectionClosedError, IncorrectState):
        return Reply.failure(ErrorCode.SERVICE_UNAVAILABLE, "the bus is not connected")
    data: bytes = message.data
    return data


def success_result(data: bytes) -> bytes | None:
    """A success reply's result as the service wrote it, not parsed: the JSON between the envelope's
    head and its last brace, exactly as ``shared.dispatch.success`` frames it (``null`` for none);
    None for any other reply. A route that passes a result on unread saves parsing the reply and
    encoding the result again."""
    if data.startswith(SUCCESS_PREFIX) and data.endswith(b"}"):
        return data[len(SUCCESS_PREFIX) : -1]
    if data == NO_RESULT:
        return b"null"
    return None


def parse_reply(subject: str, data: bytes) -> Reply:
    try:
        return Reply.model_validate_json(data)
    except ValidationError:
        return Reply.failure(ErrorCode.INTERNAL, f"{subject} sent a reply that is not an envelope")


async def publish_event(broker: NatsBroker, event: Event, *, stream: str = subjects.EVENTS_STREAM) -> None:
    """Publish to JetStream and wait for the ack; ``Nats-Msg-Id`` makes a re-publish a no-op. Through
    nats-py's JetStream client, with the trace context written here: FastStream's publish pipeline
    cost more than the rest of a login's event handling."""
    headers = {"Nats-Msg-Id": str(event.id), "content-type": "application/json"}
    inject_trace(headers)
    js = broker.config.connection_state.stream
    await js.publish(event.subject, pydantic_core.to_json(event), timeout=5.0, stream=stream, headers=headers)


PUBLISH_TIMEOUT_SECONDS = 5.0
_NOT_AN_ACK = "the reply is not a JetStream ack"
EXPECTED_STREAM = "Nats-Expected-Stream"  # JetStream stores the event only in this stream (nats-py's ``stream=``)
# One requester per connection for JetStream's acks (its reply subscription is started once).
_ACK_REQUESTERS: weakref.WeakKeyDictionary[Client, Requester] = weakref.WeakKeyDictionary()


async def _ack_requester(connection: Client) -> Requester:
    requester = _ACK_REQUESTERS.get(connection)
    if requester is None:
        requester = _ACK_REQUESTERS[connection] = Requester(connection)
    await requester.ensure_started()
    return requester


def acks_pending(broker: NatsBroker) -> int:
    """JetStream acks ``publish_events`` waits for right now on this broker's connection (tests)."""
    requester = _ACK_REQUESTERS.get(broker.config.connection_state.connection)
    return requester.pending if requester is not None else 0


async def publish_events(
    broker: NatsBroker,
    events: Sequence[tuple[Event, bytes]],
    *,
    stream: str = subjects.EVENTS_STREAM,
    timeout: float = PUBLISH_TIMEOUT_SECONDS,
) -> list[Exception | None]:
    """Publish events (each with its JSON) to JetStream in order and wait for their acks together;
    per event, None once stored (or found a duplicate of its ``Nats-Msg-Id``) or the error: JetStream's
    refusal (``nats.js.errors.APIError``), no stream (``NoStreamResponseError``), ``TimeoutError``
    after ``timeout``, or what sending raised.

    A JetStream publish is a request whose reply is the ack, so the events go out as requests on one
    reply subscription (``shared.requester``) and are awaited together. nats-py's ``publish_async``
    cost the publisher about 1.7 times the CPU per event (a NUID, the stdlib's JSON and a ``PubAck``
    dataclass per ack: ``python -m bench.js_publish``), and it answers a refusal with a timeout: its
    ack handler raises instead of failing the publish."""
    requester = await _ack_requester(broker.config.connection_state.connection)
    requests: list[tuple[str, bytes, dict[str, Any] | None]] = []
    for event, payload in events:
        headers = {"Nats-Msg-Id": str(event.id), "content-type": "application/json", EXPECTED_STREAM: stream}
        inject_trace(headers)
        requests.append((event.subject, payload, headers))
    replies = await requester.request_all(requests, timeout)
    return [_ack_outcome(reply, timeout) for reply in replies]


def _ack_outcome(reply: Msg | Exception, timeout: float) -> Exception | None:
    if isinstance(reply, Exception):
        if isinstance(reply, NoRespondersError):
            return NoStreamResponseError()
        if isinstance(reply, NatsTimeoutError):
            return TimeoutError(f"no JetStream ack within {timeout:g}s")
        return reply
    try:
        ack = orjson.loads(reply.data)
    except orjson.JSONDecodeError:
        ack = None
    if not isinstance(ack, dict):
        return APIError(description=_NOT_AN_ACK)
    error = ack.get("error")
    if isinstance(error, dict):
        try:
            APIError.from_error(error)  # raises the error's class (BadRequestError, ServerError, ...)
        except APIError as refused:
            return refused
        except Exception:  # an error body of an unexpected shape
            return APIError(description=str(error))
    return None if "seq" in ack else APIError(description=_NOT_AN_ACK)
