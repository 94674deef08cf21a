"""Reference (r), the bare hop: an aiohttp route that makes a raw nats-py request to a raw nats-py
responder in another process, with nothing else on the way (no middlewares, no envelope, no models).

    python -m bench.bare_hop respond NATS_URL [KIND]    # the responder
    python -m bench.bare_hop http PORT NATS_URL         # the HTTP front

The floor a request through the gateway and the bus can reach on this machine. The responder can
also be what a service runs instead (KIND): ``dispatcher`` (``shared.dispatch`` with the ping's
models), ``faststream-lean`` (a FastStream subscriber without logger or middlewares) or
``faststream`` (as the services had it: FastStream with its telemetry middleware); ``raw`` is the
default.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import nats
import orjson
from aiohttp import web
from nats.aio.msg import Msg

# The bus is secured: the front sends as the gateway's identity and the responder answers as a
# service's, on a subject of that service no real handler uses (CODITECT_BUS_DIR names the folder).
SUBJECT = "rpc.audit.bench_hop"
QUEUE = "bench-bare-hop"
FRONT, RESPONDER = "gateway", "audit"


def identity(name: str) -> dict[str, Any]:
    """nats-py connect options of one identity of the system's bus folder (none on an open server)."""
    folder = os.environ.get("CODITECT_BUS_DIR")
    if not folder:
        return {}
    return {"nkeys_seed": os.path.join(folder, f"{name}.nk"), "inbox_prefix": f"_INBOX.{name}"}


REPLY = orjson.dumps({"ok": True, "result": {"service": "bare", "status": "ok"}})


async def respond(url: str, kind: str = "raw") -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if kind == "raw":
        nc = await nats.connect(url, **identity(RESPONDER))

        async def answer(message: Msg) -> None:
            await message.respond(REPLY)

        await nc.subscribe(SUBJECT, queue=QUEUE, cb=answer)
        await nc.flush()
        await nc.flush()
        print("ready", flush=True)
        await stop.wait()
        await nc.drain()
        return
    from contracts.health import Ping

    async def ping(message: Ping) -> dict[str, str | None]:
        return {"service": "bare", "status": "ok", "echo": message.echo}

    if kind == "dispatcher":
        from shared.dispatch import Dispatcher

        nc = await nats.connect(url, **identity(RESPONDER))
        dispatcher = Dispatcher()
        dispatcher.add(SUBJECT, Ping, ping, queue=QUEUE)
        await dispatcher.start(nc)
        print("ready", flush=True)
        await stop.wait()
        await dispatcher.stop()
        await nc.close()
        return
    from faststream.nats import NatsBroker

    if kind == "faststream-lean":
        broker = NatsBroker(url, logger=None, **identity(RESPONDER))
    elif kind == "faststream":
        from pathlib import Path

        from shared.bus import BusIdentity, make_broker
        from shared.telemetry import setup_tracing

        seed = identity(RESPONDER).get("nkeys_seed")
        broker = make_broker(
            url,
            "bench-faststream",
            identity=BusIdentity(RESPONDER, Path(seed) if seed else None),
            tracer_provider=setup_tracing("bench-faststream", None),
        )
    else:
        raise SystemExit(f"unknown responder {kind!r}")
    broker.subscriber(SUBJECT, queue=QUEUE)(ping)
    await broker.start()
    print("ready", flush=True)
    await stop.wait()
    await broker.stop()


def http_app(url: str) -> web.Application:
    app = web.Application()
    link: dict[str, nats.NATS] = {}

    async def hop(request: web.Request) -> web.Response:
        message = await link["nc"].request(SUBJECT, b"{}", timeout=5.0)
        return web.Response(body=message.data, content_type="application/json")

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        link["nc"] = await nats.connect(url, **identity(FRONT))
        yield
        await link["nc"].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/", hop)
    return app


def main() -> None:
    import uvloop

    role = sys.argv[1]
    if role == "respond":
        uvloop.run(respond(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "raw"))
    elif role == "http":
        uvloop.install()
        port, url = int(sys.argv[2]), sys.argv[3]
        web.run_app(
            http_app(url),
            host="127.0.0.1",
            port=port,
            reuse_port=True,  # several fronts share the port, as several gateways do
            print=None,
            access_log=None,
            shutdown_timeout=1.0,
        )
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
