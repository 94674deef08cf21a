"""Access-token verification at the edge: local JWT checks against the auth service's JWKS,
plus the deny set of revoked auth sessions fed by the event stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import jwt
import orjson
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from contracts import auth
from contracts.envelope import ErrorCode
from contracts.events import Event
from contracts.identity import Caller
from services.gateway.buslink import BusLink
from services.gateway.http import ApiError, unwrap

log = logging.getLogger(__name__)

ALGORITHMS = ["EdDSA"]
VERIFIED_CACHE_SIZE = 10_000
REQUIRED_CLAIMS = ["iss", "aud", "sub", "tid", "sid", "iat", "exp", "jti"]


def _unauthorized(message: str, code: ErrorCode = ErrorCode.UNAUTHORIZED) -> ApiError:
    return ApiError.of(code, message)


class DenySet:
    """Revoked auth sessions, each kept until the last access token it could have issued expires."""

    def __init__(self) -> None:
        self._until: dict[UUID, float] = {}

    def add(self, session_ids: list[UUID], until: datetime) -> None:
        deadline = until.timestamp()
        for sid in session_ids:
            self._until[sid] = max(deadline, self._until.get(sid, 0.0))
        if len(self._until) > 1024:
            self.prune()

    def prune(self) -> None:
        now = time.time()
        for sid in [sid for sid, deadline in self._until.items() if deadline < now]:
            del self._until[sid]

    def __contains__(self, sid: UUID) -> bool:
        deadline = self._until.get(sid)
        return deadline is not None and deadline >= time.time()


class JwksVerifier:
    def __init__(self, bus: BusLink, *, issuer: str, audience: str, leeway: int, refresh_min_interval: float) -> None:
        self.bus = bus
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.refresh_min_interval = refresh_min_interval
        self.denied = DenySet()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self._subscription: Any = None
        self.revocations_loaded = asyncio.Event()
        self._verified: OrderedDict[str, tuple[Caller, float]] = OrderedDict()

    async def _refresh_keys(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < self.refresh_min_interval and self._keys:
                return
            reply = await self.bus.request(auth.GET_JWKS, auth.GetJwks())
            if not reply.ok:
                assert reply.error is not None
                if reply.error.code in (ErrorCode.SERVICE_UNAVAILABLE, ErrorCode.TIMEOUT):
                    raise ApiError(reply.error)
                unwrap(reply)
            keys: dict[str, jwt.PyJWK] = {}
            for jwk in reply.result["keys"]:
                with contextlib.suppress(jwt.PyJWKError):
                    keys[jwk["kid"]] = jwt.PyJWK(jwk)
            self._keys = keys
            self._fetched_at = time.monotonic()

    async def _key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is None:
            await self._refresh_keys()
            key = self._keys.get(kid)
        if key is None:
            raise _unauthorized("the access token was signed by an unknown key")
        return key

    async def verify(self, token: str) -> Caller:
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            caller = cached[0]
        else:
            caller = await self._verify_signed(token)
        if not self.revocations_loaded.is_set():
            # Until the deny set is rebuilt, a revoked token could pass: refuse rather than guess.
            try:
                await asyncio.wait_for(self.revocations_loaded.wait(), 2.0)
            except TimeoutError as error:
                raise ApiError.of(ErrorCode.SERVICE_UNAVAILABLE, "the revocation list is not loaded yet") from error
        if caller.session_id in self.denied:
            raise _unauthorized("the access token's session was revoked", ErrorCode.TOKEN_REVOKED)
        return caller

    async def _verify_signed(self, token: str) -> Caller:
        """Full verification; a token that passes is remembered until it expires, so a client's
        next requests with the same token skip the signature check (revocation is still checked)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise _unauthorized("the access token is malformed") from error
        if header.get("alg") not in ALGORITHMS:
            raise _unauthorized("the access token uses an algorithm this API does not accept")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise _unauthorized("the access token has no key id")
        key = await self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as error:
            raise _unauthorized("the access token has expired", ErrorCode.TOKEN_EXPIRED) from error
        except jwt.PyJWTError as error:
            raise _unauthorized(f"the access token is not valid: {error}") from error
        try:
            caller = Caller(
                tenant_id=claims["tid"], user_id=claims["sub"], roles=claims.get("roles", []), session_id=claims["sid"]
            )
        except ValidationError as error:
            raise _unauthorized("the access token's claims are not valid") from error
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        self._verified[token] = (caller, float(claims["exp"]) + self.leeway)
        return caller

    async def follow_revocations(self, lookback_seconds: float) -> None:
        """Rebuild the deny set from recent revocation events, then follow new ones."""
        state = self.bus.broker.config.connection_state
        js = state.stream
        start = datetime.fromtimestamp(time.time() - lookback_seconds, UTC)
        self._subscription = await js.subscribe(
            auth.SESSION_REVOKED_SUBJECT,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start),
            cb=self._on_revocation,
        )
        await self._catch_up()

    async def _catch_up(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = await self._subscription.consumer_info()
            if info.num_pending == 0 and self._subscription.pending_msgs == 0:
                break
            await asyncio.sleep(0.01)
        self.revocations_loaded.set()

    async def _on_revocation(self, msg: Any) -> None:
        try:
            event = Event.model_validate(orjson.loads(msg.data))
            data = auth.SessionsRevokedData.model_validate(event.data)
        except (ValidationError, orjson.JSONDecodeError):
            log.warning("ignored a malformed revocation event")
            return
        self.denied.add(data.session_ids, data.until)

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
