"""The audit append path alone, in this process: CPU per event of reading events and appending them.

    python -m bench.audit_path [EVENTS] [BATCH]      # default 6000 session.created events, 30 a batch

No bus and no other process: ``session.created`` events shaped as the session service publishes them
(built before the clock starts) are read as the appender reads a fetched batch (``read_bodies``), cut
into transactions (``transactions``) and appended to one tenant's chain on an embedded store in a temporary
folder, ``BATCH`` events at a time. Prints the process CPU per event (the store's writer thread
included), split into reading and the rest (sizing, transaction, commit). For quick comparisons of the
per-event code; ``bench.profile session-create audit`` measures the service under load.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from contracts import session as sessions
from contracts.events import Actor, Event
from services.audit import repository as repo
from services.audit.appender import read_bodies, transactions
from services.audit.chain import timestamp
from shared.store.embedded import EmbeddedStore


def session_events(count: int, tenant: uuid.UUID) -> list[bytes]:
    user = uuid.uuid4()
    bodies = []
    for index in range(count):
        now = datetime.now(UTC)
        session = sessions.Session(
            id=uuid.uuid4(),
            tenant_id=tenant,
            user_id=user,
            name="bench",
            workspace_path=f"/workspaces/{user}/{index}",
            status="active",
            version=1,
            created_at=now,
            updated_at=now,
            last_accessed_at=now,
        )
        event = Event(
            type=sessions.SESSION_CREATED,
            tenant_id=tenant,
            actor=Actor(kind="human", user_id=user, ip="127.0.0.1", user_agent="bench"),
            target=f"session:{session.id}",
            trace_id=uuid.uuid4().hex,
            data={"user_id": str(user), "session": session.model_dump(mode="json")},
        )
        bodies.append(event.model_dump_json().encode())
    return bodies


async def measure(count: int, batch: int) -> tuple[float, float]:
    """CPU seconds of reading and of the rest, for ``count`` events."""
    tenant = uuid.uuid4()
    bodies = session_events(count, tenant)
    reading = rest = 0.0
    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddedStore(Path(folder) / "audit.sqlite")
        try:
            for start in range(0, count, batch):
                began = time.process_time()
                read = read_bodies(bodies[start : start + batch])
                between = time.process_time()
                for appends in transactions(read.by_chain, 500):
                    recorded_at = timestamp(datetime.now(UTC))
                    await store.run(partial(repo.append_chains, appends=appends, recorded_at=recorded_at))
                reading += between - began
                rest += time.process_time() - between
            head = await store.run(partial(repo.head, chain=str(tenant)))
            if head.seq != count:
                raise RuntimeError(f"{head.seq} records of {count}")
        finally:
            store.close()
    return reading, rest


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 6000
    batch = int(argv[1]) if len(argv) > 1 else 30
    reading, rest = asyncio.run(measure(count, batch))
    print(
        f"{count} session.created events, {batch} a batch: {(reading + rest) / count * 1e6:.1f} µs of CPU per event "
        f"(reading {reading / count * 1e6:.1f}, sizing + transaction + commit {rest / count * 1e6:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
