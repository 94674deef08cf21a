"""Access-token verification at the edge: local JWT checks against the auth service's JWKS, plus
the deny set of revoked auth sessions, which must be current for any token to pass."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any

import jwt
from pydantic import ValidationError

from contracts import auth
from contracts.envelope import ErrorCode
from contracts.identity import Caller
from services.gateway.buslink import BusLink
from services.gateway.http import ApiError, unwrap
from services.gateway.revocations import DenySet, RevocationFollower

log = logging.getLogger(__name__)

ALGORITHMS = ["EdDSA"]
VERIFIED_CACHE_SIZE = 10_000
MAX_KEYS = 16  # trusted signing keys at most (the auth service publishes two or three)
REQUIRED_CLAIMS = ["iss", "aud", "sub", "tid", "sid", "iat", "exp", "jti"]
STARTUP_WAIT_SECONDS = 2.0


def _unauthorized(message: str, code: ErrorCode = ErrorCode.UNAUTHORIZED) -> ApiError:
    return ApiError.of(code, message)


def usable_keys(jwks: Any) -> dict[str, jwt.PyJWK]:
    """The keys of a JWKS reply this gateway may trust: EdDSA signing keys with a key id."""
    keys: dict[str, jwt.PyJWK] = {}
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        return keys
    for jwk in jwks["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or jwk.get("alg") not in ALGORITHMS:
            continue
        if jwk.get("use", "sig") != "sig" or "d" in jwk:
            continue  # never an encryption key, never a private key sent by mistake
        with contextlib.suppress(jwt.PyJWKError):
            keys[jwk["kid"]] = jwt.PyJWK(jwk)
    return keys


class JwksVerifier:
    def __init__(
        self,
        bus: BusLink,
        *,
        issuer: str,
        audience: str,
        leeway: int,
        access_ttl: int,
        refresh_min_interval: float,
        refresh_interval: float = 60.0,
        revocation_poll_interval: float = 0.5,
        revocation_stale_after: float = 3.0,
    ) -> None:
        self.bus = bus
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.max_lifetime = access_ttl + leeway
        self.refresh_min_interval = refresh_min_interval
        self.refresh_interval = refresh_interval
        self.denied = DenySet()
        self.revocations = RevocationFollower(
            self.denied,
            self._connection,
            # A revocation older than the longest-lived access token (plus skew on both ends) denies nothing.
            lookback_seconds=access_ttl + 2 * leeway,
            poll_interval=revocation_poll_interval,
            stale_after=revocation_stale_after,
        )
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self._verified: OrderedDict[str, tuple[Caller, float, str]] = OrderedDict()

    def _connection(self) -> tuple[Any, Any]:
        state = self.bus.broker.config.connection_state
        return state.connection, state.stream

    async def _refresh_keys(self, *, force: bool = False) -> None:
        async with self._lock:
            if not force and time.monotonic() - self._fetched_at < self.refresh_min_interval and self._keys:
                return
            reply = await self.bus.request(auth.GET_JWKS, auth.GetJwks())
            if not reply.ok:
                assert reply.error is not None
                if reply.error.code in (ErrorCode.SERVICE_UNAVAILABLE, ErrorCode.TIMEOUT):
                    raise ApiError(reply.error)
                unwrap(reply)
            keys = usable_keys(reply.result)
            self._fetched_at = time.monotonic()
            if not keys:
                # One empty or garbled reply must not drop every key (and sign everyone out).
                log.warning("ignored a JWKS reply with no usable key; keeping %d known keys", len(self._keys))
                return
            if self._keys and not keys.keys() & self._keys.keys():
                # A rotation keeps the old key published until its tokens expire, so a real reply
                # always shares a key with what we hold. One that shares none (a confused or forged
                # responder) adds its keys but retires none: one reply never replaces the whole set.
                log.warning("a JWKS reply shares no key with the %d known ones; keeping them", len(self._keys))
                keys = {**self._keys, **keys}
            while len(keys) > MAX_KEYS:  # bounded whatever the replies say
                keys.pop(next(iter(keys)))
            removed = self._keys.keys() - keys.keys()
            self._keys = keys
            if removed:
                log.info("signing keys left the JWKS and are no longer trusted: %s", ", ".join(sorted(removed)))
                for token in [t for t, (_, _, kid) in self._verified.items() if kid in removed]:
                    del self._verified[token]

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
        await self._require_current_revocations()
        if caller.session_id in self.denied:
            raise _unauthorized("the access token's session was revoked", ErrorCode.TOKEN_REVOKED)
        return caller

    async def _require_current_revocations(self) -> None:
        """Fail closed: without a current deny set, a revoked token could pass."""
        if self.revocations.current:
            return
        starting = self.revocations.staleness() is None
        if starting and await self.revocations.wait_current(STARTUP_WAIT_SECONDS):
            return
        raise ApiError.of(
            ErrorCode.SERVICE_UNAVAILABLE, "token revocations cannot be confirmed right now; retry shortly"
        )

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
            # PyJWT's wording is not a stable contract and says too much: log it, answer one sentence.
            log.debug("access token refused: %s", error)
            raise _unauthorized("the access token is not valid") from error
        exp, iat = claims["exp"], claims["iat"]
        if not isinstance(iat, int | float) or exp - iat > self.max_lifetime:
            raise _unauthorized("the access token's lifetime is longer than this API accepts")
        try:
            caller = Caller(
                tenant_id=claims["tid"], user_id=claims["sub"], roles=claims.get("roles", []), session_id=claims["sid"]
            )
        except ValidationError as error:
            raise _unauthorized("the access token's claims are not valid") from error
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        self._verified[token] = (caller, float(claims["exp"]) + self.leeway, kid)
        return caller

    async def run(self, stop: asyncio.Event) -> None:
        """Follow revocations and refresh the key set on a schedule until ``stop``."""
        follower = asyncio.create_task(self.revocations.run(stop))
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.refresh_interval)
                if stop.is_set():
                    break
                try:
                    await self._refresh_keys(force=True)
                except Exception as error:  # the auth service may be down: keep the keys we have
                    log.warning("could not refresh the signing keys (%s); keeping the known ones", error)
        finally:
            await follower
