"""The authorization callout's answers, request by request: only a client that signed the server's nonce
with a key provisioning issued gets a user authorization, with its monitor's rights and an expiry; the
request must be the server's. (tests/bus/test_monitor_credentials.py runs the same on a real server.)"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import nkeys
import pytest

from shared import natsjwt
from shared.busauth import new_account_seed, new_user_seed, public_key_of
from shared.buscallout import CalloutResponder
from shared.buspolicy import Role, monitor_role

SUBJECT = "fevt.t.u.w"
NONCE = "nonce-1De-CJW"


def keypair(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(nkeys.encode_seed(secrets.token_bytes(32), prefix)))


def signed_nonce(seed: bytes, nonce: str = NONCE) -> str:
    return base64.b64encode(bytes(nkeys.from_seed(bytearray(seed)).sign(nonce.encode()))).decode()


def request(server: nkeys.KeyPair, *, nkey: str, sig: str) -> bytes:
    server_id = server.public_key.decode()
    claims = {
        "aud": "nats-authorization-request",
        "sub": "AAX465P26LZZDNBQUC3I6NFYZ37YRZAFS4XGHUM3Q5F23CR6DGWMGAMS",
        "nats": {
            "server_id": {"id": server_id, "name": "test"},
            "user_nkey": "UBGCJGIL3OZFB3QEANV7O6VSDL3XK35PLHFF2RY6MXIMUQWYUT5UFPTB",
            "client_info": {"host": "127.0.0.1", "nonce": NONCE},
            "connect_opts": {"nkey": nkey, "sig": sig},
            "type": "authorization_request",
            "version": 2,
        },
    }
    return natsjwt.encode(claims, server).encode()


@pytest.fixture
def monitor_seed() -> bytes:
    return new_user_seed()


@pytest.fixture
def responder(monitor_seed: bytes) -> CalloutResponder:
    issued = {public_key_of(monitor_seed): monitor_role("monitor-w", SUBJECT)}

    async def authorize(public_key: str) -> Role | None:
        return issued.get(public_key)

    return CalloutResponder(new_account_seed(), authorize, ttl=60)


def answer_of(token: bytes, responder: CalloutResponder) -> dict[str, Any]:
    claims = natsjwt.decode(token.decode(), issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)
    assert claims["iss"] == responder.issuer.public_key.decode()
    answer: dict[str, Any] = claims["nats"]
    return answer


async def test_an_issued_key_that_signed_the_nonce_gets_its_monitor_rights(
    responder: CalloutResponder, monitor_seed: bytes
) -> None:
    server = keypair(nkeys.PREFIX_BYTE_SERVER)
    token = await responder.answer(request(server, nkey=public_key_of(monitor_seed), sig=signed_nonce(monitor_seed)))
    response = natsjwt.decode(token.decode(), issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)
    assert response["aud"] == server.public_key.decode()
    assert response["sub"] == "UBGCJGIL3OZFB3QEANV7O6VSDL3XK35PLHFF2RY6MXIMUQWYUT5UFPTB"
    assert "error" not in response["nats"]
    user = natsjwt.decode(response["nats"]["jwt"], issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)
    assert user["sub"] == response["sub"] and user["aud"] == "$G" and user["name"] == "monitor-w"
    assert user["nats"]["pub"]["allow"] == [SUBJECT]
    assert user["nats"]["sub"]["allow"] == ["_INBOX.monitor-w.>"]
    assert time.time() + 50 < user["exp"] <= time.time() + 61


async def test_a_signature_by_another_key_is_refused(responder: CalloutResponder, monitor_seed: bytes) -> None:
    """Someone who knows a monitor's public key but not its seed gets nothing."""
    server = keypair(nkeys.PREFIX_BYTE_SERVER)
    forged = signed_nonce(new_user_seed())
    answer = answer_of(await responder.answer(request(server, nkey=public_key_of(monitor_seed), sig=forged)), responder)
    assert "jwt" not in answer and "signed" in answer["error"]


async def test_a_key_never_issued_and_a_missing_key_are_refused(responder: CalloutResponder) -> None:
    server = keypair(nkeys.PREFIX_BYTE_SERVER)
    stranger = new_user_seed()
    answer = answer_of(
        await responder.answer(request(server, nkey=public_key_of(stranger), sig=signed_nonce(stranger))), responder
    )
    assert "jwt" not in answer and answer["error"] == "unknown or revoked key"
    answer = answer_of(await responder.answer(request(server, nkey="", sig="")), responder)
    assert "jwt" not in answer


async def test_a_request_not_signed_by_a_server_is_not_answered(
    responder: CalloutResponder, monitor_seed: bytes
) -> None:
    impostor = keypair(nkeys.PREFIX_BYTE_USER)  # anyone on the bus could sign with a user key
    with pytest.raises(natsjwt.InvalidJwt):
        await responder.answer(request(impostor, nkey=public_key_of(monitor_seed), sig=signed_nonce(monitor_seed)))


def test_a_jwt_altered_after_signing_or_expired_is_refused() -> None:
    signer = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    token = natsjwt.encode({"sub": "x", "exp": int(time.time()) + 60, "nats": {"pub": {"allow": ["a"]}}}, signer)
    assert natsjwt.decode(token, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)["nats"]["pub"]["allow"] == ["a"]
    header, claims, signature = token.split(".")
    widened = base64.urlsafe_b64encode(base64.urlsafe_b64decode(claims + "==").replace(b'["a"]', b'[">"]')).rstrip(b"=")
    with pytest.raises(natsjwt.InvalidJwt):
        natsjwt.decode(f"{header}.{widened.decode()}.{signature}", issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)
    expired = natsjwt.encode({"sub": "x", "exp": int(time.time()) - 1}, signer)
    with pytest.raises(natsjwt.InvalidJwt):
        natsjwt.decode(expired, issuer_prefix=nkeys.PREFIX_BYTE_ACCOUNT)
    with pytest.raises(natsjwt.InvalidJwt):  # signed by an account, expected from a server
        natsjwt.decode(token, issuer_prefix=nkeys.PREFIX_BYTE_SERVER)


async def test_a_lookup_that_fails_is_a_refusal_not_a_silence(monitor_seed: bytes) -> None:
    """The server would otherwise wait out its timeout on every connection while the store is down."""

    async def broken(public_key: str) -> Role | None:
        raise OSError("store unavailable")

    responder = CalloutResponder(new_account_seed(), broken, ttl=60)
    server = keypair(nkeys.PREFIX_BYTE_SERVER)
    token = await responder.answer(request(server, nkey=public_key_of(monitor_seed), sig=signed_nonce(monitor_seed)))
    answer = answer_of(token, responder)
    assert "jwt" not in answer and "unavailable" in answer["error"]
