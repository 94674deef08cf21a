"""From a domain event (the JSON of ``contracts.events.Event``) to the body of an audit record: plain
functions, no store, no bus.

Read with orjson and checked field by field rather than through the pydantic model: at ten thousand
records a second the model's validation was the largest single cost, and the record needs the
canonical strings (lowercase UUIDs, UTC timestamps with microseconds) anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from services.audit.chain import NO_TENANT, canonical, seal_split, timestamp

# Never recorded, whatever event carries them (events should not; this is the second line).
SECRET_KEYS = frozenset(
    {
        "password",
        "new_password",
        "current_password",
        "password_hash",
        "token",
        "access_token",
        "refresh_token",
        "device_token",
        "id_token",
        "secret",
        "client_secret",
        "api_key",
        "authorization",
        "cookie",
        "private_key",
    }
)
_SECRET_SUFFIXES = ("_token", "_password", "_secret")
_ACTOR_KINDS = frozenset({"human", "agent", "system"})
_OUTCOMES = frozenset({"success", "failure"})
_INT64 = 2**63
DETAILS_MAX_BYTES = 64_000
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


class NotAnEvent(ValueError):
    """The message cannot be read as an event: acknowledged and logged, never recorded."""


# Verdicts of is_secret by key: events repeat the same few keys, and lowering and testing each one was
# much of the walk over ``data``. Bounded in count and key length: keys in ``data`` may come from users.
_VERDICTS: dict[str, bool] = {}
_VERDICTS_MAX = 4096
_VERDICT_KEY_MAX = 64


def is_secret(key: str) -> bool:
    verdict = _VERDICTS.get(key)
    if verdict is None:
        lowered = key.lower()
        verdict = lowered in SECRET_KEYS or lowered.endswith(_SECRET_SUFFIXES)
        if len(_VERDICTS) < _VERDICTS_MAX and len(key) <= _VERDICT_KEY_MAX:
            _VERDICTS[key] = verdict
    return verdict


def scrub(value: Any) -> Any:
    """``value`` (JSON as orjson reads it: string keys) without secret keys, with every number an integer
    or a decimal string (see chain.py)."""
    kind = type(value)
    if kind is dict:
        clean = {}
        for key, item in value.items():
            if _VERDICTS.get(key) is False or not is_secret(key):
                # Strings, the common case, without a call.
                clean[key] = item if type(item) is str or item is None else scrub(item)
        return clean
    if kind is str or kind is bool or value is None:
        return value
    if kind is list:
        return [scrub(item) for item in value]
    if kind is int:
        return value if -_INT64 <= value < _INT64 else str(value)
    return repr(value) if kind is float else str(value)


def _uuid(value: Any, name: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value  # the common case, without building a UUID
    try:
        return str(UUID(str(value)))
    except ValueError as error:
        raise NotAnEvent(f"{name} is not a UUID") from error


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _bounded(details: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The details and their canonical JSON. Details too large for one stored value (FoundationDB:
    100 kB) are replaced by their size: a record that can never be written would stop the trail."""
    encoded = canonical(details)
    if len(encoded) <= DETAILS_MAX_BYTES:
        return details, encoded
    replaced = {"truncated": True, "bytes": len(encoded)}
    return replaced, canonical(replaced)


def _occurred_at(value: Any) -> str | None:
    """The event's time as RFC 3339 UTC with microseconds (None if absent)."""
    if not value:
        return None
    text = str(value)
    if _CANONICAL_TIME.fullmatch(text):
        return text
    try:
        occurred = datetime.fromisoformat(text)
    except ValueError as error:
        raise NotAnEvent("occurred_at is not a timestamp") from error
    return timestamp(occurred if occurred.tzinfo is not None else occurred.replace(tzinfo=UTC))


@dataclass(slots=True)  # not frozen: its __init__ was a visible share of reading an event
class Prepared:
    """An event read for the chain: everything but ``seq``, ``recorded_at`` and ``prev_hash``."""

    event_id: str
    chain: str  # the tenant id, or NO_TENANT
    body: dict[str, Any]
    users: tuple[str, ...]  # whom the record is about (the member listing index)
    # canonical({"actor", "details"}): the keys sorting before "hash", the bulk of the record, serialised
    # once here (``seal``); its length also sizes the transactions.
    front: bytes


def prepare(data: bytes) -> Prepared:
    """Read one event; raises ``NotAnEvent`` for anything that is not one."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise NotAnEvent("not JSON") from error
    if not isinstance(event, dict) or not isinstance(event.get("type"), str) or "id" not in event:
        raise NotAnEvent("not an event (no id or type)")
    event_id = _uuid(event["id"], "id", optional=False)
    assert event_id is not None
    tenant = _uuid(event.get("tenant_id"), "tenant_id")
    occurred_at = _occurred_at(event.get("occurred_at"))
    raw_actor = event.get("actor") or {}
    if not isinstance(raw_actor, dict):
        raise NotAnEvent("actor is not an object")
    kind = raw_actor.get("kind", "system")
    actor = {
        "kind": kind if kind in _ACTOR_KINDS else "system",
        "user_id": _uuid(raw_actor.get("user_id"), "actor.user_id"),
        "agent": _text(raw_actor.get("agent")),
        "ip": _text(raw_actor.get("ip")),
        "user_agent": _text(raw_actor.get("user_agent")),
    }
    target = _text(event.get("target"))
    outcome = event.get("outcome", "success")
    data_field = event.get("data") or {}
    details, details_json = _bounded(scrub(data_field if isinstance(data_field, dict) else {"value": data_field}))
    body = {
        "id": event_id,
        "tenant_id": tenant,
        "occurred_at": occurred_at,
        "type": event["type"],
        "actor": actor,
        "target": target,
        "outcome": outcome if outcome in _OUTCOMES else "failure",
        "trace_id": _text(event.get("trace_id")),
        "details": details,
    }
    users = []
    if actor["user_id"] is not None:
        users.append(actor["user_id"])
    if target is not None and target.startswith("user:"):
        about = _uuid(target.removeprefix("user:"), "target", optional=True)
        if about is not None and about not in users:
            users.append(about)
    # "actor" < "details": canonical({"actor": actor, "details": details}) without serialising details again.
    front = b"".join((b'{"actor":', canonical(actor), b',"details":', details_json, b"}"))
    return Prepared(event_id=event_id, chain=tenant or NO_TENANT, body=body, users=tuple(users), front=front)


def complete(prepared: Prepared, seq: int, prev_hash: str, recorded_at: str) -> dict[str, Any]:
    """The record body (no hash yet) at ``seq``; ``occurred_at`` falls back to ``recorded_at``."""
    body = {**prepared.body, "seq": seq, "prev_hash": prev_hash, "recorded_at": recorded_at}
    if body["occurred_at"] is None:
        body["occurred_at"] = recorded_at
    return body


def seal(prepared: Prepared, seq: int, prev_hash: str, recorded_at: str) -> tuple[str, bytes]:
    """The hash and stored bytes of the record at ``seq``: ``canonical(seal_record(complete(...)))``,
    with the front part serialised when the event was read. Every key but "actor" and "details" sorts
    after "hash"."""
    body = prepared.body
    return seal_split(
        prepared.front,
        {
            "id": body["id"],
            "occurred_at": body["occurred_at"] or recorded_at,
            "outcome": body["outcome"],
            "prev_hash": prev_hash,
            "recorded_at": recorded_at,
            "seq": seq,
            "target": body["target"],
            "tenant_id": body["tenant_id"],
            "trace_id": body["trace_id"],
            "type": body["type"],
        },
        prev_hash,
    )
