"""Session service settings (``CODITECT_*``, like every process: the common ones and these)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class SessionSettings(CommonSettings):
    max_active_sessions_per_user: int = Field(
        default=20, ge=0, description="Active sessions a user may have; creating, forking or resuming beyond is 409."
    )
    idle_suspend_after_seconds: float = Field(
        default=1800.0, gt=0, description="An active session not accessed for this long is suspended by the sweep."
    )
    idle_sweep_interval_seconds: float = Field(default=60.0, gt=0, description="How often the idle sweep runs.")
    list_cursor_ttl_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="A list cursor is honoured this long (its snapshot's old positions are kept as long); "
        "an older one is 422.",
    )
    handler_concurrency: int = Field(
        default=64,
        ge=1,
        description="Messages each session subject handles at once. A write spends most of its time waiting "
        "(its commit on the writer thread, its event's JetStream ack), not on the CPU: more in flight share "
        "commits and socket writes.",
    )
