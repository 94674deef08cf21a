"""The caller's workspace: HTTP routes that become provisioning-service requests."""

from __future__ import annotations

from aiohttp import web

from contracts import provisioning
from services.gateway.deps import send
from services.gateway.http import ok, read_json
from services.gateway.routing import Route


async def get_workspace(request: web.Request) -> web.Response:
    return ok(await send(request, provisioning.GET, provisioning.GetWorkspace, {}))


async def reprovision_workspace(request: web.Request) -> web.Response:
    await read_json(request)  # an empty or JSON body; anything else is refused as on every route
    return ok(await send(request, provisioning.REPROVISION, provisioning.ReprovisionWorkspace, {}), status=202)


ROUTES = [
    Route(
        "GET",
        "/workspaces/me",
        get_workspace,
        "The caller's workspace: status, error if failed, what the backend made (404 until requested)",
        response=provisioning.Workspace,
        tag="workspaces",
    ),
    Route(
        "POST",
        "/workspaces/me/reprovision",
        reprovision_workspace,
        "Provision the caller's workspace again (from ready or failed); done in the background",
        response=provisioning.Workspace,
        status=202,
        tag="workspaces",
    ),
]
