"""The hash chain and checkpoint signatures: pure functions, shared by the service and the offline
verifier (no bus, no store, no pydantic).

Canonical form of a record (what ``hash`` covers): the record's JSON object without its ``hash`` key,
keys sorted, no whitespace, UTF-8, non-ASCII characters as themselves, i.e. Python's
``json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()``. The service
writes every key (absent values are ``null``), timestamps as RFC 3339 UTC with microseconds and ``Z``
(``2026-11-25T19:00:00.000000Z``), UUIDs lowercase, and only strings, integers, booleans, null,
lists and objects (a non-integer number in an event's data is recorded as its decimal string), so that
definition and ``orjson.dumps(record, option=OPT_SORT_KEYS)`` give the same bytes.

    hash = hex(SHA-256(ascii(prev_hash) ‖ canonical(record)))      prev_hash of seq 1 = 64 zeros

A checkpoint signs ``canonical({tenant_id, seq, hash, signed_at, kid})`` with Ed25519.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS_HASH = "0" * 64
NO_TENANT = "00000000-0000-0000-0000-000000000000"  # the chain of events that name no tenant
_SIGNED_FIELDS = ("tenant_id", "seq", "hash", "signed_at", "kid")


def canonical(value: Mapping[str, Any]) -> bytes:
    """The canonical JSON bytes of a record or checkpoint body (see the module docstring)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def canonical_reference(value: Mapping[str, Any]) -> bytes:
    """The same bytes from the standard library: the definition a verifier in a few lines uses."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def timestamp(at: datetime) -> str:
    """RFC 3339 UTC with microseconds and Z."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    """``body`` is the record without ``hash``."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(body)).hexdigest()


def seal_split(before: bytes, after: Mapping[str, Any], prev_hash: str) -> tuple[str, bytes]:
    """The hash and the stored bytes (canonical, with ``hash``) of the record whose keys sorting before
    ``"hash"`` are ``before`` (their canonical JSON object, serialised once when the event was read) and
    whose other keys are ``after``: the same bytes as ``canonical(seal_record(...))`` without serialising
    the record twice. Both parts hold at least one key."""
    front, tail = before[:-1], canonical(after)[1:]  # '{"actor":…,"details":…' and '"id":…}'
    hash_ = hashlib.sha256(prev_hash.encode("ascii") + front + b"," + tail).hexdigest()
    return hash_, b"".join((front, b',"hash":"', hash_.encode("ascii"), b'",', tail))


def seal_record(body: dict[str, Any]) -> dict[str, Any]:
    """The record with its hash (``body`` carries ``prev_hash``)."""
    return {**body, "hash": record_hash(body["prev_hash"], body)}


def check_record(record: Mapping[str, Any]) -> bool:
    body = {key: value for key, value in record.items() if key != "hash"}
    return record_hash(str(record.get("prev_hash", "")), body) == record.get("hash")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def checkpoint_message(checkpoint: Mapping[str, Any]) -> bytes:
    return canonical({name: checkpoint[name] for name in _SIGNED_FIELDS})


def sign_checkpoint(
    private: Ed25519PrivateKey, kid: str, tenant_id: str, seq: int, hash_: str, signed_at: datetime
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenant_id": tenant_id,
        "seq": seq,
        "hash": hash_,
        "signed_at": timestamp(signed_at),
        "kid": kid,
    }
    return {**body, "signature": _b64url(private.sign(checkpoint_message(body)))}


def public_keys(jwks: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """kid → key from a JWK set (``{"keys": [...]}``) or one JWK (OKP, Ed25519)."""
    entries = jwks.get("keys", [jwks])
    keys = {}
    for jwk in entries:
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            keys[str(jwk["kid"])] = Ed25519PublicKey.from_public_bytes(_unb64url(str(jwk["x"])))
    return keys


def checkpoint_signed(checkpoint: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> bool:
    key = keys.get(str(checkpoint.get("kid")))
    if key is None:
        return False
    try:
        key.verify(_unb64url(str(checkpoint["signature"])), checkpoint_message(checkpoint))
    except (InvalidSignature, KeyError, ValueError):
        return False
    return True


@dataclass
class Verification:
    ok: bool = True
    checked: int = 0
    head_seq: int | None = None
    head_hash: str | None = None
    first_bad_seq: int | None = None
    reason: str | None = None
    checkpoints_checked: int = 0


@dataclass
class ChainVerifier:
    """Feed a tenant's records in sequence order; ``finish`` says whether the chain, and every
    checkpoint given, hold. ``prev_hash`` is the hash the first record must follow when it is not seq 1
    (the record before the range, or a pruning anchor); else a checkpoint at ``first seq - 1`` anchors it.
    ``start_seq``, when known, is the seq the first record must have."""

    tenant_id: str
    keys: Mapping[str, Ed25519PublicKey]
    checkpoints: Iterable[Mapping[str, Any]] = ()
    prev_hash: str | None = None
    start_seq: int | None = None
    result: Verification = field(default_factory=Verification)
    _by_seq: dict[int, list[Mapping[str, Any]]] = field(default_factory=dict)
    _expected: int | None = None

    def __post_init__(self) -> None:
        bad: list[tuple[int, str]] = []
        for checkpoint in self.checkpoints:
            seq = int(checkpoint["seq"])
            if checkpoint.get("tenant_id") != self.tenant_id:
                bad.append((seq, f"the checkpoint at seq {seq} is for another tenant"))
            elif not checkpoint_signed(checkpoint, self.keys):
                bad.append((seq, f"the checkpoint at seq {seq} has no valid signature by a published audit key"))
            else:
                self._by_seq.setdefault(seq, []).append(checkpoint)
        if bad:
            seq, reason = min(bad)
            self._fail(seq, reason)

    def _fail(self, seq: int, reason: str) -> None:
        result = self.result
        if result.ok or (result.first_bad_seq is not None and seq < result.first_bad_seq):
            result.first_bad_seq, result.reason = seq, reason
        result.ok = False

    def _check_checkpoints(self, seq: int, hash_: str) -> None:
        for checkpoint in self._by_seq.pop(seq, []):
            self.result.checkpoints_checked += 1
            if checkpoint["hash"] != hash_:
                self._fail(seq, f"the chain at seq {seq} differs from its signed checkpoint: it was rewritten")

    def feed(self, record: Mapping[str, Any]) -> bool:
        """Check one record; False once the chain is known bad (the caller may stop reading)."""
        seq = record.get("seq")
        if not isinstance(seq, int):
            self._fail(self._expected or 1, "a record has no integer seq")
            return False
        if self._expected is None and self.start_seq is not None and seq != self.start_seq:
            self._fail(self.start_seq, f"seq {self.start_seq} is missing (the next record is seq {seq})")
            return False
        if self._expected is None:
            if self.prev_hash is None:
                if seq == 1:
                    self.prev_hash = GENESIS_HASH
                else:
                    anchors = self._by_seq.get(seq - 1, [])
                    if not anchors:
                        self._fail(seq, f"the first record is seq {seq} and no signed checkpoint anchors seq {seq - 1}")
                        return False
                    self.prev_hash = str(anchors[0]["hash"])
                    self._check_checkpoints(seq - 1, self.prev_hash)
        elif seq != self._expected:
            self._fail(self._expected, f"seq {self._expected} is missing (the next record is seq {seq})")
            return False
        tenant = record.get("tenant_id") or NO_TENANT
        if tenant != self.tenant_id:
            self._fail(seq, f"seq {seq} belongs to another tenant")
        elif record.get("prev_hash") != self.prev_hash:
            self._fail(seq, f"seq {seq} does not follow the hash of seq {seq - 1}")
        elif not check_record(record):
            self._fail(seq, f"seq {seq} does not match its hash: it was altered")
        self.result.checked += 1
        hash_ = str(record.get("hash"))
        self._check_checkpoints(seq, hash_)
        self.prev_hash, self._expected = hash_, seq + 1
        self.result.head_seq, self.result.head_hash = seq, hash_
        return self.result.ok

    def finish(self) -> Verification:
        """Checkpoints past the last record mean records were removed from the end."""
        head = self.result.head_seq or 0
        beyond = sorted(seq for seq in self._by_seq if seq > head)
        if beyond and self.result.ok:
            self._fail(head + 1, f"a signed checkpoint names seq {beyond[-1]}, but the chain ends at seq {head}")
        self._by_seq.clear()
        return self.result
