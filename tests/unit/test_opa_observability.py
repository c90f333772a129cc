"""OPA's decision log entries are relayed without input or result; tracing flags follow OTLP."""

from __future__ import annotations

import orjson

from sidecar.policy.opa_observability import distributed_tracing_args, relay_decision_log
from sidecar.testing import CapturedLogs

ENTRY = {
    "msg": "Decision Log",
    "level": "info",
    "decision_id": "d-1",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
    "path": "replication/decision",
    "bundles": {"policy": {"revision": "rev-7"}},
    "input": {"image": {"labels": {"customer-id": "cust-secret"}}},
    "result": {"allow": True, "routes": [{"registry": "prod-us"}]},
    "metrics": {"timer_rego_query_eval_ns": 1200, "timer_server_handler_ns": 3400, "x": 1},
}


def test_a_decision_log_entry_is_relayed_with_ids_and_timers_only() -> None:
    with CapturedLogs() as logs:
        assert relay_decision_log(orjson.dumps(ENTRY) + b"\n")
    (line,) = logs.find("opa decision")
    assert line["opa_decision_id"] == "d-1" and line["trace_id"] == ENTRY["trace_id"]
    assert line["bundle_revisions"] == {"policy": "rev-7"}
    assert line["timer_rego_query_eval_ns"] == 1200 and "x" not in line
    assert "cust-secret" not in orjson.dumps(logs.events).decode()
    assert "prod-us" not in orjson.dumps(logs.events).decode()


def test_other_output_is_left_to_the_tail() -> None:
    with CapturedLogs() as logs:
        assert not relay_decision_log(b'{"msg":"Received request.","level":"info"}\n')
        assert not relay_decision_log(b'{"msg":"Decision Log", broken\n')
        assert not relay_decision_log(b"[INFO] Decision Log\n")
    assert logs.find("opa decision") == []


def test_tracing_flags_only_with_an_endpoint_and_tls_for_https() -> None:
    assert distributed_tracing_args(None, "svc") == ()
    plain = " ".join(distributed_tracing_args("http://127.0.0.1:4317", "svc"))
    assert "distributed_tracing.address=127.0.0.1:4317" in plain
    assert "distributed_tracing.encryption=off" in plain
    assert "distributed_tracing.service_name=svc-opa" in plain
    secure = " ".join(distributed_tracing_args("https://collector:4317", "svc"))
    assert "distributed_tracing.encryption=tls" in secure
