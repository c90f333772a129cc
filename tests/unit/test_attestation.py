"""Scan facts from in-toto attestations: statements, DSSE-wrapped layers and their timestamps."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from sidecar.enrich.attestation import as_rfc3339, scan_from_layer, scan_from_statement
from sidecar.model.decision import ScanFacts


def _statement(predicate: Any) -> dict[str, Any]:
    """An in-toto vulnerability-scan statement about one image with ``predicate``."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "img", "digest": {"sha256": "ab" * 32}}],
        "predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1",
        "predicate": predicate,
    }


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        (
            {"status": "passed", "completed_at": "2026-01-02T03:04:05Z", "critical": 0, "high": 2},
            ScanFacts("passed", "2026-01-02T03:04:05Z", 0, 2, "attestation"),
        ),
        (  # no stated status: any critical finding fails the scan
            {
                "metadata": {"scanFinishedOn": "2026-01-02T03:04:05.123456789Z"},
                "summary": {"CRITICAL": 1, "HIGH": 0},
            },
            ScanFacts("failed", "2026-01-02T03:04:05Z", 1, 0, "attestation"),
        ),
        (  # Trivy's report: counts come from the severities of the listed vulnerabilities
            {
                "metadata": {"scanFinishedOn": "2026-01-02T03:04:05+02:00"},
                "scanner": {
                    "result": {
                        "Results": [
                            {"Vulnerabilities": [{"Severity": "HIGH"}, {"Severity": "LOW"}]},
                            {"Vulnerabilities": [{"Severity": "HIGH"}]},
                        ]
                    }
                },
            },
            ScanFacts("passed", "2026-01-02T01:04:05Z", 0, 2, "attestation"),
        ),
        (  # a stated verdict wins over the counts
            {"status": "FAILED", "completed_at": "2026-01-02T03:04:05Z", "critical": 0},
            ScanFacts("failed", "2026-01-02T03:04:05Z", 0, 0, "attestation"),
        ),
    ],
)
def test_scan_statements_become_attestation_scan_facts(
    predicate: dict[str, Any], expected: ScanFacts
) -> None:
    assert scan_from_statement(_statement(predicate)) == expected


@pytest.mark.parametrize(
    "predicate",
    [None, {}, {"critical": 0}, {"completed_at": "yesterday", "critical": 0}],
)
def test_statements_without_a_completion_time_are_no_scan(predicate: Any) -> None:
    assert scan_from_statement(_statement(predicate)) is None


def test_a_layer_holds_a_bare_or_dsse_wrapped_statement() -> None:
    statement = json.dumps(
        _statement({"status": "passed", "completed_at": "2026-01-02T03:04:05Z", "high": 1})
    ).encode()
    envelope = {
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64.b64encode(statement).decode(),
        "signatures": [{"keyid": "", "sig": "MEUCIQ-test"}],
    }
    expected = ScanFacts("passed", "2026-01-02T03:04:05Z", 0, 1, "attestation")
    assert scan_from_layer(statement) == expected
    assert scan_from_layer(json.dumps(envelope).encode()) == expected


@pytest.mark.parametrize(
    "blob",
    [
        b"\x1f\x8b\x08 binary, not JSON",
        b'{"payloadType": "application/vnd.in-toto+json", "payload": "not base64 JSON!"}',
        b"[1, 2]",
        json.dumps({"spdxVersion": "SPDX-2.3", "packages": []}).encode(),
    ],
)
def test_a_layer_without_a_scan_statement_is_no_scan(blob: bytes) -> None:
    assert scan_from_layer(blob) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z"),
        ("2026-01-02T03:04:05.999999999Z", "2026-01-02T03:04:05Z"),
        ("2026-01-02T03:04:05-05:30", "2026-01-02T08:34:05Z"),
        ("2026-01-02 03:04:05Z", None),
        ("2026-02-30T00:00:00Z", None),
        (1767323045, None),
        (None, None),
    ],
)
def test_timestamps_become_canonical_utc_or_none(text: object, expected: str | None) -> None:
    assert as_rfc3339(text) == expected


@pytest.mark.parametrize(
    "predicate",
    [
        {"status": "passed", "completed_at": "2026-01-02T03:04:05Z", "critical": "many"},
        {"completed_at": "2026-01-02T03:04:05Z", "summary": ["not", "an", "object"]},
        {"completed_at": "2026-01-02T03:04:05Z", "scanner": {"result": {"Results": [1]}}},
    ],
)
def test_a_malformed_scan_predicate_is_no_scan(predicate: dict[str, object]) -> None:
    statement = {"_type": "https://in-toto.io/Statement/v1", "predicate": predicate}
    assert scan_from_layer(json.dumps(statement).encode()) is None
