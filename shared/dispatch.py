"""Request/reply handlers on nats-py subscriptions: the service side of the bus's hot path.

Each operation stays one typed async function taking its request model from ``contracts/`` and
returning its result; the dispatcher subscribes it with the service's queue group, validates the body,
runs the function and always answers with the envelope, exactly as ``shared.bus.replies`` does:
validation errors, domain errors, an unavailable store and crashes all get a stable code, so a
requester never waits for a timeout because a handler raised.

Why not FastStream's subscriber: its per-message pipeline (logging, acknowledgement and telemetry
middlewares, dependency injection, parsing) cost several times a cheap handler (README,
"Benchmarks"). FastStream stays for JetStream consumers and publishing; the AsyncAPI document comes
from ``contracts/catalog.py``, not from the subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pydantic_core
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, Tracer
from pydantic import BaseModel, ValidationError

from contracts.envelope import ErrorCode, Reply
from shared import callerproof
from shared.errors import ServiceError
from shared.store.base import StoreUnavailable
from shared.telemetry import ReceivedSpan, remote_parent

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Any]]
C = TypeVar("C")


def bind(ctx: C, use_case: Callable[[C, Any], Awaitable[Any]]) -> Handler:
    """A use case ``fn(ctx, message)`` as a handler of the message alone, keeping its name and
    docstring (the dispatcher's logs and the catalog read them)."""

    async def handler(message: Any) -> Any:
        return await use_case(ctx, message)

    handler.__name__ = use_case.__name__
    handler.__doc__ = use_case.__doc__
    return handler


_ROOT = otel_context.Context()
NO_RESULT = b'{"ok":true}'
SUCCESS_PREFIX = b'{"ok":true,"result":'  # the gateway passes what follows on unparsed (shared.bus.success_result)


class Encoded:
    """A handler's result already in its JSON form, made by its model's serializer, sent as it is:
    a hot read whose reply many requests share encodes it once (``shared.decoded``)."""

    __slots__ = ("json",)

    def __init__(self, model: BaseModel) -> None:
        self.json = pydantic_core.to_json(model)


def success(result: Any) -> bytes:
    """``Reply.success(result)`` as JSON, straight from pydantic's serializer (no dict in between)."""
    if result is None:
        return NO_RESULT  # as the envelope without its None fields
    if type(result) is Encoded:
        return SUCCESS_PREFIX + result.json + b"}"
    return SUCCESS_PREFIX + pydantic_core.to_json(result) + b"}"


def failure(error: Exception, handler: str) -> bytes:
    """The envelope for an error, with the codes ``shared.bus.replies`` gives."""
    if isinstance(error, ValidationError):
        reply = Reply.failure(
            ErrorCode.VALIDATION_FAILED,
            "the request is not valid",
            [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in error.errors()],
        )
    elif isinstance(error, ServiceError):
        reply = error.to_reply()
    elif isinstance(error, StoreUnavailable):
        log.error("store unavailable: %s", error)
        reply = Reply.failure(ErrorCode.SERVICE_UNAVAILABLE, "the store is unavailable")
    else:
        log.error("handler %s failed", handler, exc_info=error)
        reply = Reply.failure(ErrorCode.INTERNAL, "internal error")
    return reply.model_dump_json(exclude_none=True).encode()


def identity_of(reply_to: str | None) -> str:
    """The bus identity a request came from, as its reply inbox names it (``_INBOX.<identity>.…``;
    only that identity may subscribe there, so only it could read the answer)."""
    if not reply_to:
        return "unknown (no reply subject)"
    parts = reply_to.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "_INBOX" else f"unknown (reply to {reply_to})"


class Endpoint:
    """One subject: its request model, its handler, and how many of its messages run at once."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        subject: str,
        model: type[BaseModel],
        handler: Handler,
        *,
        queue: str,
        max_workers: int,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.dispatcher = dispatcher
        self.subject = subject
        self.model = model
        self.handler = handler
        self.queue = queue
        self.max_workers = max_workers
        self.name = getattr(handler, "__name__", subject)
        self._slots = asyncio.Semaphore(max_workers)

    async def answer(self, data: bytes, headers: dict[str, str] | None = None, reply_to: str | None = None) -> bytes:
        """The reply to one request body."""
        try:
            # An empty body is an empty object, as FastStream decoded it.
            message = self.model.model_validate_json(data) if data else self.model.model_validate({})
            verifier = self.dispatcher.caller_verifier
            if verifier is not None:
                caller = getattr(message, "caller", None)
                if caller is not None:
                    # Before any handler sees it: a caller counts only as the gateway vouched for it.
                    try:
                        verifier.check(caller, headers.get(callerproof.HEADER) if headers else None)
                    except callerproof.CallerUnverified as error:
                        log.warning("refused %s from bus identity %s: %s", self.subject, identity_of(reply_to), error)
                        raise ServiceError(ErrorCode.CALLER_UNVERIFIED, str(error)) from None
            return success(await self.handler(message))
        except Exception as error:  # not a cancellation: a stopping service gives no answer
            return failure(error, self.name)

    async def serve(self, msg: Msg) -> None:
        """Answer one message inside the trace its headers carry."""
        span = self.dispatcher.span(self.subject, msg.headers)
        token = otel_context.attach(trace.set_span_in_context(span, _ROOT))
        try:
            reply = await self.answer(msg.data, msg.headers, msg.reply)
        finally:
            otel_context.detach(token)
            span.end()
        if msg.reply:
            try:
                # Not msg.respond: it sends the request's headers back, for the requester to parse.
                await self.dispatcher.publish(msg.reply, reply)
            except Exception as error:  # the connection went away: the requester times out
                log.warning("could not answer on %s (%s)", self.subject, error)

    async def on_message(self, msg: Msg) -> None:
        """nats-py awaits this for each message of the subscription in turn: one at a time runs
        inline; more are spawned, and a full endpoint holds the rest in the subscription's queue."""
        if self.dispatcher.closed:
            return  # stopped after its grace period: what is still queued is not started
        if self.max_workers == 1:
            await self.serve(msg)
            return
        await self._slots.acquire()
        if self.dispatcher.closed:
            self._slots.release()
            return
        task = asyncio.get_running_loop().create_task(self._serve_in_slot(msg))
        self.dispatcher.track(task)

    async def _serve_in_slot(self, msg: Msg) -> None:
        try:
            await self.serve(msg)
        finally:
            self._slots.release()


class Dispatcher:
    """The request/reply endpoints of one process, on one nats-py connection."""

    def __init__(
        self,
        *,
        tracer: Tracer | None = None,
        graceful_timeout: float = 10.0,
        caller_verifier: callerproof.CallerVerifier | None = None,
    ) -> None:
        """``tracer``: an SDK tracer when spans are exported; without one, spans carry ids only.
        ``caller_verifier``: when set, a request's caller needs the gateway's assertion."""
        self.tracer = tracer
        self.caller_verifier = caller_verifier
        self.graceful_timeout = graceful_timeout
        self.endpoints: list[Endpoint] = []
        self._subscriptions: list[Subscription] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self.serving = False
        self.closed = False
        self._connection: Client | None = None

    def add(self, subject: str, model: type[BaseModel], handler: Handler, *, queue: str, max_workers: int = 1) -> None:
        """Answer ``subject`` (one replica of ``queue`` gets each message) with ``handler``, which
        takes a validated ``model`` and returns the result (a model or plain JSON data)."""
        if self.serving:
            raise RuntimeError("add endpoints before the dispatcher starts")
        self.endpoints.append(Endpoint(self, subject, model, handler, queue=queue, max_workers=max_workers))

    def span(self, subject: str, headers: dict[str, str] | None) -> Span:
        header, state = (headers.get("traceparent"), headers.get("tracestate")) if headers else (None, None)
        if self.tracer is None:
            return ReceivedSpan(header, state)
        parent = remote_parent(header, state)
        context = trace.set_span_in_context(NonRecordingSpan(parent), _ROOT) if parent is not None else _ROOT
        return self.tracer.start_span(
            f"{subject} process",
            context,
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "nats", "messaging.destination.name": subject},
        )

    async def publish(self, subject: str, data: bytes) -> None:
        if self._connection is None:
            raise RuntimeError("the dispatcher is not started")
        await self._connection.publish(subject, data)

    def track(self, task: asyncio.Task[None]) -> None:
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def start(self, connection: Client) -> None:
        """Subscribe every endpoint; once this returns the server routes their subjects here."""
        self._connection = connection
        self._subscriptions = []
        for endpoint in self.endpoints:
            self._subscriptions.append(
                await connection.subscribe(endpoint.subject, queue=endpoint.queue, cb=endpoint.on_message)
            )
        # nats-py writes a flush's PING ahead of the commands still in its buffer, so one round trip
        # can end before the server saw the SUBs; they were written before the second one's PING.
        await connection.flush()
        await connection.flush()
        self.closed = False
        self.serving = True

    async def stop(self) -> None:
        """Take no new messages, finish those already delivered (within ``graceful_timeout``), then
        cancel what is still running."""
        self.serving = False
        subscriptions, self._subscriptions = self._subscriptions, []

        async def drain(subscription: Subscription) -> None:
            with contextlib.suppress(Exception):  # a closed connection delivers nothing more anyway
                await subscription.drain()  # type: ignore[no-untyped-call]

        async def finish() -> None:
            await asyncio.gather(*(drain(s) for s in subscriptions))
            while self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)

        try:
            await asyncio.wait_for(finish(), self.graceful_timeout)
        except TimeoutError:
            log.warning(
                "%d requests still running after %.1fs; cancelling them", len(self._in_flight), self.graceful_timeout
            )
        self.closed = True
        for subscription in subscriptions:
            with contextlib.suppress(Exception):  # drained already, or the connection is gone
                await subscription.unsubscribe()
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
