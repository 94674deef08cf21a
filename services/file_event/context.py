"""What every file-event use case works with: the store, the outbox, the settings and the bus."""

from __future__ import annotations

from dataclasses import dataclass, field

from faststream.nats import NatsBroker
from nats.js import JetStreamContext

from services.file_event.settings import FileEventSettings
from shared.outbox import Outbox
from shared.store import Store


@dataclass
class IngestStats:
    """Counters of the ingest consumer, for operators (logs) and tests."""

    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0
    transactions: int = 0
    failed_transactions: int = 0
    tree_jobs_parked: int = 0


@dataclass
class FilesContext:
    store: Store
    outbox: Outbox
    settings: FileEventSettings
    broker: NatsBroker
    stats: IngestStats = field(default_factory=IngestStats)

    @property
    def js(self) -> JetStreamContext:
        """nats-py's JetStream client of the broker's connection (connected once the service serves)."""
        js: JetStreamContext = self.broker.config.connection_state.stream
        return js
