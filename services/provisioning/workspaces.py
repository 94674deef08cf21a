"""The use cases of workspaces: requests from auth events and clients, each a transaction with its
events staged in it; the work itself (``drive``) runs under a claim, in the background."""

from __future__ import annotations

import asyncio
import functools
import logging
from uuid import UUID

from pydantic import ValidationError

from contracts import auth
from contracts import provisioning as api
from contracts.envelope import ErrorCode
from contracts.events import Actor, Event
from services.provisioning import repository as repo
from services.provisioning import states
from services.provisioning.backends import WorkspaceRef
from services.provisioning.context import ProvisioningContext, utcnow
from shared.errors import ServiceError, caller_of, not_found
from shared.store import Transaction

log = logging.getLogger(__name__)

BATCH = 100
ERROR_MAX = 2000


# --- auth events (the durable consumer) -------------------------------------------------------------


async def on_user_registered(ctx: ProvisioningContext, event: Event) -> bool:
    """One workspace per user: a new record unless one exists (any state), once per event id."""
    user_id = _user_of(event)
    tenant_id = event.tenant_id
    if user_id is None or tenant_id is None:
        log.error("%s event %s names no user or tenant; skipped", event.type, event.id)
        return False
    now = utcnow()

    def request(tx: Transaction) -> bool:
        if repo.processed(tx, event.id):
            return False
        repo.mark_processed(tx, event.id, now)
        if repo.get(tx, tenant_id, user_id) is not None:
            return False
        record = states.new(tenant_id, user_id, ctx.backend.name, now)
        repo.save(tx, None, record)
        ctx.stage(tx, api.WORKSPACE_REQUESTED, record)
        return True

    created = await ctx.store.run(request)
    if created:
        await ctx.publish_staged()
        drive_soon(ctx, tenant_id, user_id)
    return created


async def on_user_removed(ctx: ProvisioningContext, event: Event) -> int:
    try:
        data = auth.UserRemovedData.model_validate(event.data)
    except ValidationError:
        log.error("auth.user_removed event %s has data this service cannot read; skipped", event.id)
        return 0
    return await _deprovision_users(ctx, event, [data.user_id])


async def on_tenant_deleted(ctx: ProvisioningContext, event: Event) -> int:
    try:
        data = auth.TenantDeletedData.model_validate(event.data)
    except ValidationError:
        log.error("auth.tenant_deleted event %s has data this service cannot read; skipped", event.id)
        return 0
    return await _deprovision_users(ctx, event, data.user_ids)


async def _deprovision_users(ctx: ProvisioningContext, event: Event, user_ids: list[UUID]) -> int:
    tenant_id = event.tenant_id
    if tenant_id is None:
        log.error("%s event %s names no tenant; skipped", event.type, event.id)
        return 0
    now = utcnow()

    def step(tx: Transaction, batch: list[UUID], last: bool) -> list[UUID]:
        if repo.processed(tx, event.id):
            return []
        started = []
        for user_id in batch:
            before = repo.get(tx, tenant_id, user_id)
            after = states.deprovision(before, now) if before is not None else None
            if before is not None and after is not None:
                repo.save(tx, before, after)
                started.append(user_id)
        if last:
            repo.mark_processed(tx, event.id, now)
        return started

    started: list[UUID] = []
    for start in range(0, max(len(user_ids), 1), BATCH):
        batch = user_ids[start : start + BATCH]
        last = start + BATCH >= len(user_ids)
        started += await ctx.store.run(functools.partial(step, batch=batch, last=last))
    for user_id in started:
        drive_soon(ctx, tenant_id, user_id)
    return len(started)


def _user_of(event: Event) -> UUID | None:
    raw = event.data.get("user_id")
    try:
        return UUID(str(raw)) if raw is not None else event.actor.user_id
    except ValueError:
        return None


# --- client requests ---------------------------------------------------------------------------------


async def get(ctx: ProvisioningContext, message: api.GetWorkspace) -> api.Workspace:
    """The caller's workspace: its state, its error if failed, what the backend made."""
    caller = caller_of(message)
    record = await ctx.store.run(lambda tx: repo.get(tx, caller.tenant_id, caller.user_id))
    if record is None:
        raise not_found("workspace")
    return record.public()


async def reprovision(ctx: ProvisioningContext, message: api.ReprovisionWorkspace) -> api.Workspace:
    """Provision the caller's workspace again (from ready or failed), or for the first time where workspaces
    are provisioned on demand; the work runs in the background."""
    caller = caller_of(message)
    actor = Actor(kind="human", user_id=caller.user_id, ip=message.client.ip, user_agent=message.client.user_agent)
    now = utcnow()

    def change(tx: Transaction) -> states.WorkspaceRecord:
        before = repo.get(tx, caller.tenant_id, caller.user_id)
        if before is None:
            if ctx.settings.provisioning_on_register:
                raise not_found("workspace")  # registration requests every workspace: this caller has none
            record = states.new(caller.tenant_id, caller.user_id, ctx.backend.name, now)  # on demand
            repo.save(tx, None, record)
            ctx.stage(tx, api.WORKSPACE_REQUESTED, record, actor)
            return record
        if before.status in ("deprovisioning", "deleted"):
            raise ServiceError(ErrorCode.CONFLICT, f"the workspace is {before.status}; it cannot be provisioned again")
        after = states.reprovision(before, now)
        if after is None:
            return before
        repo.save(tx, before, after)
        ctx.stage(tx, api.WORKSPACE_REQUESTED, after, actor)
        return after

    record = await ctx.store.run(change)
    await ctx.publish_staged()
    drive_soon(ctx, caller.tenant_id, caller.user_id)
    return record.public()


# --- the work ------------------------------------------------------------------------------------------


def drive_soon(ctx: ProvisioningContext, tenant_id: UUID, user_id: UUID) -> None:
    ctx.start(tenant_id, user_id, lambda: drive(ctx, tenant_id, user_id))


async def drive(ctx: ProvisioningContext, tenant_id: UUID, user_id: UUID) -> None:
    """Work on one workspace until it needs nothing more now: claim it, run the backend, record the
    outcome. A retry that is not yet due soon is left to the reconcile loop."""
    while True:
        claimed, after = await attempt(ctx, tenant_id, user_id)
        if not claimed:
            return
        if after is None:
            continue  # superseded (a reprovision or removal came meanwhile): its own round may be due now
        if after.status not in states.WORKING or after.next_attempt_at is None:
            return
        wait = (after.next_attempt_at - utcnow()).total_seconds()
        if wait > ctx.settings.provisioning_reconcile_interval_seconds:
            return  # the reconcile loop takes it from here
        await asyncio.sleep(max(0.0, wait))


async def attempt(
    ctx: ProvisioningContext, tenant_id: UUID, user_id: UUID
) -> tuple[bool, states.WorkspaceRecord | None]:
    """One claimed attempt: (whether a claim was taken, the state it left, None if superseded)."""
    settings = ctx.settings
    now = utcnow()

    def take(tx: Transaction) -> states.Claim | None:
        before = repo.get(tx, tenant_id, user_id)
        claimed = states.claim(before, now, settings.provisioning_lease_seconds) if before is not None else None
        if before is None or claimed is None:
            return None
        repo.save(tx, before, claimed[0])
        return claimed[1]

    held = await ctx.store.run(take)
    if held is None:
        return False, None
    ref = WorkspaceRef(tenant_id=tenant_id, user_id=user_id)
    details: dict[str, str] = {}
    error: str | None = None
    try:
        if settings.provisioning_step_delay_seconds:
            await asyncio.sleep(settings.provisioning_step_delay_seconds)
        timeout = settings.provisioning_lease_seconds * 0.8  # finish (or give up) while the claim holds
        if held.deprovision:
            await asyncio.wait_for(ctx.backend.deprovision(ref), timeout)
        else:
            details = await asyncio.wait_for(ctx.backend.provision(ref), timeout)
    except asyncio.CancelledError:
        raise
    except Exception as failure:
        error = (f"{type(failure).__name__}: {failure}")[:ERROR_MAX]
        what = "removal" if held.deprovision else "provisioning"
        log.warning("workspace of user %s: %s attempt failed (%s)", user_id, what, error)
    finished = utcnow()

    def record(tx: Transaction) -> states.WorkspaceRecord | None:
        before = repo.get(tx, tenant_id, user_id)
        if before is None or not states.holds(before, held):
            return None
        if error is None:
            after = states.succeeded(before, details, finished)
            event = api.WORKSPACE_DEPROVISIONED if after.status == "deleted" else api.WORKSPACE_PROVISIONED
            ctx.stage(tx, event, after)
        else:
            after = states.attempt_failed(
                before,
                error,
                finished,
                max_attempts=settings.provisioning_max_attempts,
                base=settings.provisioning_retry_base_seconds,
                cap=settings.provisioning_retry_max_seconds,
            )
            if after.status == "failed":
                ctx.stage(tx, api.WORKSPACE_FAILED, after)
        repo.save(tx, before, after)
        return after

    after = await ctx.store.run(record)
    await ctx.publish_staged()
    return True, after
