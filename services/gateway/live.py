"""Live push (``GET /ws``): a WebSocket that carries the user's own domain events as they happen.

One core NATS subscription per gateway process (one per pushed subject, never one per socket)
fans events out to the sockets of the same tenant *and* user on this gateway; several gateways
each push to their own sockets. JetStream-published events reach core subscribers too, and
nats-py resubscribes after a reconnect, but this is best-effort live push, not a replay: an event
published while this gateway is cut from NATS, or while it cannot confirm its revocation list,
is not delivered. Clients read current state after they (re)connect.

Each socket has a bounded send queue drained by its own writer task: a client that falls
``live_send_queue`` messages behind is cut (4408), so a slow reader never grows the gateway's
memory. The token is checked by the same verifier as HTTP (fail-closed revocations included);
a revocation of its auth session closes the socket at once and its expiry closes it on time (4401).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import jwt
import orjson
from aiohttp import WSMsgType, web
from pydantic import ValidationError

from contracts import file_event as file_contract
from contracts import provisioning as provisioning_contract
from contracts import session as session_contract
from contracts import subjects
from contracts.envelope import ErrorBody, ErrorCode
from contracts.events import Event
from contracts.identity import Caller
from services.gateway.buslink import BusLink
from services.gateway.deps import client_ip, client_of
from services.gateway.http import ApiError
from services.gateway.routing import Route
from services.gateway.settings import GatewaySettings
from services.gateway.tokens import JwksVerifier

log = logging.getLogger(__name__)
K = TypeVar("K")

# Close codes (4xxx mirror the HTTP status a request would get).
CLOSE_UNAUTHORIZED = 4401  # no token, a bad one, its session revoked, or it expired: reconnect with a fresh one
CLOSE_SLOW_CONSUMER = 4408  # the send queue was full: the client did not read fast enough
CLOSE_TOO_MANY_SOCKETS = 4429  # the user already holds live_max_sockets_per_user sockets on this gateway
CLOSE_POLICY = 1008  # the client sent something after auth (this socket only pushes)
CLOSE_TRY_LATER = 1013  # revocations cannot be confirmed right now (HTTP would answer 503)
CLOSE_GOING_AWAY = 1001  # the gateway is shutting down
CLOSE_INTERNAL = 1011
CLOSE_NORMAL = 1000
# Waiting for a close frame to go out (and the client's reply); then the connection is dropped.
CLOSE_TIMEOUT_SECONDS = 2.0

_STOP = b""  # tells a socket's writer to end (every real message is a JSON object)

Owner = tuple[UUID, UUID]  # (tenant id, user id)
OwnerOf = Callable[[Event], Owner | None]


def owner_in_data(event: Event) -> Owner | None:
    """The event's tenant and ``data.user_id``: how session events (and the next pushed ones) name
    the user they belong to. Without both, the event goes to nobody."""
    user_id = event.data.get("user_id")
    if event.tenant_id is None or not isinstance(user_id, str):
        return None
    try:
        return event.tenant_id, UUID(user_id)
    except ValueError:
        return None


# What the socket pushes: event type → who may see it. Pushing another type is one line here.
# (Keys become the session contract's constants once contracts/session.py lands.)
PUSHED: dict[str, OwnerOf] = {
    session_contract.SESSION_CREATED: owner_in_data,
    session_contract.SESSION_UPDATED: owner_in_data,
    session_contract.SESSION_FORKED: owner_in_data,
    session_contract.SESSION_DELETED: owner_in_data,
    provisioning_contract.WORKSPACE_REQUESTED: owner_in_data,
    provisioning_contract.WORKSPACE_PROVISIONED: owner_in_data,
    provisioning_contract.WORKSPACE_FAILED: owner_in_data,
    provisioning_contract.WORKSPACE_DEPROVISIONED: owner_in_data,
    file_contract.FILE_CHANGED: owner_in_data,
}


def pushed_subjects() -> list[str]:
    """The bus subjects of the pushed event types (``session.created`` → ``evt.session.created``)."""
    return sorted({subjects.event(*event_type.split(".", 1)) for event_type in PUSHED})


def push_message(event: Event) -> bytes:
    """What a client receives: the event's type, id, time and its ``data`` as published."""
    return orjson.dumps(
        {"type": event.type, "id": event.id, "occurred_at": event.occurred_at, "data": event.data},
        option=orjson.OPT_UTC_Z,
    )


async def close_socket(ws: web.WebSocketResponse, request: web.Request, code: int, reason: str) -> None:
    """Send a close frame; if it cannot leave in time (a client that stopped reading), drop the
    connection instead of letting its unsent bytes wait in our buffers."""
    try:
        await asyncio.wait_for(ws.close(code=code, message=reason.encode()[:123]), CLOSE_TIMEOUT_SECONDS)
        return
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # we are being cancelled; otherwise aiohttp's close was (a drain cut short)
    except (TimeoutError, ConnectionError):
        pass
    _abort(request)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


class LiveSocket:
    """One authenticated socket: a bounded queue drained by its own writer task."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, caller: Caller, queue_size: int) -> None:
        self.ws = ws
        self.request = request
        self.caller = caller
        self.owner: Owner = (caller.tenant_id, caller.user_id)
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)
        self.high_water = 0  # the longest the queue has been
        self.close_code: int | None = None
        self._closer: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._writer = asyncio.create_task(self._write())

    def offer(self, payload: bytes) -> None:
        """Queue a message, or cut the client if it is ``queue_size`` messages behind."""
        if self.close_code is not None:
            return
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            log.warning(
                "live socket of user %s (tenant %s, %s) cut: %d messages waiting, the client reads too slowly",
                self.caller.user_id,
                self.caller.tenant_id,
                client_ip(self.request),
                self.queue.qsize(),
            )
            self.close(CLOSE_SLOW_CONSUMER, "too slow: the send queue is full")
            return
        self.high_water = max(self.high_water, self.queue.qsize())

    def close_at(self, deadline: float) -> None:
        """Close with 4401 at ``deadline`` (epoch seconds), when the token stops being accepted."""
        if self.close_code is not None:
            return
        delay = max(0.0, deadline - time.time())
        self._expiry = asyncio.get_running_loop().call_later(
            delay, self.close, CLOSE_UNAUTHORIZED, "the access token expired"
        )

    def close(self, code: int, reason: str) -> None:
        """End the socket with ``code``; callable from any callback. Queued messages are dropped."""
        if self.close_code is not None:
            return
        self.close_code = code
        self._closer = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        # Stop the writer between frames (cancelling it inside aiohttp's drain would break the close).
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(_STOP)
        done, _ = await asyncio.wait({self._writer}, timeout=CLOSE_TIMEOUT_SECONDS)
        if not done:
            _abort(self.request)  # stuck on a client that stopped reading: no close frame would reach it
            done, _ = await asyncio.wait({self._writer}, timeout=CLOSE_TIMEOUT_SECONDS)
            if not done:
                self._writer.cancel()
            return
        await close_socket(self.ws, self.request, code, reason)

    async def closed(self) -> None:
        """Wait for a close in progress to finish."""
        if self._closer is not None:
            await self._closer

    async def _write(self) -> None:
        ws, get = self.ws, self.queue.get
        try:
            while payload := await get():
                await ws.send_frame(payload, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError) as error:  # the connection went away under us
            log.debug("live socket of user %s stopped writing: %s", self.caller.user_id, error)
            self.close(CLOSE_INTERNAL, "the connection failed")
        except Exception:
            log.exception("live socket of user %s failed writing", self.caller.user_id)
            self.close(CLOSE_INTERNAL, "internal error")


class LiveHub:
    """This gateway's live sockets by owner and by auth session, and the subscription feeding them."""

    def __init__(self, bus: BusLink, verifier: JwksVerifier, settings: GatewaySettings) -> None:
        self.bus = bus
        self.verifier = verifier
        self.settings = settings
        self._by_owner: dict[Owner, set[LiveSocket]] = {}
        self._by_session: dict[UUID, set[LiveSocket]] = {}
        self._subscriptions: list[Any] = []
        self.delivered = 0
        self.withheld = 0
        # Sockets upgraded but not yet authenticated (waiting for their auth message): each costs a
        # connection, a task and buffers before anything about its client is known, so their number
        # is bounded for the whole gateway, not per user (there is no user yet).
        self.unauthenticated = 0
        self.refused = 0
        self.refused_logged_at = float("-inf")
        self._withholding = False
        verifier.denied.add_listener(self.revoke)

    def sockets_of(self, tenant_id: UUID, user_id: UUID) -> frozenset[LiveSocket]:
        return frozenset(self._by_owner.get((tenant_id, user_id), ()))

    @property
    def socket_count(self) -> int:
        return sum(len(sockets) for sockets in self._by_owner.values())

    def has_room(self, caller: Caller) -> bool:
        return len(self._by_owner.get((caller.tenant_id, caller.user_id), ())) < self.settings.live_max_sockets_per_user

    def register(self, socket: LiveSocket) -> None:
        self._by_owner.setdefault(socket.owner, set()).add(socket)
        self._by_session.setdefault(socket.caller.session_id, set()).add(socket)
        if socket.caller.session_id in self.verifier.denied:  # revoked between the check and now
            socket.close(CLOSE_UNAUTHORIZED, "the token's session was revoked")

    def forget(self, socket: LiveSocket) -> None:
        _discard(self._by_owner, socket.owner, socket)
        _discard(self._by_session, socket.caller.session_id, socket)

    def revoke(self, session_ids: list[UUID]) -> None:
        """Close the sockets of revoked auth sessions (the deny set calls this on every revocation)."""
        for session_id in session_ids:
            for socket in tuple(self._by_session.get(session_id, ())):
                socket.close(CLOSE_UNAUTHORIZED, "the token's session was revoked")

    def dispatch(self, raw: bytes) -> int:
        """Hand one bus message to the sockets of its owner; returns how many got it."""
        if not self._by_owner:
            return 0
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("ignored a live event that is not JSON")
            return 0
        event_type = body.get("type") if isinstance(body, dict) else None
        owner_of = PUSHED.get(event_type) if isinstance(event_type, str) else None
        if owner_of is None:
            return 0
        try:
            event = Event.model_validate(body)
        except ValidationError:
            log.warning("ignored a malformed %s event", body.get("type"))
            return 0
        owner = owner_of(event)
        sockets = self._by_owner.get(owner) if owner is not None else None
        if not sockets:
            return 0
        if not self.verifier.revocations.current:
            # Fail closed, as HTTP does: a socket whose session was revoked meanwhile must not get it.
            self.withheld += 1
            if not self._withholding:
                log.warning("withholding live events: the revocation list is not current")
                self._withholding = True
            return 0
        if self._withholding:
            log.info("live events flow again (%d withheld)", self.withheld)
            self._withholding = False
        payload = push_message(event)
        for socket in tuple(sockets):
            socket.offer(payload)
        self.delivered += len(sockets)
        return len(sockets)

    async def _on_message(self, message: Any) -> None:
        try:
            self.dispatch(message.data)
        except Exception:  # one bad event must not stop the subscription
            log.exception("could not push a live event")

    async def run(self, stop: asyncio.Event) -> None:
        """Subscribe once the bus is connected (nats-py keeps the subscriptions across reconnects)."""
        while not stop.is_set():
            if not await self.bus.wait_connected(1.0):
                continue
            try:
                connection = self.bus.broker.config.connection_state.connection
                for subject in pushed_subjects():
                    self._subscriptions.append(await connection.subscribe(subject, cb=self._on_message))
                return
            except Exception as error:
                log.warning("cannot subscribe to live events yet (%s); retrying", error)
                await self.unsubscribe()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

    async def unsubscribe(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._subscriptions.clear()

    async def close_all(self, code: int, reason: str) -> None:
        sockets = [socket for owned in self._by_owner.values() for socket in owned]
        for socket in sockets:
            socket.close(code, reason)
        await asyncio.gather(*(socket.closed() for socket in sockets), return_exceptions=True)


LIVE_KEY = web.AppKey("live", LiveHub)


def ready_message(caller: Caller, expires: float) -> bytes:
    """The first message of every authenticated socket, on a first connect and on every reconnect.
    Nothing is replayed: whatever happened while the client was not connected is not pushed, so
    ``resync: true`` tells it to refetch what it shows (its session list...) now, then apply pushes."""
    return orjson.dumps(
        {
            "type": "live.ready",
            "data": {
                "tenant_id": caller.tenant_id,
                "user_id": caller.user_id,
                "expires_at": datetime.fromtimestamp(expires, UTC),
                "resync": True,
                "pushed": sorted(PUSHED),
            },
        },
        option=orjson.OPT_UTC_Z,
    )


def _discard(index: dict[K, set[LiveSocket]], key: K, socket: LiveSocket) -> None:
    sockets = index.get(key)
    if sockets is not None:
        sockets.discard(socket)
        if not sockets:
            del index[key]


async def _auth_message(ws: web.WebSocketResponse, timeout: float) -> str | None:
    """The token of the first message, ``{"type": "auth", "access_token": ...}``, if it comes in time."""
    try:
        message = await ws.receive(timeout=timeout)
    except TimeoutError:
        return None
    if message.type is not WSMsgType.TEXT:
        return None
    try:
        body = orjson.loads(message.data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or body.get("type") != "auth":
        return None
    token = body.get("access_token")
    return token if isinstance(token, str) and token else None


def _close_code_for(error: ApiError) -> int:
    if error.status == 401:
        return CLOSE_UNAUTHORIZED
    if error.status in (503, 504):
        return CLOSE_TRY_LATER
    return CLOSE_INTERNAL


async def live(request: web.Request) -> web.StreamResponse:
    """Upgrade to a WebSocket and push the caller's own events until the socket or its token ends."""
    hub = request.app[LIVE_KEY]
    settings = hub.settings
    ws = web.WebSocketResponse(
        heartbeat=settings.live_heartbeat_seconds,
        max_msg_size=settings.live_max_client_message_bytes,
        compress=False,  # one payload for every socket: per-socket deflate would cost CPU on each
        timeout=CLOSE_TIMEOUT_SECONDS,
    )
    if not ws.can_prepare(request).ok:
        raise ApiError(
            ErrorBody(
                code=ErrorCode.VALIDATION_FAILED,
                message="GET /ws is a WebSocket: send an Upgrade: websocket request",
                details=[{"field": "Upgrade", "message": "expected websocket"}],
            ),
            status=426,
            headers={"Upgrade": "websocket"},
        )
    token = request.query.get("access_token")
    if not token and hub.unauthenticated >= settings.live_max_unauthenticated_sockets:
        hub.refused += 1
        if time.monotonic() - hub.refused_logged_at > 10:  # one line per 10 s, not one per refused socket
            hub.refused_logged_at = time.monotonic()
            waiting, refused = hub.unauthenticated, hub.refused
            log.warning("refusing live sockets: %d wait for their auth message (%d refused)", waiting, refused)
        raise ApiError(
            ErrorBody(
                code=ErrorCode.SERVICE_UNAVAILABLE,
                message="too many live sockets are waiting to authenticate; retry, or pass ?access_token=",
                retry_after=1,
            ),
            status=503,
            headers={"Retry-After": "1"},
        )
    request_id = client_of(request)["request_id"]
    if request_id is not None:
        ws.headers["X-Request-ID"] = request_id
    if not token:
        hub.unauthenticated += 1  # counted from before the upgrade: no await between check and count
        try:
            await ws.prepare(request)
            token = await _auth_message(ws, settings.live_auth_timeout_seconds)
        finally:
            hub.unauthenticated -= 1
    else:
        await ws.prepare(request)

    if token is None:
        reason = 'send a token: ?access_token= or a first message {"type": "auth", "access_token": ...}'
        await close_socket(ws, request, CLOSE_UNAUTHORIZED, reason)
        return ws
    try:
        caller = await hub.verifier.verify(token)
    except ApiError as error:
        await close_socket(ws, request, _close_code_for(error), error.body.message)
        return ws
    except Exception:
        log.exception("checking a live socket's token failed")
        await close_socket(ws, request, CLOSE_INTERNAL, "internal error")
        return ws
    # Verified, so its expiry may be read without checking the signature again.
    expires = float(jwt.decode(token, options={"verify_signature": False})["exp"])
    if not hub.has_room(caller):
        await close_socket(ws, request, CLOSE_TOO_MANY_SOCKETS, "too many live sockets for this user")
        return ws

    socket = LiveSocket(ws, request, caller, settings.live_send_queue)
    socket.offer(ready_message(caller, expires))
    hub.register(socket)  # no await since verify(): a revocation cannot slip in between
    # Closed when HTTP would start refusing the token (its expiry plus the clock-skew leeway).
    socket.close_at(expires + hub.verifier.leeway)
    try:
        async for message in ws:
            if message.type is WSMsgType.ERROR:  # a missed pong, a frame too large: aiohttp closed it
                break
            socket.close(CLOSE_POLICY, "this socket only pushes: send nothing after auth")
    finally:
        hub.forget(socket)
        socket.close(CLOSE_NORMAL, "")
        with contextlib.suppress(asyncio.CancelledError):
            await socket.closed()
    return ws


def install(app: web.Application, bus: BusLink, verifier: JwksVerifier, settings: GatewaySettings) -> None:
    """Give ``app`` its hub: subscribed while the app runs, every socket closed (1001) on shutdown."""
    hub = LiveHub(bus, verifier, settings)
    app[LIVE_KEY] = hub

    async def subscription(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(hub.run(stop))
        yield
        stop.set()
        await task
        await hub.unsubscribe()

    async def shutdown(app: web.Application) -> None:
        await hub.close_all(CLOSE_GOING_AWAY, "the gateway is shutting down")

    app.cleanup_ctx.append(subscription)
    app.on_shutdown.append(shutdown)


ROUTES = [
    Route(
        "GET",
        "/ws",
        live,
        "Live events: a WebSocket pushing the caller's own session events",
        access="public",  # the token comes in the query or the first message, checked by the handler
        status=101,
        tag="live",
        enveloped=False,
        query=("access_token",),
        description=(
            'Upgrade to a WebSocket. Authenticate with `?access_token=` or a first message `{"type": "auth", '
            '"access_token": "..."}` within a few seconds. The server first sends `{"type": "live.ready", '
            '"data": {tenant_id, user_id, expires_at, resync: true, pushed: [event types]}}`, then `{"type": '
            '"<event type>", "id", "occurred_at", "data"}` for each of the user\'s events (`data` as the event '
            "carries it: for sessions `{user_id, session}`). Best effort live push, not a replay: on every "
            "`live.ready` (first connect or reconnect) refetch the lists you show, then apply pushes, "
            "deduplicating by `id`. 503 before the upgrade when too many sockets wait to authenticate "
            "(retry, or pass the token in the query). Close codes: 4401 missing, invalid, "
            "revoked or expired token; 4408 the client read too slowly; 4429 too many sockets for the user; "
            "1008 the client sent something after auth; 1009 a client message too large; 1013 revocations "
            "cannot be confirmed now, retry; 1001 the gateway is shutting down."
        ),
    ),
]
