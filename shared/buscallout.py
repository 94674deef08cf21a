"""nats-server's authorization callout: identities that are not in the server's configuration (workspace
monitors, one per workspace) are admitted by a service's answer instead of a configuration reload.

The server configuration (``shared.busauth``) lists every process role as an ``auth_user``; any other
connection makes the server send a signed authorization request on ``$SYS.REQ.USER.AUTH``. The
responder here checks the server's signature, checks that the client signed the server's nonce with the
nkey it presents (a monitor proves it holds the seed; the public key alone gets nothing), asks
``authorize`` which role that key has (provisioning: the workspace monitor it issued the key to), and
answers with a user authorization signed by the issuer account key the server trusts: the role's
permissions, expiring after ``ttl`` seconds. An expired authorization ends the connection, and the
client's reconnect asks again, so a revoked key is refused at once for new connections and cut off
within ``ttl`` for one already open.

Nothing is ever reloaded, so the reply grants (``allow_responses``) of requests in flight survive any
number of monitors coming and going (a reload of nats-server forgets them).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import nkeys
from cryptography.exceptions import InvalidSignature
from nats.aio.client import Client
from nats.aio.msg import Msg

from shared import natsjwt
from shared.buspolicy import AUTH_CALLOUT_SUBJECT, Role

log = logging.getLogger(__name__)

GLOBAL_ACCOUNT: Final = "$G"
Authorize = Callable[[str], Awaitable[Role | None]]


class Refused(Exception):
    """The connection is not admitted; the message is what the server logs (never a secret)."""


def _signature(text: str) -> bytes:
    """A client's nonce signature: nats-py sends standard base64, the Go client base64url."""
    try:
        return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise Refused("the nonce signature is not base64") from error


def presented_key(request: dict[str, Any]) -> str:
    """The public nkey a client connected with, once its signature of the server's nonce checks out."""
    options = request.get("connect_opts") or {}
    nonce = (request.get("client_info") or {}).get("nonce")
    public_key, signature = options.get("nkey"), options.get("sig")
    if not (isinstance(public_key, str) and isinstance(signature, str) and isinstance(nonce, str)):
        raise Refused("no nkey presented")
    try:
        natsjwt.verify_key(public_key, nkeys.PREFIX_BYTE_USER).verify(_signature(signature), nonce.encode())
    except (natsjwt.InvalidJwt, InvalidSignature) as error:
        raise Refused("the nonce is not signed by the presented nkey") from error
    return public_key


class CalloutResponder:
    """Answers the server's authorization requests for identities ``authorize`` knows."""

    def __init__(self, issuer_seed: bytes, authorize: Authorize, *, ttl: float, account: str = GLOBAL_ACCOUNT) -> None:
        self.issuer = nkeys.from_seed(bytearray(issuer_seed))
        self.authorize = authorize
        self.ttl = ttl
        self.account = account

    async def answer(self, request_token: bytes) -> bytes:
        """The signed authorization response to one request (a refusal is an answer too)."""
        claims = natsjwt.decode(request_token.decode(), issuer_prefix=nkeys.PREFIX_BYTE_SERVER)
        request = claims.get("nats") or {}
        user_nkey = request.get("user_nkey")
        server_id = (request.get("server_id") or {}).get("id")
        if not isinstance(user_nkey, str) or not isinstance(server_id, str) or server_id != claims["iss"]:
            raise natsjwt.InvalidJwt("not an authorization request")
        response: dict[str, Any] = {"type": "authorization_response", "version": 2}
        try:
            public_key = presented_key(request)
            try:
                role = await self.authorize(public_key)
            except Exception as error:  # the store is down: refuse now (the client retries), say why here
                log.error("bus callout cannot look keys up (%s: %s)", type(error).__name__, error)
                raise Refused("authorization is unavailable; try again") from error
            if role is None:
                raise Refused("unknown or revoked key")
            response["jwt"] = self._user(user_nkey, role)
            log.info("bus callout admitted %s", role.name)
        except Refused as refusal:
            response["error"] = str(refusal)
            log.warning("bus callout refused a connection from %s: %s", _client(request), refusal)
        return natsjwt.encode({"sub": user_nkey, "aud": server_id, "nats": response}, self.issuer).encode()

    def _user(self, user_nkey: str, role: Role) -> str:
        claims = {
            "sub": user_nkey,
            "aud": self.account,
            "name": role.name,
            "exp": int(time.time() + self.ttl),
            "nats": {
                **role.jwt_permissions(),
                "subs": natsjwt.NO_LIMIT,
                "data": natsjwt.NO_LIMIT,
                "payload": natsjwt.NO_LIMIT,
                "type": "user",
                "version": 2,
            },
        }
        return natsjwt.encode(claims, self.issuer)

    async def on_request(self, msg: Msg) -> None:
        try:
            answer = await self.answer(msg.data)
        except natsjwt.InvalidJwt as error:
            log.warning("bus callout: a request that is not the server's (%s) was dropped", error)
            return
        with contextlib.suppress(Exception):  # the server gave up waiting: the client was refused anyway
            await msg.respond(answer)

    async def serve(self, connection: Client, stop: asyncio.Event, *, queue: str) -> None:
        """Answer on ``connection`` until ``stop`` (replicas share the work through ``queue``)."""
        subscription = await connection.subscribe(AUTH_CALLOUT_SUBJECT, queue=queue, cb=self.on_request)
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


def _client(request: dict[str, Any]) -> str:
    info = request.get("client_info") or {}
    return f"{info.get('host', '?')} ({info.get('name') or 'unnamed'})"
