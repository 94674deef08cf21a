"""The HTTP side of the envelope: success and error bodies, status codes per error code, JSON input."""

from __future__ import annotations

from typing import Any

import orjson
import pydantic_core
from aiohttp import web
from pydantic import BaseModel, ValidationError

from contracts.envelope import ErrorBody, ErrorCode, Reply

STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_FAILED: 422,
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.TOKEN_REVOKED: 401,
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.REFRESH_TOKEN_INVALID: 401,
    ErrorCode.REFRESH_TOKEN_REUSED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.CONFLICT: 409,
    ErrorCode.EMAIL_TAKEN: 409,
    ErrorCode.PRECONDITION_FAILED: 412,
    ErrorCode.ACCOUNT_LOCKED: 423,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.INTERNAL: 500,
    ErrorCode.INVALID_TRANSITION: 409,
    ErrorCode.SESSION_TERMINATED: 409,
    ErrorCode.SESSION_QUOTA_EXCEEDED: 409,
    ErrorCode.CANNOT_REMOVE_SELF: 409,
    # The services do not trust this gateway's caller key: its configuration, not the client, is wrong.
    ErrorCode.CALLER_UNVERIFIED: 503,
}

CODE_BY_STATUS: dict[int, ErrorCode] = {
    400: ErrorCode.MALFORMED_JSON,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorCode.VALIDATION_FAILED,
    503: ErrorCode.SERVICE_UNAVAILABLE,
    504: ErrorCode.TIMEOUT,
}


class ApiError(Exception):
    """An error the gateway answers with the envelope."""

    def __init__(self, body: ErrorBody, status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(body.message)
        self.body = body
        self.status = status or STATUS_BY_CODE.get(body.code, 500)
        self.headers = headers or {}
        if body.retry_after is not None:
            self.headers["Retry-After"] = str(body.retry_after)

    @classmethod
    def of(cls, code: ErrorCode, message: str, details: Any = None) -> ApiError:
        return cls(ErrorBody(code=code, message=message, details=details))


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json", headers=headers)


def ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    if isinstance(data, BaseModel):  # straight from pydantic's serializer, no dict in between
        body = b'{"success":true,"data":' + pydantic_core.to_json(data) + b"}"
        return web.Response(body=body, status=status, content_type="application/json", headers=headers)
    return json_response({"success": True, "data": data}, status, headers)


def ok_json(result: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """``ok`` for a result that is JSON already (as a service wrote it)."""
    body = b'{"success":true,"data":' + result + b"}"
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def no_content() -> web.Response:
    return web.Response(status=204)


def error_response(error: ApiError) -> web.Response:
    body = error.body.model_dump(mode="json", exclude_none=True, exclude={"retry_after"})
    return json_response({"success": False, "error": body}, error.status, error.headers)


def unwrap(reply: Reply) -> Any:
    """The result of a reply, or the ApiError it carries."""
    if reply.ok:
        return reply.result
    assert reply.error is not None
    raise ApiError(reply.error)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object: 415 if not JSON, 400 if malformed, 413 if too large."""
    if not request.body_exists:
        return {}
    if request.content_type != "application/json":
        raise ApiError.of(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ApiError.of(ErrorCode.MALFORMED_JSON, f"the body is not valid JSON: {error}") from error
    if not isinstance(body, dict):
        raise ApiError.of(
            ErrorCode.VALIDATION_FAILED,
            "the body must be a JSON object",
            [{"field": "body", "message": "expected a JSON object"}],
        )
    return body


def validation_error(error: ValidationError) -> ApiError:
    details = [{"field": ".".join(str(part) for part in e["loc"]), "message": e["msg"]} for e in error.errors()]
    return ApiError.of(ErrorCode.VALIDATION_FAILED, "the request is not valid", details)


def parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise validation_error(error) from error
