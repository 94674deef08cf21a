"""Publishing the buffered changes to JetStream: ``publish_async`` with at most ``max_in_flight``
unacknowledged messages (never one awaited ack per change), ``Nats-Msg-Id`` = event id so a resend
after an outage is stored once. Rows leave the disk buffer only once acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts import subjects
from services.monitor.buffer import DiskBuffer

log = logging.getLogger(__name__)

BATCH = 1024
BACKOFF_MAX = 2.0


class Publisher:
    def __init__(
        self,
        buffer: DiskBuffer,
        subject: str,
        *,
        url: str,
        connect_options: dict[str, Any],
        max_in_flight: int,
        timeout: float,
    ) -> None:
        self.buffer = buffer
        self.subject = subject
        self.url = url
        self.connect_options = connect_options  # its identity: nkey seed file and inbox prefix
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.wake = asyncio.Event()
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.published = 0

    async def connect(self, stop: asyncio.Event) -> None:
        """Connect, retrying for as long as it takes (changes wait on disk meanwhile)."""
        delay = 0.2
        while not stop.is_set():
            try:
                self.nc = await nats.connect(
                    self.url,
                    **self.connect_options,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,
                    error_cb=_quiet,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=_reconnected,
                    closed_cb=self._closed,
                )
            except Exception as error:
                log.warning("cannot reach NATS at %s (%s); changes are kept on disk", self.url, error or "no answer")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            self.js = self.nc.jetstream(publish_async_max_pending=self.max_in_flight)
            return

    async def _disconnected(self) -> None:
        error = self.nc.last_error if self.nc is not None else None
        if error is not None and "authentication expired" in str(error).lower():
            return  # routine, every authorization TTL: ``run`` says so when it connects again
        log.warning("lost the connection to NATS; changes are kept on disk until it returns")

    async def _closed(self) -> None:
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        await self.connect(stop)
        delay = 0.1
        while not stop.is_set():
            if self.nc is not None and self.nc.is_closed:
                # nats-py reconnects after a lost connection but closes for good on an error the server
                # sends, such as the end of this monitor's authorization (its TTL): its key is still
                # issued, and a new connection is admitted again.
                log.info("the NATS connection was closed (%s); connecting again", self.nc.last_error or "no reason")
                await self.connect(stop)
                continue
            if await self.send_once():
                delay = 0.1
                continue
            if self.buffer.count:  # not connected, or not acknowledged: try again a little later
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            self.wake.clear()
            if self.buffer.count:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 1.0)

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def send_once(self) -> bool:
        """Publish one batch from the buffer; True when every message of it was acknowledged."""
        if not self.connected or self.js is None:
            return False
        rows = self.buffer.peek(BATCH)
        if not rows:
            return False
        futures: list[tuple[int, asyncio.Future[object]]] = []
        try:
            for seq, msg_id, body in rows:
                future = await self.js.publish_async(
                    self.subject,
                    body,
                    wait_stall=self.timeout,
                    stream=subjects.FILE_EVENTS_STREAM,
                    headers={"Nats-Msg-Id": msg_id},
                )
                futures.append((seq, future))  # type: ignore[arg-type]
        except Exception as error:
            log.warning("publishing stopped (%s); unsent changes stay on disk", error)
        results = await asyncio.gather(
            *(asyncio.wait_for(future, self.timeout) for _, future in futures), return_exceptions=True
        )
        acked = [
            seq for (seq, _), result in zip(futures, results, strict=True) if not isinstance(result, BaseException)
        ]
        self.buffer.remove(acked)
        self.published += len(acked)
        failed = len(rows) - len(acked)
        if failed:
            log.warning("%d changes not acknowledged; they stay on disk and are sent again", failed)
        return failed == 0

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()


async def _quiet(error: Exception) -> None:
    log.debug("NATS: %s", error)


async def _reconnected() -> None:
    log.info("reconnected to NATS; sending the changes kept on disk")
