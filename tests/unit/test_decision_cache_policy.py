"""The decision cache is only as right as the time boundaries the policy declares (issue 18).

A cached decision is reused while no boundary of ``data.replication.cacheable.time_boundaries_ns``
lies between two instants; a rule that reads ``input.now`` (or the clock) without declaring where
its answer flips would let the cache serve a stale decision. These checks fail when a policy starts
reading time somewhere the cache does not know about.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sidecar.model.decision import Decision
from sidecar.policy.decision_cache import CachedDecision, DecisionCache, rfc3339_ns

REGO = Path(__file__).resolve().parents[2] / "rego" / "replication"
_TIME = re.compile(r"\binput\.now\b|\btime\.[a-z_0-9]+\(")
# Files allowed to read time, and why it cannot reach a decision without a declared boundary.
_KNOWN = {
    "scan.rego",  # expired: declares scan.time_boundaries (the scan's expiry)
    "lib/retention.rego",  # the retention query only (data.replication.retention), not a decision
    "expiry.rego",  # the expiry trigger's query only (data.replication.expiry), not a decision
}


def _code(path: Path) -> str:
    return "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())


def _policies() -> list[Path]:
    return [p for p in sorted(REGO.rglob("*.rego")) if not p.name.endswith("_test.rego")]


def test_only_known_rules_read_time() -> None:
    readers = {str(p.relative_to(REGO)) for p in _policies() if _TIME.search(_code(p))}
    assert readers == _KNOWN


def test_no_decision_package_reaches_the_retention_plan() -> None:
    for path in _policies():
        if path.name != "retention.rego":
            assert "lib.retention" not in _code(path), path


def test_the_scan_gate_declares_its_boundary() -> None:
    code = _code(REGO / "scan.rego")
    assert "time_boundaries contains" in code
    assert "scan.time_boundaries" in _code(REGO / "cacheable.rego")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2026-11-28T12:00:00Z", 1_795_867_200 * 10**9),
        ("2026-11-28T12:00:00.5Z", 1_795_867_200 * 10**9 + 500_000_000),
        ("2026-11-28T12:00:00.000000001Z", 1_795_867_200 * 10**9 + 1),
        ("2026-11-28T13:30:00+01:30", 1_795_867_200 * 10**9),
    ],
)
def test_rfc3339_ns_reads_what_opa_reads(text: str, expected: int) -> None:
    assert rfc3339_ns(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-02-30T00:00:00Z",
        "2026-11-28 12:00:00Z",
        "2026-11-28T12:00:00",
        "2026-11-28t12:00:00z",  # OPA refuses lower case
        "2026-11-28T12:00:00.1234567891Z",  # OPA truncates; the cache does not guess
        None,
        5,
    ],
)
def test_rfc3339_ns_refuses_what_it_cannot_place(text: object) -> None:
    assert rfc3339_ns(text) is None


def test_an_entry_holds_only_between_boundaries() -> None:
    entry = CachedDecision(
        Decision(allow=True), "r1", evaluated_ns=100_000_000, boundaries_ns=(500_000_000,)
    )
    assert entry.holds_at(100_000_000)
    assert entry.holds_at(400_000_000)
    assert not entry.holds_at(499_500_000)  # within the 1 ms slack of the boundary
    assert not entry.holds_at(600_000_000)
    later = CachedDecision(
        Decision(allow=False), "r1", evaluated_ns=600_000_000, boundaries_ns=(500_000_000,)
    )
    assert later.holds_at(900_000_000)
    assert not later.holds_at(100_000_000)  # a replay before the boundary


def test_the_cache_follows_the_revision_and_its_bound() -> None:
    cache = DecisionCache(2)
    cache.put("a", Decision(allow=True), "r1", 0, ())
    cache.put("b", Decision(allow=True), "r1", 0, ())
    cache.put("c", Decision(allow=True), "r1", 0, ())
    assert len(cache) == 2
    assert cache.get("a", 0) == (None, "miss")
    assert cache.get("c", 0)[1] == "hit"
    cache.note_revision("r2")
    assert len(cache) == 0 and cache.get("c", 0) == (None, "miss")
