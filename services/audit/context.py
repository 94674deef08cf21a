"""What every audit use case works with: the store, the settings, the signer, the bus."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.js import JetStreamContext

from services.audit.settings import AuditSettings
from services.audit.signer import Signer
from shared.store import Store


@dataclass
class AuditContext:
    store: Store
    settings: AuditSettings
    signer: Signer
    js: JetStreamContext | None = None  # set once the bus is connected
    nc: Client | None = None
    dirty: set[str] = field(default_factory=set)  # chains grown since their last checkpoint
    checkpoint_now: asyncio.Event = field(default_factory=asyncio.Event)
