"""Revoked auth sessions at the edge: the deny set, and a follower that keeps it complete.

The follower does not trust a long-lived JetStream consumer to survive reconnects (nats-py's
ordered consumer started by time never recovers from a reset). It holds the stream sequence of
the last revocation applied and, every ``poll_interval``, asks JetStream for the newest one; any
gap (a reconnect, a missed push) is read back by sequence. A core subscription on the same
subject applies revocations the moment they are published. The set is *current* only while
such a check succeeded within ``stale_after``; otherwise the gateway fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from contracts import auth, subjects
from contracts.events import Event

log = logging.getLogger(__name__)


RevocationListener = Callable[[list[UUID]], None]


class DenySet:
    """Revoked auth sessions, each kept until the last access token it could have issued expires."""

    def __init__(self) -> None:
        self._until: dict[UUID, float] = {}
        self._listeners: list[RevocationListener] = []

    def add_listener(self, listener: RevocationListener) -> None:
        """Call ``listener`` with the session ids of every revocation added from now on (what holds a
        token beyond one request, such as a live socket, ends it there)."""
        self._listeners.append(listener)

    def add(self, session_ids: list[UUID], until: datetime) -> None:
        deadline = until.timestamp()
        for sid in session_ids:
            self._until[sid] = max(deadline, self._until.get(sid, 0.0))
        if len(self._until) > 1024:
            self.prune()
        for listener in self._listeners:
            try:
                listener(session_ids)
            except Exception:  # one broken listener must not stop a revocation from being recorded or heard
                log.exception("a revocation listener failed")

    def prune(self) -> None:
        now = time.time()
        for sid in [sid for sid, deadline in self._until.items() if deadline < now]:
            del self._until[sid]

    def __contains__(self, sid: UUID) -> bool:
        deadline = self._until.get(sid)
        return deadline is not None and deadline >= time.time()


class RevocationFollower:
    def __init__(
        self,
        denied: DenySet,
        connection: Callable[[], tuple[NatsClient, JetStreamContext]],
        *,
        lookback_seconds: float,
        poll_interval: float,
        stale_after: float,
    ) -> None:
        self.denied = denied
        self._connection = connection
        self.lookback_seconds = lookback_seconds
        self.poll_interval = poll_interval
        self.stale_after = stale_after
        self.applied_seq: int | None = None
        self._confirmed_at: float | None = None
        self._push: Any = None
        self._stale_logged = False
        self.confirmed = asyncio.Event()

    @property
    def current(self) -> bool:
        """Every revocation published until a moment at most ``stale_after`` ago is applied."""
        return self._confirmed_at is not None and time.monotonic() - self._confirmed_at <= self.stale_after

    def staleness(self) -> float | None:
        return None if self._confirmed_at is None else time.monotonic() - self._confirmed_at

    async def wait_current(self, timeout: float) -> bool:
        if self.current:
            return True
        self.confirmed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.confirmed.wait(), timeout)
        return self.current

    def apply(self, payload: bytes) -> None:
        try:
            event = Event.model_validate(orjson.loads(payload))
            data = auth.SessionsRevokedData.model_validate(event.data)
        except (ValidationError, orjson.JSONDecodeError):
            log.warning("ignored a malformed revocation event")
            return
        self.denied.add(data.session_ids, data.until)

    async def run(self, stop: asyncio.Event) -> None:
        """Check and catch up every ``poll_interval`` until ``stop``; never raises."""
        while not stop.is_set():
            try:
                await self.check()
            except Exception as error:  # any bus failure: stay closed, say so once, retry
                self._report_stale(error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_interval)
        await self.stop()

    async def check(self) -> None:
        nc, js = self._connection()
        if self._push is None:
            # Subscribed before reading the head: a revocation published in between is seen twice, never zero times.
            self._push = await nc.subscribe(auth.SESSION_REVOKED_SUBJECT, cb=self._on_push)
        head = await self._head(js)
        if self.applied_seq is not None and head < self.applied_seq:
            log.warning(
                "the event stream was reset (newest revocation %d < %d applied); reading it again",
                head,
                self.applied_seq,
            )
            self.applied_seq = 0
        if self.applied_seq is None:
            self.applied_seq = await self._start_sequence(js, head)
        while self.applied_seq < head:
            message = await js.get_msg(
                subjects.REVOCATIONS_STREAM, seq=self.applied_seq + 1, subject=auth.SESSION_REVOKED_SUBJECT, next=True
            )
            assert message.seq is not None
            assert message.data is not None
            self.apply(message.data)
            self.applied_seq = message.seq
        self._confirmed_at = time.monotonic()
        self.confirmed.set()
        if self._stale_logged:
            log.info("revocation list is current again (stream sequence %d)", self.applied_seq)
            self._stale_logged = False

    async def _head(self, js: JetStreamContext) -> int:
        try:
            last = await js.get_last_msg(subjects.REVOCATIONS_STREAM, auth.SESSION_REVOKED_SUBJECT)
        except NotFoundError:
            return 0
        return int(last.seq or 0)

    async def _start_sequence(self, js: JetStreamContext, head: int) -> int:
        """The sequence just before the first revocation young enough to matter (a consumer started
        by time resolves it; it is deleted at once)."""
        if head == 0:
            return 0
        since = datetime.fromtimestamp(time.time() - self.lookback_seconds, UTC)
        info = await js.add_consumer(
            subjects.REVOCATIONS_STREAM,
            ConsumerConfig(
                # Named, so the create subject names the filter: the gateway's bus identity may
                # create consumers on this subject only. Never deleted by hand (that right would reach
                # other consumers): the server drops it after ``inactive_threshold``.
                name=f"gateway-revocations-{uuid.uuid4().hex}",
                deliver_policy=DeliverPolicy.BY_START_TIME,
                opt_start_time=since,
                filter_subject=auth.SESSION_REVOKED_SUBJECT,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=10.0,
                mem_storage=True,
            ),
        )
        if not info.num_pending:
            return head
        assert info.delivered is not None
        return int(info.delivered.stream_seq or 0)

    async def _on_push(self, msg: Any) -> None:
        self.apply(msg.data)

    def _report_stale(self, error: Exception) -> None:
        staleness = self.staleness()
        if not self._stale_logged and (staleness is None or staleness > self.stale_after):
            log.error(
                "revocation list is not current (%s: %s); refusing access tokens until it catches up",
                type(error).__name__,
                error or "no answer",
            )
            self._stale_logged = True

    async def stop(self) -> None:
        if self._push is not None:
            with contextlib.suppress(Exception):
                await self._push.unsubscribe()
            self._push = None
