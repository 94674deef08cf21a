"""Batches from a durable JetStream pull consumer, on an inbox of our own.

The protocol is JetStream's own (what nats-py's ``fetch`` sends): a pull request to
``$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>`` with a batch size and an expiry, the messages delivered to
our inbox, and a status message (404, 408, 409) when the request ends before the batch is full; first
a ``no_wait`` request for what is there, then a waiting one. What
differs is the receiving: nats-py's ``fetch`` awaits every message through ``next_msg`` (an
``asyncio.wait_for`` and a fresh ``uuid4`` each), a large share of the audit process's time per record
and of the file-event ingest's per event; here a plain callback appends to a list. Messages that arrive
after a fetch returned stay in the buffer and open the next one, in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

_STATUS = "Status"
_HEARTBEAT = "100"
_REQUEST_ENDED = frozenset({"404", "408"})  # no messages (now), request expired
# Another status (409: the consumer was deleted, limits exceeded…) ends the request too; wait a moment
# before the next one rather than asking in a tight loop.
_BACKOFF_SECONDS = 0.5
_LINGER_SECONDS = 0.02


class Puller:
    def __init__(self, nc: Client, stream: str, durable: str) -> None:
        self._nc = nc
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._buffer: list[Msg] = []
        self._wanted = 0
        self._wake = asyncio.Event()
        self._trouble: str | None = None
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self._nc.subscribe(self._inbox, cb=self._on_message)

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def _on_message(self, message: Msg) -> None:
        headers = message.headers or {}
        status = headers.get(_STATUS)
        if status is None:
            self._buffer.append(message)
            if len(self._buffer) >= self._wanted:
                self._wake.set()
        elif status != _HEARTBEAT:
            description = headers.get("Description", "")
            if status not in _REQUEST_ENDED and not (status == "409" and description.startswith("Exceeded Max")):
                self._trouble = f"{status} {description}"
            self._wake.set()

    async def _request(self, body: dict[str, object], wanted: int, wait: float) -> None:
        self._wanted, self._trouble = wanted, None
        self._wake.clear()
        await self._nc.publish(self._subject, orjson.dumps(body), reply=self._inbox)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)

    async def fetch(self, batch: int, timeout: float, linger: float = 0.0) -> list[Msg]:
        """Up to ``batch`` messages: what is buffered; else what the server has now (a ``no_wait``
        request); else the first to arrive within ``timeout`` (a waiting request), with what follows it
        within a moment (later ones stay buffered for the next call). An empty list if nothing came.

        ``linger``: when what is at hand is less than a batch, wait up to this long for more (one waiting
        request for the rest), so that a steady trickle makes fuller batches: fewer pull requests,
        transactions and acknowledgement flushes per message, for up to ``linger`` more latency."""
        lingered = False
        if not self._buffer:
            await self._request({"batch": batch, "no_wait": True}, batch, timeout)
        if not self._buffer:
            expires = int(timeout * 1_000_000_000)
            await self._request({"batch": batch, "expires": expires}, 1, timeout + 0.5)
            if self._buffer and len(self._buffer) < batch:
                # The first message came; give the rest of a burst a moment to join it (acks free the
                # consumer's capacity one by one, so messages trickle in at first).
                self._wanted = batch
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(linger, _LINGER_SECONDS))
                lingered = True
            elif self._trouble is not None and not self._buffer:
                log.warning("the pull request of consumer %s ended with %s", self._subject, self._trouble)
                await asyncio.sleep(_BACKOFF_SECONDS)
        if linger > 0 and not lingered and 0 < len(self._buffer) < batch:
            # The request ends when the batch is full or when it expires (the server's 408 wakes us).
            expires = int(max(linger, 0.001) * 1_000_000_000)
            await self._request({"batch": batch - len(self._buffer), "expires": expires}, batch, linger + 0.05)
        taken, self._buffer = self._buffer[:batch], self._buffer[batch:]
        return taken
