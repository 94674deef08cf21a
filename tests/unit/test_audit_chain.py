"""The pure hash chain: canonical form, hashes, signatures, secret scrubbing."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from contracts.events import Actor, Event
from services.audit.chain import (
    GENESIS_HASH,
    ChainVerifier,
    canonical,
    canonical_reference,
    public_keys,
    seal_record,
    sign_checkpoint,
)
from services.audit.records import complete, prepare, seal


def _chain(count: int) -> list[dict[str, object]]:
    records, prev = [], GENESIS_HASH
    for seq in range(1, count + 1):
        event = Event(type="test.x", actor=Actor(kind="human", ip="::1"), data={"n": seq, "name": "é✓"})
        record = seal_record(
            complete(prepare(event.model_dump_json().encode()), seq, prev, "2026-01-01T00:00:00.000000Z")
        )
        records.append(record)
        prev = str(record["hash"])
    return records


def test_the_canonical_form_is_the_standard_librarys_sorted_compact_json() -> None:
    for record in _chain(3):
        body = {k: v for k, v in record.items() if k != "hash"}
        assert canonical(body) == canonical_reference(body)
        # The few lines a third party needs:
        expected = hashlib.sha256(
            str(body["prev_hash"]).encode()
            + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        ).hexdigest()
        assert record["hash"] == expected


def test_a_chain_verifies_and_any_change_names_its_seq() -> None:
    records = _chain(5)
    tenant = "00000000-0000-0000-0000-000000000000"
    verifier = ChainVerifier(tenant_id=tenant, keys={})
    assert all(verifier.feed(r) for r in records) and verifier.finish().ok
    altered = [dict(r) for r in records]
    altered[2]["target"] = "thing:else"
    verifier = ChainVerifier(tenant_id=tenant, keys={})
    for record in altered:
        verifier.feed(record)
    assert verifier.finish().first_bad_seq == 3
    verifier = ChainVerifier(tenant_id=tenant, keys={})
    for record in records[:1] + records[2:]:
        verifier.feed(record)
    assert verifier.finish().first_bad_seq == 2


def test_checkpoints_need_a_published_key_and_anchor_a_pruned_chain() -> None:
    records = _chain(6)
    tenant = "00000000-0000-0000-0000-000000000000"
    key = Ed25519PrivateKey.generate()
    jwk = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "k1"}
    keys = public_keys({"keys": [jwk]})
    anchor = sign_checkpoint(key, "k1", tenant, 3, str(records[2]["hash"]), datetime.now(UTC))
    verifier = ChainVerifier(tenant_id=tenant, keys=keys, checkpoints=[anchor])
    assert all(verifier.feed(r) for r in records[3:]) and verifier.finish().ok
    unanchored = ChainVerifier(tenant_id=tenant, keys=keys)
    assert not unanchored.feed(records[3])
    # A checkpoint with the right hash but not signed by a published key fails the whole chain.
    honest = sign_checkpoint(key, "k1", tenant, 3, str(records[2]["hash"]), datetime.now(UTC))
    forged = sign_checkpoint(Ed25519PrivateKey.generate(), "k1", tenant, 3, str(records[2]["hash"]), datetime.now(UTC))
    for checkpoint, valid in ((honest, True), (forged, False)):
        verifier = ChainVerifier(tenant_id=tenant, keys=keys, checkpoints=[checkpoint])
        for record in records:
            verifier.feed(record)
        assert verifier.finish().ok is valid
    other = sign_checkpoint(
        key, "k1", "11111111-1111-1111-1111-111111111111", 3, str(records[2]["hash"]), datetime.now(UTC)
    )
    assert not ChainVerifier(tenant_id=tenant, keys=keys, checkpoints=[other]).finish().ok


def test_secrets_are_scrubbed_and_numbers_made_canonical() -> None:
    event = Event(type="t.x", data={"Password": "p", "x_token": "t", "keep": [1, 2.5, {"secret": 1}]})
    for _ in range(2):  # the second time from the remembered verdicts
        body = prepare(event.model_dump_json().encode()).body
        assert body["details"] == {"keep": [1, "2.5", {}]}


def test_the_fast_key_packing_is_the_tuple_layers() -> None:
    import fdb.tuple

    from services.audit.repository import pack_seq, pack_text

    for number in (0, 1, 255, 256, 65_535, 10**9, 2**63 - 1):
        assert pack_seq(number) == fdb.tuple.pack((number,))
    for text in ("", "0f0e-…", "a\x00b", "00000000-0000-0000-0000-000000000000"):
        assert pack_text(text) == fdb.tuple.pack((text,))


def test_details_too_large_to_store_are_replaced_by_their_size() -> None:
    event = Event(type="t.x", data={"blob": "x" * 200_000})
    details = prepare(event.model_dump_json().encode()).body["details"]
    assert details["truncated"] is True and details["bytes"] > 200_000


def test_a_record_sealed_from_its_parts_is_the_canonical_record_with_its_hash() -> None:
    """``seal`` splices the hash into bytes serialised in two parts; they must be exactly the canonical
    bytes of the whole record, whatever the event holds."""
    events = [
        Event(type="t.x", actor=Actor(kind="human", ip="::1"), data={"n": 1, "name": 'é✓ \u2028 "q"'}),
        Event(type="t.y", tenant_id=None, actor=Actor(), target=None, data={}),
        Event(type="t.z", data={"z": {"b": [1, 2.5, None, True, {"hash": "h", "id": "i", "a": "a"}]}, "a": "x" * 300}),
        Event(type="t.w", data={"blob": "x" * 200_000}),
    ]
    prev = GENESIS_HASH
    for seq, event in enumerate(events, start=1):
        body = event.model_dump(mode="json")
        body.pop("occurred_at")  # absent: the record takes recorded_at
        prepared = prepare(json.dumps(body).encode())
        expected = seal_record(complete(prepared, seq, prev, "2026-01-01T00:00:00.000000Z"))
        hash_, stored = seal(prepared, seq, prev, "2026-01-01T00:00:00.000000Z")
        assert (hash_, stored) == (expected["hash"], canonical(expected))
        assert stored == canonical_reference(expected)
        prev = hash_


def test_remembered_secret_verdicts_stay_bounded_and_keys_past_them_are_still_scrubbed() -> None:
    from services.audit import records

    data: dict[str, object] = {f"k{index}": 1 for index in range(records._VERDICTS_MAX + 100)}
    data["x" * 1000] = 1
    data["late_token"] = "t"  # after the bound is reached: judged, not remembered
    details = prepare(Event(type="t.x", data=data).model_dump_json().encode()).body["details"]
    assert "late_token" not in details and "k0" in details and "x" * 1000 in details
    assert len(records._VERDICTS) <= records._VERDICTS_MAX
    assert "x" * 1000 not in records._VERDICTS
