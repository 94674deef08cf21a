"""Middlewares: request ids and tracing, the error envelope for every error, bearer tokens."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import uuid
from typing import Protocol

from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contracts.envelope import ErrorBody, ErrorCode
from contracts.identity import Caller
from services.gateway.http import CODE_BY_STATUS, ApiError, error_response
from services.gateway.routing import Handler, Route
from services.gateway.settings import GatewaySettings
from shared.telemetry import traceparent, unrecorded_span

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ROUTES_KEY = web.AppKey("routes", dict[Handler, Route])
REQUEST_ID = web.RequestKey("request_id", str)
CALLER = web.RequestKey("caller", Caller)


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Caller:
        """The caller a valid access token names; raises ApiError (401) otherwise."""
        ...


VERIFIER_KEY = web.AppKey("verifier", TokenVerifier)

# Fetched once (a lookup per request cost measurable CPU); it follows the provider setup_tracing sets.
_TRACER = trace.get_tracer("coditect.gateway")
# Trace context only, never the global propagator: that one would also take the caller's baggage.
_TRACE_CONTEXT = TraceContextTextMapPropagator()


@functools.cache
def _settings_key() -> web.AppKey[GatewaySettings]:
    from services.gateway.deps import SETTINGS_KEY  # deps imports this module, so not at the top

    return SETTINGS_KEY


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else str(uuid.uuid4())
    request[REQUEST_ID] = request_id
    settings = request.app[_settings_key()]
    # An untrusted caller's traceparent would choose the trace ids of our bus messages and events.
    parent = _TRACE_CONTEXT.extract(request.headers) if settings.gateway_trust_client_trace else otel_context.Context()
    span: Span
    if settings.otel_exporter_otlp_endpoint:
        token = otel_context.attach(parent)
        try:
            with _TRACER.start_as_current_span(f"{request.method} {request.path}", kind=SpanKind.SERVER) as span:
                response = await handler(request)
                span.set_attribute("http.status_code", response.status)
        finally:
            otel_context.detach(token)
    else:
        # Nothing would read a recorded span: carry the ids alone, so bus messages, events and logs still share them.
        span = unrecorded_span(trace.get_current_span(parent).get_span_context())
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            response = await handler(request)
        finally:
            otel_context.detach(token)
    context = span.get_span_context()
    if context.is_valid:
        response.headers["traceparent"] = traceparent(context)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


@web.middleware
async def error_envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as the JSON envelope: no HTML pages, no 500s for client mistakes."""
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except (ConnectionResetError, asyncio.CancelledError):
        raise  # the client went away: nothing to answer, nothing to log as a failure
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = CODE_BY_STATUS.get(error.status, ErrorCode.INTERNAL)
        message = {
            404: f"no route {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
            413: "the body is larger than the limit",
        }.get(error.status, error.reason)
        api_error = ApiError(ErrorBody(code=code, message=message), status=error.status)
        if error.status == 405 and "Allow" in error.headers:
            api_error.headers["Allow"] = error.headers["Allow"]
        return error_response(api_error)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ApiError.of(ErrorCode.INTERNAL, "internal error"))


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Verify the bearer token of routes that need one and attach the caller to the request."""
    route = request.app[ROUTES_KEY].get(request.match_info.handler)
    if route is None or route.access == "public":
        return await handler(request)
    token = bearer_token(request)
    if token is None:
        raise ApiError.of(ErrorCode.UNAUTHORIZED, "a bearer access token is required")
    caller = await request.app[VERIFIER_KEY].verify(token)
    if route.access == "admin" and not caller.is_admin:
        raise ApiError.of(ErrorCode.FORBIDDEN, "this route is for tenant admins")
    request[CALLER] = caller
    return await handler(request)
