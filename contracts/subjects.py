"""Subject naming for the bus.

Request/reply subjects are ``rpc.<service>.<operation>`` (core NATS, one queue group per
service). Domain events are ``evt.<service>.<event>`` on the ``CODITECT_EVENTS`` JetStream
stream; file changes have their own high-volume stream, ``CODITECT_FILE_EVENTS``, under
``fevt.<tenant_id>.<user_id>.<workspace_id>`` (see ``file_subject``): a workspace monitor may publish
on its own workspace's subject only, so the subject, never the message body, says whose files changed.
Audit checkpoints go to a stream of their own that denies delete and purge.
"""

from __future__ import annotations

from typing import Final

SERVICES: Final = ("auth", "session", "provisioning", "file_event", "audit")

EVENTS_STREAM: Final = "CODITECT_EVENTS"
EVENTS_SUBJECTS: Final = ("evt.>",)
# Session revocations only, sourced from the events stream: the gateway follows them by sequence here,
# so its bus identity reads no other event by sequence.
REVOCATIONS_STREAM: Final = "CODITECT_REVOCATIONS"
FILE_EVENTS_STREAM: Final = "CODITECT_FILE_EVENTS"
FILE_EVENTS_SUBJECTS: Final = ("fevt.>",)
AUDIT_CHECKPOINTS_STREAM: Final = "CODITECT_AUDIT_CHECKPOINTS"
AUDIT_CHECKPOINTS_SUBJECTS: Final = ("auditcp.>",)
# Messages a consumer can never handle, kept for an operator (``deadletter.<service>``): outside
# ``evt.>`` and ``fevt.>``, so nothing consumes them by accident.
DEAD_LETTER_STREAM: Final = "CODITECT_DEAD_LETTERS"
DEAD_LETTER_SUBJECTS: Final = ("deadletter.>",)

# The namespace of each service's event types (``<namespace>.<name>`` on ``evt.<namespace>.<name>``):
# a service publishes only under its own namespace.
EVENT_NAMESPACES: Final = {
    "auth": "auth",
    "session": "session",
    "provisioning": "workspace",
    "file_event": "file",
    "audit": "audit",
}


def rpc(service: str, operation: str) -> str:
    """Request/reply subject of one operation of a service."""
    return f"rpc.{service}.{operation}"


def event(service: str, name: str) -> str:
    """JetStream subject of one domain event type (``auth.user_registered`` → ``evt.auth.user_registered``)."""
    return f"evt.{service}.{name}"


def queue_group(service: str) -> str:
    """Queue group shared by the replicas of a service, so each request reaches one of them."""
    return f"svc-{service}"


def ping(service: str) -> str:
    return rpc(service, "ping")


def file_subject(tenant_id: object, user_id: object, workspace_id: object) -> str:
    """The subject a workspace's file changes are published on: ``fevt.<tenant>.<user>.<workspace>``."""
    return f"fevt.{tenant_id}.{user_id}.{workspace_id}"


def dead_letter_subject(service: str) -> str:
    return f"deadletter.{service}"


def audit_checkpoint_subject(tenant_id: object) -> str:
    return f"auditcp.{tenant_id}"
