"""Who may do what on the bus: one row per process role, turned into nats-server permissions.

Deny by default: a role may publish, subscribe and call the JetStream API only on what its row
lists. Adding a service is adding a row to ``ROLES``; adding a durable consumer is adding a
``Consumer`` to its service's row (NATS wildcards match whole tokens only, so a durable's name is
listed exactly, never as a ``<service>-*`` pattern).

Requests are answered through ``allow_responses`` (a responder may publish once to the reply subject
of a request it received), so no role needs publish rights on ``_INBOX.>``; each identity receives
replies, JetStream acknowledgements and pulled messages on its own inbox prefix
(``_INBOX.<identity>``, see ``inbox_prefix``), and only that identity may subscribe there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from contracts import auth
from contracts.subjects import (
    AUDIT_CHECKPOINTS_STREAM,
    AUDIT_CHECKPOINTS_SUBJECTS,
    DEAD_LETTER_STREAM,
    EVENT_NAMESPACES,
    EVENTS_STREAM,
    FILE_EVENTS_STREAM,
    FILE_EVENTS_SUBJECTS,
    REVOCATIONS_STREAM,
    SERVICES,
    dead_letter_subject,
    event,
    rpc,
)

JS_API: Final = "$JS.API"
# Where nats-server asks who a connecting workspace monitor is (its authorization callout,
# ``shared.buscallout``); only provisioning, which issued the monitor's key, answers.
AUTH_CALLOUT_SUBJECT: Final = "$SYS.REQ.USER.AUTH"
GATEWAY: Final = "gateway"
OPERATOR: Final = "operator"
BOOTSTRAP: Final = "bootstrap"

# Operator-only request subjects: no service and not the gateway may call them.
OPERATOR_ONLY: Final = (auth.ROTATE_SIGNING_KEY,)

# Every stream the system runs (created by the bootstrap identity only).
STREAMS: Final = (EVENTS_STREAM, REVOCATIONS_STREAM, FILE_EVENTS_STREAM, AUDIT_CHECKPOINTS_STREAM, DEAD_LETTER_STREAM)


def inbox_prefix(identity: str) -> str:
    """The inbox prefix of one identity: replies and acknowledgements to it arrive under it only."""
    return f"_INBOX.{identity}"


def durable(service: str, purpose: str) -> str:
    """A durable consumer's name: its owning service first, so its row is easy to find."""
    return f"{service}-{purpose}"


@dataclass(frozen=True)
class Consumer:
    """A durable JetStream consumer one role creates, reads and acknowledges."""

    stream: str
    name: str
    filters: tuple[str, ...]

    def api_subjects(self) -> list[str]:
        api = f"{JS_API}.CONSUMER"
        allowed = [
            f"{api}.INFO.{self.stream}.{self.name}",
            f"{api}.MSG.NEXT.{self.stream}.{self.name}",
            # nats-py names the filter in the create subject when there is one, so the server
            # refuses a body whose filter differs: the consumer reads only what its row says.
            *(f"{api}.CREATE.{self.stream}.{self.name}.{f}" for f in self.filters),
        ]
        if len(self.filters) != 1:
            # Several filters travel in the body only (the create subject cannot name them).
            allowed += [f"{api}.CREATE.{self.stream}.{self.name}", f"{api}.DURABLE.CREATE.{self.stream}.{self.name}"]
        return allowed

    def ack_subjects(self) -> list[str]:
        return [f"$JS.ACK.{self.stream}.{self.name}.>"]


@dataclass(frozen=True)
class Role:
    """One process role's rights. Subjects may use NATS wildcards (``*``, ``>``)."""

    name: str
    serves: tuple[str, ...] = ()  # request subjects it answers (subscribe + allow_responses)
    requests: tuple[str, ...] = ()  # request subjects it may call
    publishes: tuple[str, ...] = ()  # subjects it publishes on (its events)
    listens: tuple[str, ...] = ()  # core subscriptions (live push, revocations)
    consumers: tuple[Consumer, ...] = ()
    js_api: tuple[str, ...] = ()  # further JetStream API subjects, exactly
    denied_publish: tuple[str, ...] = field(default=OPERATOR_ONLY)

    def permissions(self) -> dict[str, Any]:
        publish = [
            *self.requests,
            *self.publishes,
            *self.js_api,
            *(s for c in self.consumers for s in c.api_subjects()),
            *(s for c in self.consumers for s in c.ack_subjects()),
        ]
        subscribe = [*self.serves, *self.listens, f"{inbox_prefix(self.name)}.>"]
        permissions: dict[str, Any] = {
            "publish": {"allow": _unique(publish) or ["_NOTHING_"]},
            "subscribe": {"allow": _unique(subscribe)},
        }
        if self.denied_publish:
            permissions["publish"]["deny"] = list(self.denied_publish)
        if self.serves:
            # One reply per request, within a minute: enough for every handler's deadline.
            permissions["allow_responses"] = {"max": 1, "expires": "1m"}
        return permissions

    def jwt_permissions(self) -> dict[str, Any]:
        """The same rights in a user JWT's shape (``pub``/``sub``/``resp``), for callout-issued users."""
        permissions = self.permissions()
        claims: dict[str, Any] = {"pub": permissions["publish"], "sub": permissions["subscribe"]}
        if "allow_responses" in permissions:
            claims["resp"] = {"max": 1, "ttl": 60_000_000_000}  # nanoseconds, as the JWT counts them
        return claims


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def stream_info(*streams: str) -> tuple[str, ...]:
    return tuple(f"{JS_API}.STREAM.INFO.{s}" for s in streams)


def service_role(
    service: str,
    *,
    consumers: tuple[Consumer, ...] = (),
    publishes: tuple[str, ...] = (),
    requests: tuple[str, ...] = (),
    listens: tuple[str, ...] = (),
    js_api: tuple[str, ...] = (),
) -> Role:
    """A service: answers ``rpc.<service>.>``, publishes ``evt.<its namespace>.>`` and its dead letters
    (``deadletter.<service>``)."""
    streams = sorted({c.stream for c in consumers})
    return Role(
        name=service,
        serves=(rpc(service, ">"),),
        requests=requests,
        listens=listens,
        publishes=(event(EVENT_NAMESPACES[service], ">"), dead_letter_subject(service), *publishes),
        consumers=consumers,
        js_api=(*stream_info(*streams), *js_api),
    )


# One row per role. Consumers: the durables each service's code creates (names must match).
ROLES: Final[dict[str, Role]] = {
    role.name: role
    for role in (
        service_role("auth"),
        service_role(
            "session",
            # One durable per event type, each pinned to its one subject.
            consumers=(
                Consumer(EVENTS_STREAM, durable("session", "auth-events"), (auth.LOGOUT_SUBJECT,)),
                Consumer(EVENTS_STREAM, durable("session", "auth-user-removed"), (event("auth", "user_removed"),)),
                Consumer(EVENTS_STREAM, durable("session", "auth-tenant-deleted"), (event("auth", "tenant_deleted"),)),
            ),
        ),
        service_role(
            "provisioning",
            # One durable over the three auth events it acts on (several filters, one consumer), so a
            # removal is never handled before the registration it undoes, and no login is delivered to it.
            consumers=(
                Consumer(
                    EVENTS_STREAM,
                    durable("provisioning", "auth-events"),
                    tuple(event("auth", name) for name in ("user_registered", "user_removed", "tenant_deleted")),
                ),
            ),
            listens=(AUTH_CALLOUT_SUBJECT,),
        ),
        service_role(
            "file_event",
            # It republishes file changes posted over HTTP onto the file-event stream.
            publishes=FILE_EVENTS_SUBJECTS,
            consumers=(Consumer(FILE_EVENTS_STREAM, durable("file_event", "ingest"), FILE_EVENTS_SUBJECTS),),
        ),
        service_role(
            "audit",
            publishes=AUDIT_CHECKPOINTS_SUBJECTS,
            consumers=(Consumer(EVENTS_STREAM, durable("audit", "events"), ("evt.>",)),),
            # Reads events by sequence on start-up (those delivered but never acknowledged, in order),
            # and checkpoints back from their stream to verify against.
            js_api=(
                *stream_info(AUDIT_CHECKPOINTS_STREAM),
                f"{JS_API}.STREAM.MSG.GET.{EVENTS_STREAM}",
                f"{JS_API}.STREAM.MSG.GET.{AUDIT_CHECKPOINTS_STREAM}",
            ),
        ),
        Role(
            name=GATEWAY,
            requests=("rpc.>",),
            # What it pushes to sockets, and the revocations it follows (core subscription plus reads
            # by sequence of the revocations-only stream, starting from a short-lived consumer pinned
            # to that subject): no other event can it read by sequence.
            listens=(
                event("session", ">"),
                event("workspace", ">"),
                event("file", ">"),
                auth.SESSION_REVOKED_SUBJECT,
            ),
            js_api=(
                *stream_info(REVOCATIONS_STREAM),
                f"{JS_API}.STREAM.MSG.GET.{REVOCATIONS_STREAM}",
                f"{JS_API}.CONSUMER.CREATE.{REVOCATIONS_STREAM}.*.{auth.SESSION_REVOKED_SUBJECT}",
            ),
        ),
        Role(
            name=OPERATOR,
            requests=(*OPERATOR_ONLY, rpc("*", "ping")),
            js_api=(f"{JS_API}.INFO", *stream_info(*STREAMS)),
            denied_publish=(),
        ),
        Role(
            name=BOOTSTRAP,
            js_api=(
                f"{JS_API}.INFO",
                *stream_info(*STREAMS),
                *(f"{JS_API}.STREAM.CREATE.{s}" for s in STREAMS),
            ),
        ),
    )
}

PROCESS_ROLES: Final = (*SERVICES, GATEWAY)
assert set(SERVICES) <= ROLES.keys(), "every service needs a row in ROLES"


def monitor_role(name: str, subject: str) -> Role:
    """A workspace monitor: publishes its own workspace's file changes and nothing else."""
    return Role(name=name, publishes=(subject,))
