"""``tests.support.connection_refusal`` against a scripted server: a refusal is seen whichever line
the server sends first after CONNECT (nats-server may send its own PING before a delayed ``-ERR``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import nats as nats_client
import pytest
from nats.errors import AuthorizationError

from tests.support import connection_refusal

INFO = {"server_id": "scripted", "version": "2.15.1", "proto": 1, "headers": True, "max_payload": 1048576}


@pytest.fixture
async def scripted_server(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A server that reads CONNECT and PING, then writes ``request.param``'s lines and hangs up."""
    answer: list[bytes] = request.param

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"INFO " + json.dumps({**INFO, "auth_required": True}).encode() + b"\r\n")
        await writer.drain()
        while not (await reader.readline()).startswith(b"PING"):
            pass
        for line in answer:
            writer.write(line)
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


REFUSED = b"-ERR 'Authorization Violation'\r\n"


@pytest.mark.parametrize("scripted_server", [[REFUSED], [b"PING\r\n", REFUSED]], indirect=True)
async def test_a_refusal_is_seen_whatever_comes_before_it(scripted_server: str) -> None:
    error = await connection_refusal(scripted_server)
    assert error is not None and "authorization" in str(error).lower()


@pytest.mark.parametrize("scripted_server", [[b"PONG\r\n"]], indirect=True)
async def test_an_admitted_connection_is_not_a_refusal(scripted_server: str) -> None:
    assert await connection_refusal(scripted_server) is None


@pytest.mark.parametrize("scripted_server", [[b"PING\r\n", REFUSED]], indirect=True)
async def test_nats_py_returns_from_connect_when_a_ping_precedes_the_refusal(scripted_server: str) -> None:
    """Why the helper exists: nats-py's connect reads one line after CONNECT and raises only on
    ``-ERR``. When this goes red, nats-py raises here and the helper's second path is dead code."""
    client = await nats_client.connect(scripted_server, allow_reconnect=False, connect_timeout=5)
    try:
        assert not client.is_connected
        for _ in range(100):
            if client.is_closed:
                break
            await asyncio.sleep(0.02)
        assert client.is_closed and isinstance(client.last_error, AuthorizationError)
    finally:
        await client.close()
