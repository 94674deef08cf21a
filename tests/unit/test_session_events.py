"""``session_event`` builds its event without validating it again: the result must be exactly what
the validated models give, and a stored record's own fields must never reach the event."""

from __future__ import annotations

import uuid

from contracts import session as api
from contracts.events import Actor, Event
from contracts.identity import Caller
from services.session import repository as repo
from services.session import rules
from services.session.context import session_event, utcnow


def a_record() -> repo.SessionRecord:
    caller = Caller(tenant_id=uuid.uuid4(), user_id=uuid.uuid4(), session_id=uuid.uuid4())
    return rules.new_session(repo.SessionRecord, caller, name="n", workspace_path="a/b", now=utcnow())


def test_the_event_is_what_the_validated_models_give() -> None:
    record = a_record()
    actor = Actor(kind="human", user_id=record.user_id, ip="10.0.0.1", user_agent="ua")
    event = session_event(api.SESSION_CREATED, record, actor)
    expected = Event(
        id=event.id,
        occurred_at=event.occurred_at,
        type=api.SESSION_CREATED,
        tenant_id=record.tenant_id,
        actor=actor,
        target=f"session:{record.id}",
        trace_id=event.trace_id,
        data=api.SessionEventData(user_id=record.user_id, session=record.public()).model_dump(mode="json"),
    )
    assert event.model_dump_json() == expected.model_dump_json()
    assert Event.model_validate_json(event.model_dump_json()) == expected


def test_fields_only_a_stored_record_has_stay_out_of_the_event() -> None:
    class Stored(repo.SessionRecord):
        secret: str = "never in an event"

    record = Stored(**a_record().model_dump())
    event = session_event(api.SESSION_UPDATED, record, Actor())
    assert "secret" not in event.model_dump_json()
    assert set(event.data["session"]) == set(api.Session.model_fields)
