"""Tracing (OpenTelemetry) and JSON logs that carry the current trace id."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

_IDS = RandomIdGenerator()
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter (one line per message at INFO) would drown the service's own lines.
    for noisy in ("faststream", "nats", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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


def unrecorded_span(parent: SpanContext) -> NonRecordingSpan:
    """A span that only carries ids, for a process that exports nothing: a child of ``parent`` when it
    is valid, else the root of a new trace. It propagates like a tracer's span at a fraction of the cost."""
    trace_id = parent.trace_id if parent.is_valid else _IDS.generate_trace_id()
    trace_state = parent.trace_state if parent.is_valid else None
    # Not sampled, as the ALWAYS_OFF sampler would say: nothing records it downstream either.
    context = SpanContext(trace_id, _IDS.generate_span_id(), False, TraceFlags(TraceFlags.DEFAULT), trace_state)
    return NonRecordingSpan(context)


def traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
