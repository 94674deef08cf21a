"""The generated bus and HTTP documents cover what the code serves."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from contracts import asyncapi, auth, session
from contracts.catalog import OPERATIONS
from services.gateway.app import BASE_PATH, all_routes
from services.gateway.openapi import OPENAPI_KEY, build_openapi


def test_asyncapi_lists_every_auth_and_session_operation_and_event() -> None:
    document = asyncapi.build()
    addresses = {channel["address"] for channel in document["channels"].values()}
    subjects = {
        value
        for module in (auth, session)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and value.startswith("rpc.")
    }
    assert subjects <= addresses
    assert "evt.auth.user_registered" in addresses and "fevt.>" in addresses
    assert set(session.EVENT_SUBJECTS) <= addresses
    assert document["asyncapi"] == "3.0.0"
    for op in OPERATIONS:
        assert op.request.__name__ in document["components"]["schemas"]


def test_openapi_has_one_operation_per_route_and_never_exposes_a_hash() -> None:
    document = build_openapi(all_routes(), BASE_PATH)
    count = sum(len(methods) for methods in document["paths"].values())
    assert count == len(all_routes())
    assert "password_hash" not in str(document)


def test_committed_documents_are_current() -> None:
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    committed_asyncapi = json.loads((root / "docs/asyncapi.json").read_text())
    committed_openapi = json.loads((root / "docs/openapi.json").read_text())
    assert committed_asyncapi == json.loads(json.dumps(asyncapi.build(), default=str)), "run ./dev docs"
    assert committed_openapi == json.loads(json.dumps(build_openapi(all_routes(), BASE_PATH), default=str)), (
        "run ./dev docs"
    )


async def test_every_openapi_path_resolved_against_the_server_url_reaches_its_route(tmp_path: Path) -> None:
    """A generated client joins the server URL and the path: that URL must be the route, once prefixed."""
    from aiohttp.test_utils import make_mocked_request

    from services.gateway.app import create_app
    from services.gateway.settings import GatewaySettings

    app = create_app(GatewaySettings(data_dir=tmp_path, log_level="WARNING"))
    document = app[OPENAPI_KEY]
    (server,) = document["servers"]
    assert server["url"] == BASE_PATH
    for path, methods in document["paths"].items():
        url = server["url"].rstrip("/") + re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        assert not url.startswith(BASE_PATH + BASE_PATH), url
        for method in methods:
            match = await app.router.resolve(make_mocked_request(method.upper(), url, app=app))
            assert match.http_exception is None, f"{method.upper()} {url} does not reach a route"


def test_the_session_bodies_are_documented_as_closed() -> None:
    """What the gateway refuses (tests/session/test_lifecycle.py), the document says."""
    document = build_openapi(all_routes(), BASE_PATH)
    schemas = document["components"]["schemas"]
    for name in ("CreateSessionBody", "UpdateSessionBody", "ForkSessionBody"):
        assert schemas[name]["additionalProperties"] is False, name
