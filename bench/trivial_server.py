"""A trivial aiohttp JSON handler with the gateway's settings (uvloop, no access log, orjson body):
``python -m bench.trivial_server PORT`` (several may share the port, as several gateways do). The floor any
aiohttp route on this machine can reach."""

from __future__ import annotations

import sys

import orjson
from aiohttp import web

PAYLOAD = {"success": True, "data": {"ok": True}}


async def handle(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(PAYLOAD), content_type="application/json")


def main() -> None:
    port = int(sys.argv[1])
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = web.Application()
    app.router.add_get("/", handle)
    web.run_app(app, host="127.0.0.1", port=port, reuse_port=True, print=None, access_log=None, shutdown_timeout=1.0)


if __name__ == "__main__":
    main()
