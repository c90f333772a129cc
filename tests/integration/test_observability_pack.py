"""The observability pack: alert rules (promtool), the Grafana dashboard, and what they query.

* ``promtool check rules`` and ``promtool test rules`` (the pinned promtool from
  scripts/install-tools.sh; a missing promtool fails the test, it is never skipped) pass on
  deploy/prometheus/alerts.yaml and its unit tests, every alert has a firing unit test, and
  ``promtool check config`` accepts deploy/observability/prometheus.yml, which loads the rules;
* every PromQL expression of the dashboard parses (promtool, with Grafana's variables filled in);
* every metric the alerts and the dashboard name is one a real running sidecar exports on
  /metrics after decisions and a replication through real registries — the names come from that
  scrape, never from a hand-kept list — and the queue gauges and per-destination job metrics
  carry the replication that just happened.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sidecar._proto import policy_pb2 as pb
from sidecar.config import load_config
from sidecar.oci import RegistryClients
from sidecar.tools import find_tool
from tests.support.fleet import registry_fleet
from tests.support.images import push_image, scanned_labels
from tests.support.sidecar import isolated_config, running_sidecar

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "policy-sidecar.json"

# PromQL words that look like metric names: aggregations and functions are recognised by the
# "(" that follows them, these are the operators and literals that never take one.
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"})
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.:$])[A-Za-z_:][A-Za-z0-9_:]*")
# Grafana's variables, replaced by something PromQL accepts so promtool can parse the query.
_GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$job": ".*"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, matchers and ranges removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        if text[match.end() :].lstrip().startswith("(") or match.group(0) in _KEYWORDS:
            continue  # a function or an aggregation, or an operator
        names.add(match.group(0))
    return names


def test_metric_names_reads_promql_the_way_prometheus_does() -> None:
    # The extractor itself: a wrong one would let an unexported name through.
    expr = (
        'histogram_quantile(0.99, sum by (le, registry) (rate(a_bucket{job=~"$job",x="b c"}'
        "[$__rate_interval]))) > on (registry) group_left(kind) max without (pod) (b_total "
        "offset 5m) and bool c:recorded unless count(d == 1)"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c:recorded", "d"}


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        t["expr"]
        for p in panels(dashboard["panels"])
        for t in p.get("targets", [])
        if t.get("expr")
    ]


def _promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # find_tool raises ToolMissing (the test fails, saying to run scripts/install-tools.sh).
    return subprocess.run(
        [str(find_tool("promtool")), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = _promtool("check", "rules", ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alert_rules())} rules found" in checked.stdout + checked.stderr
    tested = _promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_the_shipped_prometheus_config_loads_the_alert_rules() -> None:
    config = ROOT / "deploy" / "observability" / "prometheus.yml"
    checked = _promtool("check", "config", config)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout + checked.stderr


def test_every_alert_has_a_firing_unit_test() -> None:
    doc = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    fired = {
        case["alertname"]
        for test in doc["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in _alert_rules()} <= fired


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    rules = []
    for n, expr in enumerate(exprs):
        query = expr
        for var, value in _GRAFANA_VARS.items():
            query = query.replace(var, value)
        assert "$" not in query, f"unknown Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:query_{n}", "expr": query})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = _promtool("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def exported_names(exposition: str) -> set[str]:
    """Every series name a scrape of ``exposition`` can return, samples or not yet.

    A labelled family with no child yet (no job has failed) has no sample but is exported: its
    TYPE line gives its name, and its type gives the names its samples take.
    """
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


async def _scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        assert response.status == 200
        return await response.text()


def _value(exposition: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


async def test_alerts_and_dashboard_query_only_what_a_running_sidecar_exports(
    tmp_path: Path,
) -> None:
    replication = {"queue_metrics_interval_s": 1, "workers": 2}
    with registry_fleet(tmp_path, replication=replication) as fleet:
        config = isolated_config(load_config(fleet.config_path), tmp_path / "run")
        clients = RegistryClients(config.registries)
        try:
            async with running_sidecar(config) as running:
                assert running.sidecar.metrics is not None
                url = running.sidecar.metrics.url
                image = await push_image(
                    clients.get("ci"), "web/app", tag="prod-1.0", seed=7, labels=scanned_labels()
                )
                request = pb.DecideRequest(
                    image=pb.Image(registry="ci", repository="web/app", tag="prod-1.0")
                )
                for _ in range(3):
                    await running.stub.Decide(request, timeout=30)
                await running.stub.Replicate(pb.ReplicateRequest(request=request), timeout=30)
                exposition = await _settled(running.stub, url, image.digest)
        finally:
            await clients.close()

    exported = exported_names(exposition)
    queried: dict[str, set[str]] = {}
    for rule in _alert_rules():
        queried[f"alert {rule['alert']}"] = metric_names(rule["expr"])
    for n, expr in enumerate(_dashboard_exprs()):
        queried[f"dashboard query {n}: {expr}"] = metric_names(expr)
    assert all(queried.values()), [where for where, names in queried.items() if not names]
    unknown = {where: names - exported for where, names in queried.items() if names - exported}
    assert not unknown, f"queried but not exported: {unknown}"

    # What the replication left in the per-destination series and the queue gauges.
    for registry in ("prod-eu", "prod-us"):
        done = _value(
            exposition,
            "policy_sidecar_replication_jobs_finished_total",
            registry=registry,
            state="succeeded",
        )
        assert done == 1, registry
        assert _value(
            exposition, "policy_sidecar_replication_bytes_copied_total", registry=registry
        )
        assert (
            _value(
                exposition,
                "policy_sidecar_replication_queue_depth",
                registry=registry,
                state="queued",
            )
            == 0
        )
    assert (
        _value(exposition, "policy_sidecar_replication_queue_oldest_seconds", registry="dev-us")
        == 0
    )
    assert _value(exposition, "policy_sidecar_decisions_total", outcome="allow", degraded="false")


async def _settled(stub: Any, url: str, digest: str, timeout_s: float = 120) -> str:
    """Scrape until both prod copies succeeded and the queue gauges show nothing left to do."""
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = (await stub.ListJobs(pb.ListJobsRequest(limit=50))).jobs
        done = [j for j in jobs if j.digest == digest and j.state == "succeeded"]
        exposition = await _scrape(url)
        unfinished = [
            _value(exposition, "policy_sidecar_replication_queue_depth", registry=r, state=s)
            for r in ("prod-eu", "prod-us")
            for s in ("queued", "running")
        ]
        if len(done) >= 2 and unfinished == [0, 0, 0, 0]:
            return exposition
        assert time.monotonic() < deadline, [(j.destination, j.state, j.error) for j in jobs]
        await asyncio.sleep(0.3)
