"""The generated bus and HTTP documents cover what the code serves."""

from __future__ import annotations

from contracts import asyncapi, auth
from contracts.catalog import OPERATIONS
from services.gateway.app import BASE_PATH, all_routes
from services.gateway.openapi import build_openapi


def test_asyncapi_lists_every_auth_operation_and_event() -> None:
    document = asyncapi.build()
    addresses = {channel["address"] for channel in document["channels"].values()}
    subjects = {
        value
        for name, value in vars(auth).items()
        if name.isupper() and isinstance(value, str) and value.startswith("rpc.")
    }
    assert subjects <= addresses
    assert "evt.auth.user_registered" in addresses and "fevt.>" in addresses
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
