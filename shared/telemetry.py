"""Tracing (OpenTelemetry); the JSON logs that carry the current trace id live in ``shared.logs``."""

from __future__ import annotations

import random
import re

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

# Re-exported: services set up their logging from here, beside their tracing.
from shared.logs import JsonFormatter as JsonFormatter
from shared.logs import setup_logging as setup_logging


def setup_tracing(service: str, otlp_endpoint: str | None) -> TracerProvider:
    # Without an exporter nothing would read recorded spans: sample none, so spans cost little,
    # while trace ids are still created and propagated (logs, events and replies carry them).
    sampler = None if otlp_endpoint else ALWAYS_OFF
    provider = TracerProvider(resource=Resource.create({"service.name": f"coditect-{service}"}), sampler=sampler)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint}/v1/traces")))
    trace.set_tracer_provider(provider)
    return provider


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UUID_VERSION_4 = (0x4 << 76) | (0x2 << 62)
_UUID_FIXED_BITS = ~((0xF << 76) | (0x3 << 62))


def random_uuid_int() -> int:
    """128 random bits shaped as a version-4 UUID (122 of them random, never zero). From the process's
    PRNG: ids must be unique, not secret, and ``uuid.uuid4`` (the OS's CSPRNG) costs three times as much."""
    return random.getrandbits(128) & _UUID_FIXED_BITS | _UUID_VERSION_4


def random_span_id() -> int:
    return random.getrandbits(64) or 1


def uuid_text(value: int) -> str:
    return dashed(f"{value:032x}")


def dashed(h: str) -> str:
    """32 hex digits in the 8-4-4-4-12 form of a UUID."""
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class IdsOnlySpan(NonRecordingSpan):
    """A span that only carries ids and knows its W3C ``traceparent``: formatted once, for the
    response that names it and every bus request made inside it."""

    def __init__(self, context: SpanContext, traceparent: str | None = None) -> None:
        super().__init__(context)
        self._traceparent = traceparent

    @property
    def traceparent(self) -> str:
        if self._traceparent is None:
            self._traceparent = traceparent(self.get_span_context())
        return self._traceparent


def unrecorded_span(parent: SpanContext | None) -> IdsOnlySpan:
    """A span that only carries ids, for a process that exports nothing: a child of ``parent`` when it
    is valid, else the root of a new trace (whose id is a random UUID, see ``random_uuid_int``). It
    propagates like a tracer's span at a fraction of the cost."""
    if parent is not None and parent.is_valid:
        trace_id, trace_state = parent.trace_id, parent.trace_state
    else:
        trace_id, trace_state = random_uuid_int(), None
    # Not sampled, as the ALWAYS_OFF sampler would say: nothing records it downstream either.
    return IdsOnlySpan(SpanContext(trace_id, random_span_id(), False, NOT_SAMPLED, trace_state))


class ReceivedSpan(IdsOnlySpan):
    """``unrecorded_span(remote_parent(traceparent, tracestate))`` for a received message, made only
    when something asks for its ids (a log line, an event, a request sent on). A service answering a
    read asks nothing, and parsing the header and making the ids cost it more than the read
    (README, "Benchmarks")."""

    def __init__(self, traceparent: str | None, tracestate: str | None = None) -> None:
        self._header = traceparent
        self._state = tracestate
        self._made: IdsOnlySpan | None = None

    def _span(self) -> IdsOnlySpan:
        if self._made is None:
            self._made = unrecorded_span(remote_parent(self._header, self._state))
        return self._made

    def get_span_context(self) -> SpanContext:
        return self._span().get_span_context()

    @property
    def traceparent(self) -> str:
        return self._span().traceparent

    def __repr__(self) -> str:
        return f"ReceivedSpan({self._header!r})"


# The W3C format as OpenTelemetry's TraceContextTextMapPropagator reads it, for the same verdicts
# without building a carrier and a Context per message.
_TRACEPARENT = re.compile(r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)")
_TRACEPARENT_MAX = 512
_TRACESTATE_MAX = 8192


def remote_parent(traceparent: str | None, tracestate: str | None = None) -> SpanContext | None:
    """The remote span a W3C ``traceparent`` (and ``tracestate``) names, or None when it is absent or
    invalid (then the receiver starts a new trace)."""
    if not traceparent or len(traceparent) > _TRACEPARENT_MAX:
        return None
    match = _TRACEPARENT.fullmatch(traceparent)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    state = None
    if tracestate and len(tracestate) <= _TRACESTATE_MAX:
        state = TraceState.from_header([tracestate])
    return SpanContext(int(trace_id, 16), int(span_id, 16), True, TraceFlags(int(flags, 16)), state)


def traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def inject_trace(headers: dict[str, str]) -> None:
    """Add the current span's W3C trace context to outgoing headers; never baggage (nothing here sets
    any, and a caller's is never taken). What the global propagator would write, without its carrier walk."""
    span = trace.get_current_span()
    context = span.get_span_context()
    if context.is_valid:
        headers["traceparent"] = span.traceparent if isinstance(span, IdsOnlySpan) else traceparent(context)
        if context.trace_state:
            headers["tracestate"] = context.trace_state.to_header()
