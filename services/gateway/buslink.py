"""The gateway's link to the bus: connects in the background and never blocks HTTP on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from faststream.nats import NatsBroker
from opentelemetry.trace import TracerProvider
from pydantic import BaseModel

from contracts.envelope import ErrorCode, Reply
from contracts.identity import BusRequest
from shared import bus, callerproof
from shared.callerproof import CallerSigner
from shared.requester import Requester

log = logging.getLogger(__name__)


class BusLink:
    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        identity: bus.BusIdentity | None = None,
        signer: CallerSigner | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.identity = identity or bus.BusIdentity("gateway")
        self.signer = signer
        self.broker: NatsBroker = bus.make_broker(
            url, "coditect-gateway", identity=self.identity, tracer_provider=tracer_provider
        )
        self._connect_task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._connection: Requester | None = None  # over the broker's nats-py client, once it started

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.is_connected

    async def _connect(self) -> None:
        while True:
            await bus.wait_for_nats(self.url, "gateway", identity=self.identity)
            try:
                await asyncio.wait_for(self.broker.start(), 10)
            except Exception as error:
                log.error("gateway could not start its NATS connection (%s); retrying", error)
                await self.broker.stop()
                await asyncio.sleep(1)
                continue
            requester = Requester(self.broker.config.connection_state.connection)
            try:
                await requester.start()
            except Exception as error:
                log.error("gateway could not subscribe to its reply inbox (%s); retrying", error)
                await self.broker.stop()
                await asyncio.sleep(1)
                continue
            self._connection = requester
            self._started.set()
            log.info("gateway connected to NATS at %s", self.url)
            return

    def start(self) -> None:
        self._connect_task = asyncio.create_task(self._connect())

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._started.wait(), timeout)
        return self.connected

    async def stop(self) -> None:
        if self._connect_task is not None:
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        self._connection = None
        await self.broker.stop()

    async def request(
        self, subject: str, payload: BaseModel | dict[str, Any] | bytes, *, timeout: float | None = None
    ) -> Reply:
        answer = await self.exchange(subject, payload, timeout=timeout)
        return answer if isinstance(answer, Reply) else bus.parse_reply(subject, answer)

    async def exchange(
        self, subject: str, payload: BaseModel | dict[str, Any] | bytes, *, timeout: float | None = None
    ) -> bytes | Reply:
        """The reply's bytes as they came (``shared.bus.exchange``), or the error reply when none came."""
        connection = self._connection
        if connection is None or not connection.is_connected:
            return Reply.failure(ErrorCode.SERVICE_UNAVAILABLE, "the bus is not connected")
        headers = None
        if self.signer is not None and isinstance(payload, BusRequest) and payload.caller is not None:
            # Services believe a caller only with this (one signature per caller per window).
            headers = {callerproof.HEADER: self.signer.assertion(payload.caller)}
        return await bus.exchange(connection, subject, payload, timeout=timeout or self.timeout, headers=headers)
