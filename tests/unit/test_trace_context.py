"""The project's own W3C trace-context reading and writing gives OpenTelemetry's verdicts."""

from __future__ import annotations

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.telemetry import (
    IdsOnlySpan,
    inject_trace,
    random_uuid_int,
    remote_parent,
    unrecorded_span,
    uuid_text,
)

W3C = TraceContextTextMapPropagator()
TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


@pytest.mark.parametrize(
    "header",
    [
        f"00-{TRACE}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-00",
        f"  00-{TRACE}-{SPAN}-01\t",
        f"01-{TRACE}-{SPAN}-01-future-fields",
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"ff-{TRACE}-{SPAN}-01",
        f"00-{'0' * 32}-{SPAN}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE.upper()}-{SPAN}-01",
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}",
        "00-" + "a" * 600,
        "",
        "garbage",
    ],
)
def test_a_traceparent_is_read_as_opentelemetry_reads_it(header: str) -> None:
    expected = trace.get_current_span(W3C.extract({"traceparent": header})).get_span_context()
    got = remote_parent(header)
    if not expected.is_valid:
        assert got is None
        return
    assert got is not None
    assert (got.trace_id, got.span_id, got.trace_flags, got.is_remote) == (
        expected.trace_id,
        expected.span_id,
        expected.trace_flags,
        expected.is_remote,
    )


def test_tracestate_travels_with_a_valid_traceparent_only() -> None:
    parent = remote_parent(f"00-{TRACE}-{SPAN}-01", "vendor=value")
    assert parent is not None and parent.trace_state == TraceState([("vendor", "value")])
    assert remote_parent("garbage", "vendor=value") is None


@pytest.mark.parametrize("state", [None, TraceState([("vendor", "value")])])
def test_inject_trace_writes_what_the_w3c_propagator_writes(state: TraceState | None) -> None:
    span = NonRecordingSpan(SpanContext(int(TRACE, 16), int(SPAN, 16), False, TraceFlags(1), state))
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        ours: dict[str, str] = {}
        theirs: dict[str, str] = {}
        inject_trace(ours)
        W3C.inject(theirs)
    finally:
        otel_context.detach(token)
    assert ours == theirs


def test_nothing_is_injected_without_a_current_span() -> None:
    headers: dict[str, str] = {}
    inject_trace(headers)
    assert headers == {}


def test_a_new_trace_id_is_a_random_version_4_uuid_and_a_child_keeps_its_parents() -> None:
    import uuid

    ids = {random_uuid_int() for _ in range(1000)}
    assert len(ids) == 1000
    for value in list(ids)[:50]:
        parsed = uuid.UUID(uuid_text(value))
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and parsed.int == value
    parent = remote_parent(f"00-{TRACE}-{SPAN}-01", "vendor=value")
    child = unrecorded_span(parent).get_span_context()
    assert child.trace_id == int(TRACE, 16) and child.span_id != int(SPAN, 16)
    assert child.trace_state == TraceState([("vendor", "value")]) and not child.trace_flags.sampled


def assert_injects_what_the_w3c_propagator_writes(span: IdsOnlySpan) -> None:
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        ours: dict[str, str] = {}
        theirs: dict[str, str] = {}
        inject_trace(ours)
        W3C.inject(theirs)
    finally:
        otel_context.detach(token)
    assert ours == theirs and ours["traceparent"] == span.traceparent


@pytest.mark.parametrize("parent", [None, f"00-{TRACE}-{SPAN}-01"])
def test_an_ids_only_span_injects_what_the_w3c_propagator_writes(parent: str | None) -> None:
    span = unrecorded_span(remote_parent(parent, "vendor=value") if parent else None)
    assert_injects_what_the_w3c_propagator_writes(span)


@pytest.mark.parametrize(
    "header", [None, f"00-{TRACE}-{SPAN}-01", "garbage", f"00-{'0' * 32}-{SPAN}-01", f"ff-{TRACE}-{SPAN}-01"]
)
def test_a_received_span_is_the_ids_only_child_of_its_header_made_when_first_asked(
    header: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared import telemetry

    parsed: list[str | None] = []
    real = telemetry.remote_parent

    def counted(header: str | None, state: str | None = None) -> SpanContext | None:
        parsed.append(header)
        return real(header, state)

    monkeypatch.setattr(telemetry, "remote_parent", counted)
    span = telemetry.ReceivedSpan(header, "vendor=value")
    assert parsed == []  # nothing parsed until someone asks
    context = span.get_span_context()
    assert span.get_span_context() is context and parsed == [header]  # once, then the same ids
    parent = real(header, "vendor=value")
    if parent is not None:
        assert context.trace_id == parent.trace_id and context.span_id != parent.span_id
        assert context.trace_state == TraceState([("vendor", "value")])
    else:
        assert context.is_valid  # an absent or invalid header starts a new trace
    assert_injects_what_the_w3c_propagator_writes(span)
