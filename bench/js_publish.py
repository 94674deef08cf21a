"""The publisher's CPU per JetStream event: nats-py's ``publish_async`` against ``shared.requester``.

    python -m bench.js_publish              # 20,000 events in batches of 20, each way twice, alternating

One nats-server (JetStream, a scratch stream in a temp dir) on a free port; each event about 200 bytes
with the headers ``shared.bus.publish_events`` sends. Figures are the publishing process's CPU time
(user + system) per acknowledged event: what an event costs the service that publishes it.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import nats
import orjson
from nats.aio.client import Client

from shared.requester import Requester
from shared.supervisor import nats_server_binary, wait_port

SUBJECT = "evt.bench.published"
BODY = b'{"padding":"' + b"x" * 200 + b'"}'


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _headers() -> dict[str, Any]:
    return {"Nats-Msg-Id": uuid.uuid4().hex, "content-type": "application/json", "Nats-Expected-Stream": "BENCH"}


async def _with_nats_py(nc: Client, count: int, batch: int) -> None:
    js = nc.jetstream()
    for _ in range(0, count, batch):
        futures = [await js.publish_async(SUBJECT, BODY, headers=_headers()) for _ in range(batch)]
        await asyncio.wait(futures)
        for future in futures:
            future.result()


async def _with_requester(requester: Requester, count: int, batch: int) -> None:
    for _ in range(0, count, batch):
        replies = await requester.request_all([(SUBJECT, BODY, _headers()) for _ in range(batch)], 5.0)
        for reply in replies:
            if isinstance(reply, Exception) or "seq" not in orjson.loads(reply.data):
                raise RuntimeError(f"not stored: {reply}")


async def measure(url: str, count: int, batch: int) -> dict[str, list[float]]:
    nc = await nats.connect(url, connect_timeout=5)
    try:
        await nc.jetstream().add_stream(name="BENCH", subjects=["evt.bench.>"])
        requester = Requester(nc)
        await requester.start()
        figures: dict[str, list[float]] = {"nats-py publish_async": [], "shared.requester": []}
        for _ in range(2):
            for name in figures:
                began = time.process_time()
                if name == "shared.requester":
                    await _with_requester(requester, count, batch)
                else:
                    await _with_nats_py(nc, count, batch)
                figures[name].append((time.process_time() - began) / count * 1e6)
        return figures
    finally:
        await nc.close()


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 20_000
    batch = int(argv[1]) if len(argv) > 1 else 20
    port = _free_port()
    with tempfile.TemporaryDirectory() as store:
        server = subprocess.Popen(
            [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if not wait_port(port, 10):
                raise RuntimeError("nats-server did not start")
            figures = asyncio.run(measure(f"nats://127.0.0.1:{port}", count, batch))
        finally:
            server.terminate()
            server.wait()
    for name, runs in figures.items():
        print(f"{name}: {', '.join(f'{run:.1f}' for run in runs)} µs of publisher CPU per event ({count} events)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
