"""Test doubles shipped with the package for its own seams: spans, log lines, decision records.

They are real implementations of the seams (a SpanExporter, a log stream, a DecisionStore), so a
test that uses them exercises the same code paths as production; only the destination differs.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecar.model.decision import DecisionResult
from sidecar.records import DecisionRecord
from sidecar.telemetry import LoggingSnapshot, configure_logging, snapshot_logging

__all__ = ["CapturedLogs", "CapturingDecisionLog", "InMemorySpans"]


class InMemorySpans(InMemorySpanExporter):
    """A SpanExporter keeping finished spans in memory; use as ``Telemetry(span_exporter=…)``."""

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        """Every finished span so far, in the order they ended."""
        return self.get_finished_spans()

    def by_name(self, name: str) -> list[ReadableSpan]:
        """The finished spans called ``name``."""
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        """The single finished span called ``name``; AssertionError unless there is exactly one."""
        found = self.by_name(name)
        if len(found) != 1:
            seen = [s.name for s in self.spans]
            raise AssertionError(f"expected one {name!r} span, found {len(found)} in {seen}")
        return found[0]

    def children_of(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """The finished spans whose parent is ``parent``."""
        ctx = parent.get_span_context()
        if ctx is None:
            return []
        return [
            s
            for s in self.spans
            if s.parent is not None
            and s.parent.span_id == ctx.span_id
            and s.parent.trace_id == ctx.trace_id
        ]


class CapturedLogs(io.TextIOBase):
    """Collects what the real logging setup writes, parsed back from its JSON lines.

    ``with CapturedLogs() as logs:`` points configure_logging (structlog and stdlib) at this object
    and restores the previous setup on exit; ``logs.events`` are the decoded lines, so a test sees
    exactly what an operator's log pipeline would receive.
    """

    def __init__(self, level: str = "debug") -> None:
        """Capture lines at ``level`` and above once entered."""
        super().__init__()
        self._level = level
        self._lock = threading.Lock()
        self._pending = ""
        self._lines: list[str] = []
        self._snapshot: LoggingSnapshot | None = None

    def __enter__(self) -> CapturedLogs:
        """Start capturing."""
        self._snapshot = snapshot_logging()
        configure_logging(self._level, "json", stream=self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop capturing and restore the logging setup found on entry."""
        if self._snapshot is not None:
            self._snapshot.restore()
            self._snapshot = None

    def write(self, s: str) -> int:
        """Receive rendered output (possibly partial lines)."""
        with self._lock:
            self._pending += s
            *complete, self._pending = self._pending.split("\n")
            self._lines.extend(line for line in complete if line)
        return len(s)

    @property
    def lines(self) -> list[str]:
        """The raw lines written so far."""
        with self._lock:
            return list(self._lines)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every line decoded from JSON; ValueError if a line is not a JSON object."""
        decoded = []
        for line in self.lines:
            value = json.loads(line)
            if not isinstance(value, dict):
                raise ValueError(f"log line is not a JSON object: {line!r}")
            decoded.append(value)
        return decoded

    def find(self, event: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """The events whose ``event`` (if given) and every field in ``fields`` match exactly."""
        wanted: Mapping[str, Any] = fields if event is None else {"event": event, **fields}
        return [e for e in self.events if all(k in e and e[k] == v for k, v in wanted.items())]


class CapturingDecisionLog:
    """A DecisionStore that keeps every record it is given, in order, for assertions."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._results: list[DecisionResult] = []

    def put(self, result: DecisionResult) -> None:
        """Record ``result`` (a later record with the same id shadows the earlier one in get)."""
        with self._lock:
            self._results.append(result)

    def get(self, decision_id: str) -> DecisionRecord | None:
        """The latest record with ``decision_id`` (unmasked), or None."""
        with self._lock:
            for result in reversed(self._results):
                if result.decision_id == decision_id:
                    return DecisionRecord.of(result)
        return None

    def hides_any_of(self, doc: Mapping[str, Any]) -> bool:
        """Nothing: this log keeps records unmasked."""
        return False

    @property
    def results(self) -> tuple[DecisionResult, ...]:
        """Every record put so far, oldest first."""
        with self._lock:
            return tuple(self._results)

    def __len__(self) -> int:
        """How many records were put."""
        with self._lock:
            return len(self._results)
