"""Every operation and event on the bus, with its models: the source of the AsyncAPI document."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from contracts import audit, auth, file_event, provisioning, session, subjects
from contracts.envelope import Reply
from contracts.events import Event
from contracts.health import Ping, Pong


@dataclass(frozen=True)
class Operation:
    subject: str
    request: type[BaseModel]
    reply: type[BaseModel] | None
    summary: str


@dataclass(frozen=True)
class EventChannel:
    event_type: str
    stream: str
    summary: str
    data: type[BaseModel] | None = None


OPERATIONS: list[Operation] = [
    *(Operation(subjects.ping(name), Ping, Pong, f"Health ping of the {name} service") for name in subjects.SERVICES),
    Operation(auth.REGISTER, auth.Register, auth.Registered, "Register a new tenant and its first admin"),
    Operation(auth.LOGIN, auth.Login, auth.TokenPair, "Check credentials; open an auth session"),
    Operation(auth.REFRESH, auth.Refresh, auth.TokenPair, "Spend a refresh token for a new pair"),
    Operation(auth.LOGOUT, auth.Logout, auth.Revoked, "Revoke the caller's auth session"),
    Operation(auth.LOGOUT_ALL, auth.LogoutAll, auth.Revoked, "Revoke every auth session of the caller"),
    Operation(auth.LIST_DEVICES, auth.ListDevices, auth.DevicePage, "The caller's active devices"),
    Operation(auth.REVOKE_DEVICE, auth.RevokeDevice, auth.Revoked, "Revoke one of the caller's devices"),
    Operation(auth.GET_JWKS, auth.GetJwks, auth.Jwks, "Public keys that may have signed a live token"),
    Operation(auth.ROTATE_SIGNING_KEY, auth.RotateSigningKey, None, "Rotate the signing key (operators, rate-limited)"),
    Operation(auth.GET_ME, auth.GetMe, auth.UserPublic, "The caller's profile"),
    Operation(auth.UPDATE_ME, auth.UpdateMe, auth.UserPublic, "Update the caller's profile"),
    Operation(auth.CHANGE_PASSWORD, auth.ChangePassword, auth.Revoked, "Change password; revoke other devices"),
    Operation(auth.GET_TENANT, auth.GetTenant, auth.TenantPublic, "The caller's tenant"),
    Operation(auth.LIST_TENANT_USERS, auth.ListTenantUsers, auth.UserPage, "Users of the caller's tenant"),
    Operation(auth.ADD_TENANT_USER, auth.AddTenantUser, auth.UserPublic, "Add a user to the caller's tenant"),
    Operation(
        auth.REMOVE_TENANT_USER, auth.RemoveTenantUser, auth.Revoked, "Remove a user of the caller's tenant (admins)"
    ),
    Operation(auth.DELETE_TENANT, auth.DeleteTenant, auth.Revoked, "Delete the caller's tenant and its users (admins)"),
    Operation(session.CREATE, session.CreateSession, session.Session, "Open a workspace session for the caller"),
    Operation(session.LIST, session.ListSessions, session.SessionPage, "A user's sessions, most recent first"),
    Operation(session.GET, session.GetSession, session.Session, "One of the caller's sessions"),
    Operation(session.UPDATE, session.UpdateSession, session.Session, "Rename or change the status of a session"),
    Operation(session.DELETE, session.DeleteSession, None, "Delete one of the caller's sessions"),
    Operation(session.FORK, session.ForkSession, session.Session, "A new session branching from one of the caller's"),
    Operation(session.TOUCH, session.TouchSession, session.Session, "Record an access to a session"),
    Operation(provisioning.GET, provisioning.GetWorkspace, provisioning.Workspace, "The caller's workspace"),
    Operation(
        provisioning.REPROVISION,
        provisioning.ReprovisionWorkspace,
        provisioning.Workspace,
        "Provision the caller's workspace again (accepted; done in the background)",
    ),
    Operation(audit.LIST_EVENTS, audit.ListAuditEvents, audit.AuditPage, "Audit records the caller may see"),
    Operation(audit.VERIFY, audit.VerifyAudit, audit.VerifyResult, "Recompute the tenant's chain (admins)"),
    Operation(audit.EXPORT_PAGE, audit.ExportPage, audit.ExportChunk, "One NDJSON page of the trail (admins)"),
    Operation(audit.GET_KEYS, audit.GetAuditKeys, audit.AuditKeys, "Public keys that sign audit checkpoints"),
    Operation(
        file_event.INGEST,
        file_event.IngestFileEvents,
        file_event.Accepted,
        "Put the caller's file changes on the file stream (on their workspace's subject)",
    ),
    Operation(file_event.LIST_EVENTS, file_event.ListFileEvents, file_event.FileEventPage, "The caller's file events"),
    Operation(file_event.LIST_FILES, file_event.ListFiles, file_event.FilePage, "The caller's current files"),
    Operation(file_event.HISTORY, file_event.FileHistory, file_event.FileEventPage, "One path's events"),
]

EVENTS: list[EventChannel] = [
    EventChannel(auth.USER_REGISTERED, subjects.EVENTS_STREAM, "A user was created (provisioning and audit listen)"),
    EventChannel(auth.LOGIN_SUCCEEDED, subjects.EVENTS_STREAM, "A login succeeded"),
    EventChannel(auth.LOGIN_FAILED, subjects.EVENTS_STREAM, "A login failed"),
    EventChannel(auth.ACCOUNT_LOCKED, subjects.EVENTS_STREAM, "An account was locked after repeated failures"),
    EventChannel(auth.TOKEN_REFRESHED, subjects.EVENTS_STREAM, "A refresh token was spent for a new pair"),
    EventChannel(auth.REFRESH_TOKEN_REUSED, subjects.EVENTS_STREAM, "A spent refresh token was presented again"),
    EventChannel(
        auth.LOGOUT_EVENT,
        subjects.EVENTS_STREAM,
        "A user logged out of one device or of every one (the session service ends sessions on the latter)",
        auth.LogoutData,
    ),
    EventChannel(
        auth.SESSION_REVOKED,
        subjects.EVENTS_STREAM,
        "Auth sessions were revoked (gateways deny them)",
        auth.SessionsRevokedData,
    ),
    EventChannel(auth.PASSWORD_CHANGED, subjects.EVENTS_STREAM, "A user changed their password"),
    EventChannel(
        auth.USER_REMOVED,
        subjects.EVENTS_STREAM,
        "An admin removed a user from their tenant (their sessions end, their workspace is deprovisioned)",
        auth.UserRemovedData,
    ),
    EventChannel(
        auth.TENANT_DELETED,
        subjects.EVENTS_STREAM,
        "A tenant was deleted with its users: one event per batch of users, the last one marked complete",
        auth.TenantDeletedData,
    ),
    EventChannel(session.SESSION_CREATED, subjects.EVENTS_STREAM, "A session was opened", session.SessionEventData),
    EventChannel(
        session.SESSION_UPDATED,
        subjects.EVENTS_STREAM,
        "A session was renamed or changed status (by its user, the idle sweep or a logout of every device)",
        session.SessionEventData,
    ),
    EventChannel(session.SESSION_FORKED, subjects.EVENTS_STREAM, "A session was forked", session.SessionEventData),
    EventChannel(session.SESSION_DELETED, subjects.EVENTS_STREAM, "A session was deleted", session.SessionEventData),
    EventChannel(
        provisioning.WORKSPACE_REQUESTED,
        subjects.EVENTS_STREAM,
        "A workspace was requested (a user registered or was added, or asked for a reprovision)",
        provisioning.WorkspaceEventData,
    ),
    EventChannel(
        provisioning.WORKSPACE_PROVISIONED,
        subjects.EVENTS_STREAM,
        "A workspace is ready",
        provisioning.WorkspaceEventData,
    ),
    EventChannel(
        provisioning.WORKSPACE_FAILED,
        subjects.EVENTS_STREAM,
        "A workspace could not be provisioned after every retry (its error is kept)",
        provisioning.WorkspaceEventData,
    ),
    EventChannel(
        provisioning.WORKSPACE_DEPROVISIONED,
        subjects.EVENTS_STREAM,
        "A workspace was removed (its user was removed or their tenant deleted)",
        provisioning.WorkspaceEventData,
    ),
    EventChannel(
        file_event.FILE_CHANGED,
        subjects.EVENTS_STREAM,
        "Files of a workspace changed: one per workspace per committed ingest batch (live push and audit)",
        file_event.FileChangedData,
    ),
]

ENVELOPE = Reply
EVENT = Event
