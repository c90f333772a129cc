"""Logging: JSON lines carrying timestamp, level, logger, trace ids and decision ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sidecar.errors import ConfigError
from sidecar.telemetry import (
    Telemetry,
    configure_logging,
    decision_log_context,
    get_logger,
    span_id_hex,
    trace_id_hex,
)
from sidecar.telemetry._logging import snapshot_logging
from sidecar.testing import CapturedLogs, InMemorySpans

# Created at import, before any configure_logging call, exactly like the sidecar's own modules.
_module_log = get_logger("tests.module")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    snapshot = snapshot_logging()
    yield
    snapshot.restore()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    tel = Telemetry("log-test", span_exporter=InMemorySpans())
    yield tel
    tel.shutdown()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_are_json_with_timestamp_level_logger_and_event() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    get_logger("sidecar.decide").info("decision", allow=True, routes=["a", "b"])

    [line] = _lines(out)
    assert line["event"] == "decision"
    assert line["level"] == "info"
    assert line["logger"] == "sidecar.decide"
    assert line["allow"] is True
    assert line["routes"] == ["a", "b"]
    stamp = datetime.fromisoformat(str(line["timestamp"]))
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert "trace_id" not in line  # no span is current


def test_trace_and_span_ids_are_added_inside_a_span(telemetry: Telemetry) -> None:
    with CapturedLogs() as logs:
        with telemetry.tracer.start_as_current_span("policy.decide") as span:
            get_logger("sidecar.decide").info("inside")
        get_logger("sidecar.decide").info("outside")

    [inside] = logs.find(event="inside")
    assert inside["trace_id"] == trace_id_hex(span)
    assert inside["span_id"] == span_id_hex(span)
    [outside] = logs.find(event="outside")
    assert "trace_id" not in outside


def test_an_explicit_trace_id_is_not_overwritten(telemetry: Telemetry) -> None:
    with CapturedLogs() as logs, telemetry.tracer.start_as_current_span("child"):
        get_logger("x").info("late", trace_id="f" * 32)
    assert logs.find(event="late")[0]["trace_id"] == "f" * 32


def test_decision_context_tags_every_line_inside_it() -> None:
    with CapturedLogs() as logs:
        with decision_log_context("dec-42", image="hub/app:prod-1"):
            get_logger("sidecar.decide").info("enriched")
            logging.getLogger("sidecar.policy").warning("opa slow")
        get_logger("sidecar.decide").info("unrelated")

    assert logs.find(event="enriched")[0]["decision_id"] == "dec-42"
    stdlib = logs.find(event="opa slow")[0]
    assert stdlib["decision_id"] == "dec-42"
    assert stdlib["image"] == "hub/app:prod-1"
    assert "decision_id" not in logs.find(event="unrelated")[0]


def test_stdlib_records_are_rendered_as_the_same_json(telemetry: Telemetry) -> None:
    with CapturedLogs("info") as logs, telemetry.tracer.start_as_current_span("s") as span:
        logging.getLogger("aiohttp.access").warning("slow %s took %d ms", "GET /metrics", 12)
        logging.getLogger("aiohttp.access").debug("dropped below info")

    [line] = logs.events
    assert line["event"] == "slow GET /metrics took 12 ms"
    assert line["logger"] == "aiohttp.access"
    assert line["level"] == "warning"
    assert line["trace_id"] == trace_id_hex(span)


def test_level_filters_lower_levels() -> None:
    out = io.StringIO()
    configure_logging("warning", stream=out)
    log = get_logger("x")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [line["event"] for line in _lines(out)] == ["w", "e"]


def test_exceptions_are_rendered_into_the_line() -> None:
    with CapturedLogs() as logs:
        try:
            raise KeyError("missing-key")
        except KeyError:
            get_logger("x").exception("lookup failed")
    [line] = logs.events
    assert line["level"] == "error"
    assert "KeyError: 'missing-key'" in str(line["exception"])


def test_reconfiguring_replaces_instead_of_duplicating() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", stream=first)
    configure_logging("info", stream=second)
    get_logger("x").info("structlog")
    logging.getLogger("y").warning("stdlib")
    assert first.getvalue() == ""
    assert [line["event"] for line in _lines(second)] == ["structlog", "stdlib"]


def test_loggers_created_before_configuration_follow_it() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    _module_log.info("from module logger")
    [line] = _lines(out)
    assert line["logger"] == "tests.module"


def test_default_stream_is_the_current_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    get_logger("x").info("to stderr", n=1)
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout belongs to the CLI's JSON answers
    assert json.loads(captured.err.strip())["n"] == 1


def test_console_format_is_human_readable() -> None:
    out = io.StringIO()
    configure_logging("info", "console", stream=out)
    get_logger("sidecar.app").info("sidecar ready", grpc_port=50051)
    text = out.getvalue()
    assert "sidecar ready" in text
    assert "grpc_port=50051" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


@pytest.mark.parametrize(
    ("level", "fmt", "key"), [("loud", "json", "log_level"), ("info", "xml", "log_format")]
)
def test_bad_level_or_format_is_a_config_error(level: str, fmt: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        configure_logging(level, fmt, stream=io.StringIO())
    assert info.value.key == key


def test_captured_logs_restores_the_previous_setup() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    with CapturedLogs() as logs:
        get_logger("x").info("captured")
    get_logger("x").info("after")
    assert [e["event"] for e in logs.events] == ["captured"]
    assert [line["event"] for line in _lines(out)] == ["after"]
