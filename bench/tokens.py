"""Token benchmark: an authenticated route against the public bus ping, plus in-process EdDSA verify."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from bench.common import Options, Section, fmt, log, median, ratio, table
from bench.gateway import CONNECTIONS, HEADERS, cpu_note, generator_name, measure, row
from bench.loadgen import RequestSpec
from bench.system import CpuMeter, System, register_and_login

ISSUER = "coditect-auth"
AUDIENCE = "coditect-api"
REQUIRED = ["iss", "aud", "sub", "tid", "sid", "iat", "exp", "jti"]


def _per_call_us(fn: Callable[[], object], batch: int, batches: int) -> float:
    fn()
    samples = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - started) / batch * 1e6)
    return median(samples)


def micro(quick: bool) -> tuple[float, float, float, str]:
    """µs per PyJWT EdDSA verify and per gateway ``JwksVerifier.verify`` (keys preloaded)."""
    import secrets

    import jwt

    from services.auth.keys import AccessClaims, KeyEncryptionKey, new_signing_key, sign_access_token, utcnow

    key = new_signing_key(utcnow(), KeyEncryptionKey(secrets.token_bytes(32), source="bench"))
    claims = AccessClaims(user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), session_id=uuid.uuid4(), roles=["admin"])
    token = sign_access_token(key, claims, issuer=ISSUER, audience=AUDIENCE, now=utcnow(), ttl=timedelta(minutes=5))
    public = jwt.PyJWK(key.public_jwk)
    batch, batches = (300, 3) if quick else (2000, 7)

    def decode() -> object:
        return jwt.decode(
            token,
            key=public.key,
            algorithms=["EdDSA"],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=30,
            options={"require": REQUIRED},
        )

    pyjwt_us = _per_call_us(decode, batch, batches)

    note = ""
    try:
        from services.gateway.tokens import JwksVerifier

        bus = None  # the keys are preloaded below: verify never reaches the bus
        verifier = JwksVerifier(
            bus,  # type: ignore[arg-type]
            issuer=ISSUER,
            audience=AUDIENCE,
            leeway=30,
            access_ttl=300,
            refresh_min_interval=5.0,
            revocation_stale_after=float("inf"),
        )
        verifier._keys = {key.kid: public}
        verifier._fetched_at = time.monotonic()
        verifier.revocations._confirmed_at = time.monotonic()  # normally set once the stream is caught up
        loop = asyncio.new_event_loop()

        def first_sight() -> object:
            verifier._verified.clear()  # a token the gateway has not verified before
            return loop.run_until_complete(verifier.verify(token))

        try:
            cached_us = _per_call_us(lambda: loop.run_until_complete(verifier.verify(token)), batch, batches)
            verifier_us = _per_call_us(first_sight, batch, batches)
            empty_us = _per_call_us(lambda: loop.run_until_complete(asyncio.sleep(0)), batch, batches)
        finally:
            loop.close()
        verifier_us -= empty_us  # the cost of driving the event loop once, measured alongside
        cached_us -= empty_us
    except Exception as error:  # the gateway's verifier changed: report it, keep the rest
        verifier_us = cached_us = float("nan")
        note = f" (could not measure `JwksVerifier.verify`: {type(error).__name__}: {error})"
    return pyjwt_us, verifier_us, cached_us, note


def run(options: Options, system: System) -> Section:
    duration = 2.0 if options.quick else 5.0
    rounds = 1 if options.quick else 3
    log("tokens: PyJWT EdDSA micro-benchmark")
    pyjwt_us, verifier_us, cached_us, note = micro(options.quick)
    log(f"tokens: PyJWT verify {pyjwt_us:.1f} µs, JwksVerifier.verify {verifier_us:.1f} µs")
    email = f"bench-tokens-{secrets.token_hex(4)}@example.com"
    token = register_and_login(system.base, email, "bench-password-123")
    targets = {
        "a": RequestSpec(f"{system.base}/auth/whoami", headers={"Authorization": f"Bearer {token}"}),
        "b": RequestSpec(f"{system.base}/health"),
        "c": RequestSpec(f"{system.base}/auth/devices", headers={"Authorization": f"Bearer {token}"}),
    }
    results = measure(
        targets, options, CpuMeter(system), connections=CONNECTIONS, duration=duration, rounds=rounds, label="tokens"
    )
    rps = {name: median(x.rps for x in m.loads) for name, m in results.items()}
    p50 = {name: median(x.p50_ms for x in m.loads) for name, m in results.items()}
    section = Section("tokens", "tokens — access-token check at the gateway")
    section.facts = [
        f"load generator: {generator_name(options)}; {CONNECTIONS} connections (keep-alive)",
        f"runs: {rounds} x {duration:g} s per HTTP target (order rotating); micro-benchmarks: median of "
        f"{3 if options.quick else 7} batches of {300 if options.quick else 2000} calls, one thread",
        "token: a real access token (Ed25519 / EdDSA) of a freshly registered user with one device",
    ]
    section.body = [
        *table(
            HEADERS,
            [
                row(
                    "(a) `GET /api/v5/auth/whoami` + Bearer token",
                    "gateway middlewares + token check (verified-token cache after the first request, deny set) "
                    "→ the caller as JSON; no bus",
                    results["a"],
                ),
                row(
                    "(b) `GET /api/v5/health`, no token",
                    "gateway middlewares → a constant JSON body; no bus",
                    results["b"],
                ),
                row(
                    "(c) `GET /api/v5/auth/devices` + Bearer token",
                    "token check → NATS → auth service `list_devices` (a store range read) → back",
                    results["c"],
                ),
            ],
        ),
        "",
        f"(a)/(b) req/s = {ratio(rps['a'], rps['b'])}; p50 (a)/(b) = {ratio(p50['a'], p50['b'], 1)}x: "
        "the cost of authenticating a request with a token the gateway has seen before.",
        "",
        *table(
            ["micro-benchmark (in-process)", "what it includes", "µs per call", "calls/s on one core"],
            [
                [
                    "(d) PyJWT `jwt.decode` EdDSA",
                    "Ed25519 signature check + JSON/base64 decode + iss/aud/exp/"
                    "required-claims checks, key object already loaded",
                    fmt(pyjwt_us, 1),
                    fmt(1e6 / pyjwt_us),
                ],
                [
                    "(e) gateway `JwksVerifier.verify`, first sight of a token",
                    "(d) + header parse, key lookup by kid, pydantic `Caller`, "
                    "deny-set check (keys preloaded, no bus; event-loop step subtracted)",
                    fmt(verifier_us, 1),
                    fmt(1e6 / verifier_us) if verifier_us == verifier_us and verifier_us > 0 else "n/a",
                ],
                [
                    "(f) gateway `JwksVerifier.verify`, token seen before",
                    "verified-token cache hit + expiry and deny-set checks (what a client's next requests cost)",
                    fmt(cached_us, 1),
                    fmt(1e6 / cached_us) if cached_us == cached_us and cached_us > 0 else "n/a",
                ],
            ],
        ),
        "",
        f"Verifying every token in full at (c)'s rate would cost about {fmt(rps['c'] * verifier_us / 1e4, 1)}% "
        f"of one core (rate x (e)){note}.",
        "",
        cpu_note(),
    ]
    return section
