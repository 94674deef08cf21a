"""The audit service's key layout under ``("audit", …)`` and the transaction steps over it.

    ("audit", "rec", chain, seq)        → the record: canonical JSON with its hash (exported as stored)
    ("audit", "head", chain)            → {"seq", "hash"}: the newest record, read and written by every append
    ("audit", "seen", event_id)         → pack((chain, seq)): the event is recorded (idempotency)
    ("audit", "user", chain, user, seq) → ""  records about a user (actor or target): a member's listing
    ("audit", "cp", chain, seq)         → a signed checkpoint
    ("audit", "cp_last", chain)         → pack((seq,)): the newest checkpoint's seq
    ("audit", "cp_pending", chain, seq) → ""  a checkpoint not yet published on the checkpoint stream
    ("audit", "floor", chain)           → the checkpoint records up to which were pruned (the anchor)
    ("audit", "key", kid)               → a sealed signing key (shared.sealed_keys.SigningKey)

``chain`` is the tenant id (or the nil UUID for events that name no tenant). Records are written once
and never rewritten; pruning clears whole prefixes of a chain below a checkpoint. Every function takes
the transaction as its first argument and holds no awaits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fdb.tuple
import orjson
from fdb.subspace_impl import Subspace

from services.audit.chain import GENESIS_HASH, canonical
from services.audit.records import Prepared, seal
from shared.sealed_keys import SigningKey
from shared.store import Transaction

ROOT = Subspace(("audit",))
REC = ROOT["rec"]
HEAD = ROOT["head"]
SEEN = ROOT["seen"]
BY_USER = ROOT["user"]
CP = ROOT["cp"]
CP_LAST = ROOT["cp_last"]
CP_PENDING = ROOT["cp_pending"]
FLOOR = ROOT["floor"]
KEY = ROOT["key"]


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str


EMPTY = Head(0, GENESIS_HASH)


def pack_text(value: str) -> bytes:
    """``fdb.tuple.pack((value,))`` for a string, several times faster: the append path packs four
    keys per record. (Type code 0x02, UTF-8 with NUL escaped as 00 ff, then 00.)"""
    return b"\x02" + value.encode().replace(b"\x00", b"\x00\xff") + b"\x00"


def pack_seq(value: int) -> bytes:
    """``fdb.tuple.pack((value,))`` for an integer 0 <= value < 2**63 (type code 0x14 + byte length, big endian)."""
    length = (value.bit_length() + 7) // 8
    return bytes((0x14 + length,)) + value.to_bytes(length, "big")


def _key(space: Subspace, *parts: Any) -> bytes:
    key: bytes = space.pack(parts)
    return key


def head(tx: Transaction, chain: str) -> Head:
    raw = tx.get(_key(HEAD, chain))
    if raw is None:
        return EMPTY
    value = orjson.loads(raw)
    return Head(int(value["seq"]), str(value["hash"]))


def append(tx: Transaction, chain: str, events: Sequence[Prepared], recorded_at: str) -> tuple[int, Head]:
    """Append the events not recorded yet, in order, after the chain's head; returns how many were
    appended and the new head. Reading the head makes two appenders of one chain conflict (one retries)."""
    current = head(tx, chain)
    seq, prev = current.seq, current.hash
    appended = 0
    in_batch: set[str] = set()
    # Tuple encoding concatenates: the chain's prefixes are packed once, not once per key.
    records_prefix, users_prefix, seen_prefix = _key(REC, chain), _key(BY_USER, chain), SEEN.key()
    chain_part = pack_text(chain)
    seen_keys = [seen_prefix + pack_text(prepared.event_id) for prepared in events]
    # The markers read together: one query (and one check at commit) for the run, not one per event.
    recorded = tx.get_many(seen_keys)
    for prepared, seen_key, marker in zip(events, seen_keys, recorded, strict=True):
        if marker is not None or prepared.event_id in in_batch:
            continue
        in_batch.add(prepared.event_id)
        seq += 1
        prev, stored = seal(prepared, seq, prev, recorded_at)
        seq_part = pack_seq(seq)
        tx.set(records_prefix + seq_part, stored)
        tx.set(seen_key, chain_part + seq_part)
        for user in prepared.users:
            tx.set(users_prefix + pack_text(user) + seq_part, b"")
        appended += 1
    if appended:
        tx.set(_key(HEAD, chain), orjson.dumps({"seq": seq, "hash": prev}))
    return appended, Head(seq, prev)


def append_chains(tx: Transaction, appends: Mapping[str, Sequence[Prepared]], recorded_at: str) -> dict[str, int]:
    """``append`` for several chains in one transaction; how many each got."""
    return {chain: append(tx, chain, events, recorded_at)[0] for chain, events in appends.items()}


def record_raw(tx: Transaction, chain: str, seq: int) -> bytes | None:
    return tx.get(_key(REC, chain, seq))


def put_record_raw(tx: Transaction, chain: str, seq: int, raw: bytes) -> None:
    """Only for tests and tools that simulate a store-writer's tampering."""
    tx.set(_key(REC, chain, seq), raw)


def records(tx: Transaction, chain: str, after_seq: int, limit: int, through_seq: int | None = None) -> list[bytes]:
    """Stored records with seq > after_seq (and <= through_seq), in order."""
    end = _key(REC, chain, through_seq + 1) if through_seq is not None else REC.range((chain,)).stop
    rows = tx.get_range(_key(REC, chain, after_seq + 1), end, limit=limit)
    return [value for _, value in rows]


def user_seqs(tx: Transaction, chain: str, user: str, after_seq: int, limit: int) -> list[int]:
    rows = tx.get_range(_key(BY_USER, chain, user, after_seq + 1), BY_USER.range((chain, user)).stop, limit=limit)
    return [int(BY_USER.unpack(key)[2]) for key, _ in rows]


def seen(tx: Transaction, event_id: str) -> tuple[str, int] | None:
    raw = tx.get(_key(SEEN, event_id))
    if raw is None:
        return None
    chain, seq = fdb.tuple.unpack(raw)
    return str(chain), int(seq)


# Checkpoints.
def last_checkpoint_seq(tx: Transaction, chain: str) -> int:
    raw = tx.get(_key(CP_LAST, chain))
    return 0 if raw is None else int(fdb.tuple.unpack(raw)[0])


def put_checkpoint(tx: Transaction, checkpoint: dict[str, Any]) -> None:
    chain, seq = checkpoint["tenant_id"], int(checkpoint["seq"])
    tx.set(_key(CP, chain, seq), canonical(checkpoint))
    tx.set(_key(CP_LAST, chain), fdb.tuple.pack((seq,)))
    tx.set(_key(CP_PENDING, chain, seq), b"")


def checkpoint(tx: Transaction, chain: str, seq: int) -> dict[str, Any] | None:
    raw = tx.get(_key(CP, chain, seq))
    return None if raw is None else dict(orjson.loads(raw))


def checkpoints(tx: Transaction, chain: str, after_seq: int, limit: int) -> list[bytes]:
    rows = tx.get_range(_key(CP, chain, after_seq + 1), CP.range((chain,)).stop, limit=limit)
    return [value for _, value in rows]


def pending_checkpoints(tx: Transaction, limit: int) -> list[dict[str, Any]]:
    found = []
    for key, _ in tx.get_range(CP_PENDING.range().start, CP_PENDING.range().stop, limit=limit):
        chain, seq = CP_PENDING.unpack(key)
        stored = checkpoint(tx, str(chain), int(seq))
        if stored is not None:
            found.append(stored)
        else:
            tx.clear(key)
    return found


def published(tx: Transaction, chain: str, seq: int) -> None:
    tx.clear(_key(CP_PENDING, chain, seq))


def chains(tx: Transaction, after: str | None, limit: int) -> list[tuple[str, Head]]:
    """Every chain's head, in chain order, after ``after``."""
    begin = _key(HEAD, after) + b"\x00" if after is not None else HEAD.range().start
    rows = tx.get_range(begin, HEAD.range().stop, limit=limit)
    heads = []
    for key, value in rows:
        parsed = orjson.loads(value)
        heads.append((str(HEAD.unpack(key)[0]), Head(int(parsed["seq"]), str(parsed["hash"]))))
    return heads


# Pruning.
def floor(tx: Transaction, chain: str) -> dict[str, Any] | None:
    raw = tx.get(_key(FLOOR, chain))
    return None if raw is None else dict(orjson.loads(raw))


def prune_step(tx: Transaction, chain: str, anchor: dict[str, Any]) -> int:
    """Remove the records above the current floor up to the anchor checkpoint's seq, with their markers
    and index entries, and make the anchor the floor: the chain verifies before and after. Checkpoints
    come every N records, so one step is at most about N records."""
    through = int(anchor["seq"])
    current = floor(tx, chain)
    after = int(current["seq"]) if current is not None else 0
    rows = tx.get_range(_key(REC, chain, after + 1), _key(REC, chain, through + 1))
    for key, value in rows:
        record = orjson.loads(value)
        seq = int(REC.unpack(key)[1])
        tx.clear(_key(SEEN, str(record["id"])))
        users = {record["actor"].get("user_id"), str(record.get("target") or "").removeprefix("user:")}
        for user in users:
            if user:
                tx.clear(_key(BY_USER, chain, user, seq))
        tx.clear(key)
    tx.set(_key(FLOOR, chain), canonical(anchor))
    return len(rows)


def checkpoints_between(tx: Transaction, chain: str, after_seq: int, through_seq: int) -> list[dict[str, Any]]:
    rows = tx.get_range(_key(CP, chain, after_seq + 1), _key(CP, chain, through_seq + 1))
    return [dict(orjson.loads(value)) for _, value in rows]


def checkpoint_at_or_before(tx: Transaction, chain: str, seq: int) -> dict[str, Any] | None:
    rows = tx.get_range(CP.range((chain,)).start, _key(CP, chain, seq + 1), limit=1, reverse=True)
    return dict(orjson.loads(rows[0][1])) if rows else None


# Signing keys.
def signing_keys(tx: Transaction) -> list[SigningKey]:
    rows = tx.get_range(KEY.range().start, KEY.range().stop)
    return [SigningKey.model_validate_json(value) for _, value in rows]


def put_signing_key(tx: Transaction, key: SigningKey) -> None:
    tx.set(_key(KEY, key.kid), key.model_dump_json().encode())
