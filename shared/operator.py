"""Operator tools: the one bus identity that may call operator-only subjects (signing-key rotation).

    python -m shared.operator rotate-signing-key
    python -m shared.operator ping auth

Settings: ``CODITECT_NATS_URL``, ``CODITECT_NATS_SEED_FILE`` (the operator's nkey seed, ``<data>/bus/
operator.nk`` under ``./dev up``) and ``CODITECT_CALLER_SIGNING_KEY_FILE`` (the operator's caller key,
``<data>/bus/operator-caller.key``), whose public key the services trust next to the gateway's.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
from nats.aio.client import Client
from pydantic import BaseModel

from contracts import auth, subjects
from contracts.envelope import Reply
from contracts.health import Ping
from contracts.identity import BusRequest, Caller
from shared import bus
from shared.buspolicy import OPERATOR
from shared.callerproof import HEADER, CallerSigner
from shared.settings import CommonSettings

# The operator acts as nobody's user: a fixed nil tenant and user, a fresh session id per run.
NIL = uuid.UUID(int=0)


def operator_caller() -> Caller:
    return Caller(tenant_id=NIL, user_id=NIL, roles=["operator"], session_id=uuid.uuid4())


class OperatorClient:
    """Requests as the operator identity, its caller vouched for by the operator's caller key."""

    def __init__(self, connection: Client, signer: CallerSigner | None) -> None:
        self.connection = connection
        self.signer = signer

    async def request(self, subject: str, payload: BaseModel, *, timeout: float = 5.0) -> Reply:
        headers = None
        if self.signer is not None and isinstance(payload, BusRequest) and payload.caller is not None:
            headers = {HEADER: self.signer.assertion(payload.caller)}
        return await bus.request(self.connection, subject, payload, timeout=timeout, headers=headers)


@asynccontextmanager
async def operator_client(settings: CommonSettings) -> AsyncIterator[OperatorClient]:
    identity = bus.identity_from(settings, OPERATOR)
    connection = await nats.connect(settings.nats_url, connect_timeout=2, **identity.connect_options())
    signer = CallerSigner.from_file(settings.caller_signing_key_file) if settings.caller_signing_key_file else None
    try:
        yield OperatorClient(connection, signer)
    finally:
        await connection.close()


async def run(command: list[str]) -> Any:
    settings = CommonSettings()
    async with operator_client(settings) as client:
        if command == ["rotate-signing-key"]:
            reply = await client.request(auth.ROTATE_SIGNING_KEY, auth.RotateSigningKey(caller=operator_caller()))
        elif len(command) == 2 and command[0] == "ping":
            reply = await client.request(subjects.ping(command[1]), Ping())
        else:
            sys.exit(__doc__)
    print(reply.model_dump_json(exclude_none=True))
    return 0 if reply.ok else 1


def main() -> None:
    sys.exit(asyncio.run(run(sys.argv[1:])))


if __name__ == "__main__":
    main()
