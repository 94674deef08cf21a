"""What every request gets around its route's handler: a request id, trace context, the caller named
by its bearer token where the route needs one, and the JSON envelope for every error.

One wrapper per route, built at start-up, instead of aiohttp middlewares: with any middleware
installed aiohttp runs a chain of partials on every request, which cost more than all of this work
(README, "Benchmarks"). Requests that match no route reach ``no_route`` through the same wrapper, so
404 and 405 leave in the envelope with the same headers.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Tracer

from contracts.envelope import ErrorBody, ErrorCode
from contracts.identity import Caller
from services.gateway.http import CODE_BY_STATUS, ApiError, error_response
from services.gateway.routing import Handler, Route
from services.gateway.settings import GatewaySettings
from shared.telemetry import (
    NOT_SAMPLED,
    IdsOnlySpan,
    dashed,
    random_span_id,
    random_uuid_int,
    remote_parent,
    traceparent,
    unrecorded_span,
    uuid_text,
)

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID = web.RequestKey("request_id", str)
CALLER = web.RequestKey("caller", Caller)
# A context with nothing in it: a request's trace never inherits what the connection's task held.
_ROOT = otel_context.Context()


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Caller:
        """The caller a valid access token names; raises ApiError (401) otherwise."""
        ...


VERIFIER_KEY = web.AppKey("verifier", TokenVerifier)


def new_request_id() -> str:
    return uuid_text(random_uuid_int())


class EdgeTrace:
    """A request's span. A caller's ``traceparent`` is continued only when trusted (an untrusted one
    would choose the trace ids of our bus messages and events); baggage is never read. With an
    exporter the request gets an SDK span; without one only ids, which propagate the same way to bus
    messages, events and logs while nothing is recorded that nobody would read."""

    def __init__(self, *, trust_client: bool, tracer: Tracer | None) -> None:
        self.trust_client = trust_client
        self.tracer = tracer

    def ids(self, request: web.Request) -> tuple[str, str] | None:
        """A new trace's ``traceparent`` and trace id (hex) with no span at all, when nothing exports
        spans and no caller's trace is continued; else None (``start`` decides)."""
        if self.tracer is not None or (self.trust_client and "traceparent" in request.headers):
            return None
        trace_hex = f"{random_uuid_int():032x}"
        return f"00-{trace_hex}-{random_span_id():016x}-00", trace_hex

    def start(self, request: web.Request) -> tuple[Span, str, str | None]:
        """The request's span, its ``traceparent``, and the hex id of the trace when it begins here."""
        parent = None
        if self.trust_client:
            headers = request.headers
            parent = remote_parent(headers.get("traceparent"), headers.get("tracestate"))
        if self.tracer is None and parent is None:
            # The common case, from plain ints: SpanContext's properties cost more than the formatting.
            trace_id, span_id = random_uuid_int(), random_span_id()
            trace_hex = f"{trace_id:032x}"
            header = f"00-{trace_hex}-{span_id:016x}-00"
            return IdsOnlySpan(SpanContext(trace_id, span_id, False, NOT_SAMPLED), header), header, trace_hex
        span: Span
        if self.tracer is None:
            span = unrecorded_span(parent)
        else:
            context = trace.set_span_in_context(NonRecordingSpan(parent), _ROOT) if parent is not None else _ROOT
            span = self.tracer.start_span(f"{request.method} {request.path}", context, kind=SpanKind.SERVER)
        return span, traceparent(span.get_span_context()), None


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def _caller(request: web.Request, route: Route, verifier: TokenVerifier) -> Caller:
    token = bearer_token(request)
    if token is None:
        raise ApiError.of(ErrorCode.UNAUTHORIZED, "a bearer access token is required")
    caller = await verifier.verify(token)
    if route.access == "admin" and not caller.is_admin:
        raise ApiError.of(ErrorCode.FORBIDDEN, "this route is for tenant admins")
    return caller


def error_envelope(request: web.Request, error: Exception) -> web.StreamResponse:
    """The envelope for an error a handler raised: no HTML pages, no 500s for client mistakes. Called
    inside the ``except`` that caught it (an unexpected error is logged with its traceback)."""
    if isinstance(error, ApiError):
        return error_response(error)
    if isinstance(error, ConnectionResetError):
        raise error  # the client went away: nothing to answer, nothing to log as a failure
    if isinstance(error, web.HTTPException):
        if error.status < 400:
            raise error
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
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(ApiError.of(ErrorCode.INTERNAL, "internal error"))


def _request_id(request: web.Request, new_trace: str | None) -> str:
    incoming = request.headers.get(REQUEST_ID_HEADER)
    if incoming is not None and _SAFE_REQUEST_ID.fullmatch(incoming) is not None:
        return incoming
    if new_trace is not None:
        # A trace begun here has a random UUID for id: it serves as the request id too, so the id a
        # client sees finds the request's log lines, bus messages and events.
        return dashed(new_trace)
    return new_request_id()


class Edge:
    """Wraps route handlers; one per application."""

    def __init__(self, verifier: TokenVerifier, tracing: EdgeTrace) -> None:
        self.verifier = verifier
        self.tracing = tracing

    def wrap(self, route: Route) -> Handler:
        traced = self._traced(route)
        if not route.local:
            return traced
        if route.access != "public":
            raise ValueError(f"{route.path}: a local route takes no token, so it must be public")
        handler, tracing = route.handler, self.tracing

        async def local_edge(request: web.Request) -> web.StreamResponse:
            # No bus request follows, so no span and no current context: only the response's ids.
            ids = tracing.ids(request)
            if ids is None:
                return await traced(request)
            span_traceparent, trace_hex = ids
            request_id = _request_id(request, trace_hex)
            request[REQUEST_ID] = request_id
            try:
                response = await handler(request)
            except Exception as error:
                response = error_envelope(request, error)
            headers = response.headers
            headers["traceparent"] = span_traceparent
            headers[REQUEST_ID_HEADER] = request_id
            return response

        return local_edge

    def _traced(self, route: Route) -> Handler:
        handler, public, verifier, tracing = route.handler, route.access == "public", self.verifier, self.tracing

        async def edge(request: web.Request) -> web.StreamResponse:
            span, span_traceparent, new_trace = tracing.start(request)
            request_id = _request_id(request, new_trace)
            request[REQUEST_ID] = request_id
            token = otel_context.attach(trace.set_span_in_context(span, _ROOT))
            try:
                try:
                    if not public:
                        request[CALLER] = await _caller(request, route, verifier)
                    response = await handler(request)
                except Exception as error:  # not a cancellation: that is the client going away
                    response = error_envelope(request, error)
                span.set_attribute("http.status_code", response.status)  # no-ops on an ids-only span
            finally:
                otel_context.detach(token)
                span.end()
            headers = response.headers
            headers["traceparent"] = span_traceparent
            headers[REQUEST_ID_HEADER] = request_id
            return response

        return edge


def edge_for(settings: GatewaySettings, verifier: TokenVerifier) -> Edge:
    exporting = bool(settings.otel_exporter_otlp_endpoint)
    tracer = trace.get_tracer("coditect.gateway") if exporting else None  # once: a lookup per request cost CPU
    return Edge(verifier, EdgeTrace(trust_client=settings.gateway_trust_client_trace, tracer=tracer))


async def no_route(request: web.Request) -> web.StreamResponse:
    """Every request no route took: 405 (with ``Allow``) when the path exists for other methods, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        match, methods = await resource.resolve(request)
        if match is None:  # this resource is not the catch-all that brought us here
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


NO_ROUTE = Route("*", "/{tail:.*}", no_route, "Anything no route matches", access="public", enveloped=False, local=True)
