"""Request/reply over one wildcard reply subscription, as nats-py's ``Client.request`` does, for less.

nats-py names each request's reply inbox with a fresh NUID plus ``secrets.token_hex(2)`` (a
``getrandom`` system call per request) and waits with ``asyncio.wait_for`` (an extra future, a done
callback and a timer per request): together about a tenth of the gateway's CPU per bus request
(README, "Benchmarks"). Here a reply inbox is the requester's random prefix plus a counter, and a
request waits on one future with one timer. What nats-py does is kept: the server's "no responders"
status becomes ``NoRespondersError`` at once, a timeout ``nats.errors.TimeoutError``; the subscription
is nats-py's own, so it is restored after a reconnect.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

_STATUS = "Status"
_NO_RESPONDERS = "503"


def _expire(future: asyncio.Future[Msg]) -> None:
    if not future.done():
        future.set_exception(NatsTimeoutError())


class Requester:
    """Requests on one connection; ``start`` once connected, then ``request`` like ``Client.request``."""

    def __init__(self, connection: Client) -> None:
        self.connection = connection
        self._prefix = ""
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        self._tokens = itertools.count()
        self._starting = asyncio.Lock()

    @property
    def is_connected(self) -> bool:
        return self.connection.is_connected

    async def start(self) -> None:
        # The inbox prefix (``_INBOX.<identity>``) is the only one the bus lets this identity read.
        prefix = self.connection.new_inbox() + "."
        await self.connection.subscribe(prefix + "*", cb=self._on_reply)
        self._prefix = prefix  # only once subscribed: a failed start can be tried again

    async def ensure_started(self) -> None:
        """``start`` once, however many callers ask at the same time."""
        if self._prefix:
            return
        async with self._starting:
            if not self._prefix:
                await self.start()

    async def _on_reply(self, msg: Msg) -> None:
        future = self._pending.pop(msg.subject[len(self._prefix) :], None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def request(
        self, subject: str, payload: bytes = b"", timeout: float = 0.5, headers: dict[str, Any] | None = None
    ) -> Msg:
        if not self._prefix:
            raise RuntimeError("the requester is not started")
        token = str(next(self._tokens))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._pending[token] = future
        timer = loop.call_later(timeout, _expire, future)
        try:
            await self.connection.publish(subject, payload, reply=self._prefix + token, headers=headers)
            msg = await future
        finally:
            timer.cancel()
            self._pending.pop(token, None)
        if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
            raise NoRespondersError
        return msg

    async def request_all(
        self, requests: Sequence[tuple[str, bytes, dict[str, Any] | None]], timeout: float
    ) -> list[Msg | Exception]:
        """Send every request, then wait for their replies together: one wait and one timeout for the
        lot, not a timer per request. Per request, in order: its reply, or ``NoRespondersError``, a
        ``nats.errors.TimeoutError``, or what sending it raised."""
        if not self._prefix:
            raise RuntimeError("the requester is not started")
        loop = asyncio.get_running_loop()
        sent: list[asyncio.Future[Msg] | Exception] = []
        tokens: list[str] = []
        try:
            for subject, payload, headers in requests:
                token = str(next(self._tokens))
                future: asyncio.Future[Msg] = loop.create_future()
                self._pending[token] = future
                tokens.append(token)
                try:
                    await self.connection.publish(subject, payload, reply=self._prefix + token, headers=headers)
                except Exception as error:  # not connected, the buffer full: this one failed
                    sent.append(error)
                    continue
                sent.append(future)
            waiting = [future for future in sent if isinstance(future, asyncio.Future)]
            if waiting:
                await asyncio.wait(waiting, timeout=timeout)
        finally:
            for token in tokens:
                self._pending.pop(token, None)  # a reply that still comes finds nobody waiting
        replies: list[Msg | Exception] = []
        for outcome in sent:
            if isinstance(outcome, Exception):
                replies.append(outcome)
            elif not outcome.done():
                outcome.cancel()
                replies.append(NatsTimeoutError())
            else:
                msg = outcome.result()
                no_responders = msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS
                replies.append(NoRespondersError() if no_responders else msg)
        return replies

    @property
    def pending(self) -> int:
        """Requests waiting for their reply (a request that ended, however, is never left behind)."""
        return len(self._pending)
