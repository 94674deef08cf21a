"""Caller assertions: only the trusted signers' assertions of exactly the request's caller, while
current, count; the gateway signs once per caller per window and services verify once per assertion."""

from __future__ import annotations

import time
import uuid

import pytest

from contracts.identity import Caller
from shared import callerproof
from shared.callerproof import CallerSigner, CallerUnverified, CallerVerifier, new_signing_key, public_key_of


def caller(roles: list[str] | None = None) -> Caller:
    return Caller(tenant_id=uuid.uuid4(), user_id=uuid.uuid4(), roles=roles or ["member"], session_id=uuid.uuid4())


def pair() -> tuple[CallerSigner, CallerVerifier]:
    key = new_signing_key()
    return CallerSigner(key), CallerVerifier(public_key_of(key))


def test_an_assertion_vouches_for_exactly_its_caller() -> None:
    signer, verifier = pair()
    alice = caller()
    verifier.check(alice, signer.assertion(alice))
    with pytest.raises(CallerUnverified):
        verifier.check(alice.model_copy(update={"roles": ["admin"]}), signer.assertion(alice))
    with pytest.raises(CallerUnverified):
        verifier.check(caller(), signer.assertion(alice))


def test_a_missing_a_garbled_or_a_foreign_assertion_is_refused() -> None:
    signer, verifier = pair()
    stranger, _ = pair()
    alice = caller()
    for assertion in (None, "", "x", "a.b", signer.assertion(alice)[:-3] + "AAA", stranger.assertion(alice)):
        with pytest.raises(CallerUnverified):
            verifier.check(alice, assertion)


def test_several_signers_may_be_trusted() -> None:
    gateway_key, operator_key = new_signing_key(), new_signing_key()
    verifier = CallerVerifier(f"{public_key_of(gateway_key)},{public_key_of(operator_key)}")
    alice = caller()
    verifier.check(alice, CallerSigner(gateway_key).assertion(alice))
    verifier.check(alice, CallerSigner(operator_key).assertion(alice))


def test_an_expired_assertion_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    signer, verifier = pair()
    alice = caller()
    assertion = signer.assertion(alice)
    verifier.check(alice, assertion)
    later = time.time() + callerproof.LIFETIME_SECONDS + 1
    monkeypatch.setattr(callerproof.time, "time", lambda: later)
    with pytest.raises(CallerUnverified):
        verifier.check(alice, assertion)  # cached, and still refused once expired


def test_the_gateway_signs_once_per_caller_per_window_and_services_verify_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signer, verifier = pair()
    alice = caller()
    first = signer.assertion(alice)
    assert signer.assertion(alice) == first
    verified: list[str] = []
    real = verifier._verify
    monkeypatch.setattr(verifier, "_verify", lambda a: verified.append(a) or real(a))
    for _ in range(100):
        verifier.check(alice, first)
    assert verified == [first]
    later = time.time() + callerproof.REUSE_SECONDS + 1
    monkeypatch.setattr(callerproof.time, "time", lambda: later)
    assert signer.assertion(alice) != first


def test_a_cached_assertion_still_vouches_only_for_its_caller_of_any_model_class() -> None:
    signer, verifier = pair()
    alice = caller()
    assertion = signer.assertion(alice)
    verifier.check(alice, assertion)  # now cached
    verifier.check(Caller.model_validate_json(alice.model_dump_json()), assertion)  # equal fields: the same caller

    class LooseCaller(Caller):
        pass

    verifier.check(LooseCaller(**alice.model_dump()), assertion)  # another class, compared by canonical JSON
    for other in (
        alice.model_copy(update={"roles": ["admin"]}),
        alice.model_copy(update={"user_id": uuid.uuid4()}),
        LooseCaller(**{**alice.model_dump(), "roles": ["admin"]}),
    ):
        with pytest.raises(CallerUnverified):
            verifier.check(other, assertion)


def test_the_gateway_finds_a_known_caller_object_without_encoding_it(monkeypatch: pytest.MonkeyPatch) -> None:
    signer, _ = pair()
    alice = caller()
    encoded: list[Caller] = []
    real = callerproof._caller_key
    monkeypatch.setattr(callerproof, "_caller_key", lambda c: encoded.append(c) or real(c))
    first = signer.assertion(alice)
    for _ in range(10):
        assert signer.assertion(alice) == first
    assert encoded == [alice]
    twin = Caller.model_validate_json(alice.model_dump_json())
    assert signer.assertion(twin) == first  # an equal caller in another object: found by its encoding
    assert len(encoded) == 2
