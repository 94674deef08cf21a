"""Subject naming for the bus.

Request/reply subjects are ``rpc.<service>.<operation>`` (core NATS, one queue group per
service). Domain events are ``evt.<service>.<event>`` on the ``CODITECT_EVENTS`` JetStream
stream; file changes have their own high-volume stream, ``CODITECT_FILE_EVENTS``, under
``fevt.<tenant_id>.<workspace>``.
"""

from __future__ import annotations

from typing import Final

SERVICES: Final = ("auth", "session", "provisioning", "file_event", "audit")

EVENTS_STREAM: Final = "CODITECT_EVENTS"
EVENTS_SUBJECTS: Final = ("evt.>",)
FILE_EVENTS_STREAM: Final = "CODITECT_FILE_EVENTS"
FILE_EVENTS_SUBJECTS: Final = ("fevt.>",)


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
