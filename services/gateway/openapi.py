"""The OpenAPI 3.1 document, built from the route table and the pydantic models it names."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.gateway.routing import Route

OPENAPI_KEY = web.AppKey("openapi", dict)

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["success", "error"],
    "properties": {
        "success": {"const": False},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
        },
    },
}


def _schema(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_openapi(routes: list[Route], base_path: str) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {"summary": route.summary, "tags": [route.tag]}
        if route.description:
            operation["description"] = route.description
        parameters = [
            {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for part in route.path.split("/")
            if part.startswith("{")
        ]
        parameters += [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}} for name in route.query
        ]
        parameters += [
            {"name": name, "in": "header", "required": False, "schema": {"type": "string"}} for name in route.headers
        ]
        if parameters:
            operation["parameters"] = parameters
        if route.access != "public":
            operation["security"] = [{"bearer": []}]
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema(route.body, components)}},
            }
        success: dict[str, Any] = {"description": "switching protocols" if route.status == 101 else "success"}
        if route.response_headers:
            success["headers"] = {name: {"schema": {"type": "string"}} for name in route.response_headers}
        if route.status not in (101, 204):
            data = _schema(route.response, components) if route.response is not None else {}
            body = {"type": "object", "properties": {"success": {"const": True}, "data": data}}
            success["content"] = {route.media_type: {"schema": body if route.enveloped else data}}
        error = {
            "description": "error envelope",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        operation["responses"] = {str(route.status): success, "4XX": error, "5XX": error}
        # Relative to the server URL (the base path): a client joins the two.
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Coditect V5 API", "version": "5.0.0"},
        "servers": [{"url": base_path}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def main() -> None:
    """Write the OpenAPI document: ``python -m services.gateway.openapi docs/openapi.json``."""
    import json
    import sys
    from pathlib import Path

    from services.gateway.app import BASE_PATH, all_routes

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/openapi.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(build_openapi(all_routes(), BASE_PATH), indent=2, default=str) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
