"""Ids derived from others, in a module without pydantic: workspace monitors import it (their resident
memory is budgeted, and pydantic alone is about 10 MB of it)."""

from __future__ import annotations

import uuid
from typing import Final
from uuid import UUID

_WORKSPACE_NAMESPACE: Final = UUID("5b0c1f0e-6f0a-4c41-9a55-9a6f1d7c0b11")


def workspace_id(tenant_id: UUID, user_id: UUID) -> UUID:
    """The id of a user's (single) workspace: derived, so the gateway and the file-event service know a
    caller's workspace without asking provisioning, and a reprovision keeps the same id and subject."""
    return uuid.uuid5(_WORKSPACE_NAMESPACE, f"{tenant_id}:{user_id}")
