"""Stored values decoded once per distinct bytes, never stale, and bounded."""

from __future__ import annotations

import pytest

from shared.decoded import DecodedCache


def counting_decoder() -> tuple[DecodedCache[str], list[bytes]]:
    decoded: list[bytes] = []

    def decode(raw: bytes) -> str:
        decoded.append(raw)
        return raw.decode().upper()

    return DecodedCache(decode, size=3), decoded


def test_equal_bytes_decode_once_and_changed_bytes_decode_afresh() -> None:
    cache, decoded = counting_decoder()
    assert cache(b"alice") == "ALICE"
    assert cache(bytes(bytearray(b"alice"))) == "ALICE"  # equal bytes in another object
    assert cache(b"alice v2") == "ALICE V2"
    assert decoded == [b"alice", b"alice v2"]


def test_the_oldest_value_goes_first_past_the_size() -> None:
    cache, decoded = counting_decoder()
    for raw in (b"a", b"b", b"c", b"d"):
        cache(raw)
    assert len(cache) == 3
    cache(b"d")
    cache(b"b")
    assert decoded == [b"a", b"b", b"c", b"d"]
    cache(b"a")  # evicted: decoded again
    assert decoded[-1] == b"a" and len(cache) == 3


def test_a_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DecodedCache(bytes.decode, size=0)


def test_an_encoded_result_is_sent_exactly_as_its_model_would_be() -> None:
    import uuid
    from datetime import UTC, datetime

    from contracts.auth import UserPublic
    from contracts.envelope import Reply
    from shared.dispatch import Encoded, success

    now = datetime.now(UTC)
    user = UserPublic(
        id=uuid.uuid4(), email="ann@example.com", name="Ann", tenant_id=uuid.uuid4(), roles=["admin"], created_at=now
    )
    assert success(Encoded(user)) == success(user)
    assert Reply.model_validate_json(success(Encoded(user))).result == user.model_dump(mode="json")


def test_the_gateway_takes_a_success_result_as_the_service_framed_it() -> None:
    import pydantic_core

    from contracts.auth import UserPublic
    from contracts.envelope import ErrorCode
    from shared.bus import success_result
    from shared.dispatch import Encoded, failure, success
    from shared.errors import ServiceError

    user = UserPublic.model_validate(
        {
            "id": "0b7c5a4e-7c1e-4d0a-9a53-1b0a3e6f1c11",
            "email": "ann@example.com",
            "name": 'Ann "}"',
            "tenant_id": "1b7c5a4e-7c1e-4d0a-9a53-1b0a3e6f1c11",
            "roles": ["admin"],
            "created_at": "2026-12-05T06:33:01Z",
        }
    )
    for result in (user, Encoded(user), {"items": [1, 2], "next_cursor": None}, [], "text", 0):
        framed = success_result(success(result))
        expected = result.json if isinstance(result, Encoded) else pydantic_core.to_json(result)
        assert framed == expected, result
    assert success_result(success(None)) == b"null"
    assert success_result(failure(ServiceError(ErrorCode.NOT_FOUND, "gone"), "h")) is None
    assert success_result(b"not json") is None
