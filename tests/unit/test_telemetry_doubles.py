"""The test doubles shipped in sidecar.testing behave like the seams they stand in for."""

from __future__ import annotations

import pytest

from sidecar.model.decision import Decision, DecisionResult
from sidecar.telemetry import Telemetry
from sidecar.testing import CapturedLogs, CapturingDecisionLog, InMemorySpans
from sidecar.typing import DecisionStore


def _result(decision_id: str, allow: bool = True) -> DecisionResult:
    return DecisionResult(
        decision=Decision(allow=allow), decision_id=decision_id, bundle_revision="r1"
    )


def test_capturing_decision_log_is_a_decision_store() -> None:
    log = CapturingDecisionLog()
    store: DecisionStore = log
    store.put(_result("a"))
    store.put(_result("b", allow=False))
    store.put(_result("a", allow=False))

    assert len(log) == 3
    assert [r.decision_id for r in log.results] == ["a", "b", "a"]
    found = store.get("a")
    assert found is not None
    assert found.decision.allow is False  # the latest record for an id wins
    assert store.get("nope") is None


def test_in_memory_spans_lookup_helpers() -> None:
    spans = InMemorySpans()
    tel = Telemetry("doubles", span_exporter=spans)
    try:
        with tel.tracer.start_as_current_span("parent"):
            with tel.tracer.start_as_current_span("child"):
                pass
            with tel.tracer.start_as_current_span("child"):
                pass
        parent = spans.one("parent")
        assert [s.name for s in spans.children_of(parent)] == ["child", "child"]
        assert len(spans.by_name("child")) == 2
        with pytest.raises(AssertionError, match="expected one 'child' span, found 2"):
            spans.one("child")
        spans.clear()
        assert spans.spans == ()
    finally:
        tel.shutdown()


def test_captured_logs_joins_partial_writes_and_rejects_non_json() -> None:
    logs = CapturedLogs()
    logs.write('{"event": "a", "n"')
    logs.write(': 1}\n{"event": "b"}\n')
    assert logs.find(event="a") == [{"event": "a", "n": 1}]
    assert logs.find(n=1) == [{"event": "a", "n": 1}]
    assert [e["event"] for e in logs.events] == ["a", "b"]
    logs.write("not json\n")
    with pytest.raises(ValueError, match="Expecting value"):
        _ = logs.events
