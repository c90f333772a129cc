"""Scan facts from in-toto attestations: a bare statement or one wrapped in a DSSE envelope."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Literal

import orjson

from sidecar.enrich.rfc3339 import format_rfc3339, parse_rfc3339
from sidecar.model.decision import ScanFacts

__all__ = ["as_rfc3339", "scan_from_layer", "scan_from_statement"]


def as_rfc3339(text: object) -> str | None:
    """Return ``text`` as canonical RFC 3339 UTC, or None when it is not a timestamp."""
    moment = parse_rfc3339(text) if isinstance(text, str) else None
    return format_rfc3339(moment) if moment else None


def _counts(doc: Mapping[str, Any]) -> tuple[int, int] | None:
    """CRITICAL/HIGH counts from a summary object, keys in any case; None when it has neither."""
    lowered = {str(k).lower(): v for k, v in doc.items()}
    if "critical" not in lowered and "high" not in lowered:
        return None
    return int(lowered.get("critical", 0)), int(lowered.get("high", 0))


def scan_from_statement(statement: Mapping[str, Any]) -> ScanFacts | None:
    """Return scan facts (source "attestation") from an in-toto vulnerability-scan statement.

    Reads the predicate's own ``status``/``completed_at``/``critical``/``high`` when present, else
    cosign's vuln predicate (``metadata.scanFinishedOn``, counts in ``summary`` or Trivy-style
    ``scanner.result.Results[].Vulnerabilities[].Severity``). No completion time → None.
    """
    predicate = statement.get("predicate")
    if not isinstance(predicate, Mapping):
        return None
    metadata = predicate.get("metadata") or {}
    completed = as_rfc3339(predicate.get("completed_at")) or as_rfc3339(
        metadata.get("scanFinishedOn") if isinstance(metadata, Mapping) else None
    )
    if completed is None:
        return None
    counts = _counts(predicate) or _counts(predicate.get("summary") or {})
    if counts is None:
        result = (predicate.get("scanner") or {}).get("result") or {}
        severities = [
            str(v.get("Severity", "")).upper()
            for r in result.get("Results") or []
            for v in r.get("Vulnerabilities") or []
        ]
        counts = severities.count("CRITICAL"), severities.count("HIGH")
    stated = str(predicate.get("status", "")).lower()
    status: Literal["passed", "failed"] = (
        "failed" if stated == "failed" or (stated != "passed" and counts[0] > 0) else "passed"
    )
    return ScanFacts(status, completed, counts[0], counts[1], "attestation")


def statement_of(blob: bytes) -> Mapping[str, Any]:
    """Return the in-toto statement of a layer: bare, or wrapped in a DSSE envelope; {} if neither."""
    try:
        doc = orjson.loads(blob)
        if isinstance(doc, dict) and "payload" in doc and "payloadType" in doc:
            doc = orjson.loads(base64.b64decode(str(doc["payload"])))
    except ValueError:  # not JSON, or a payload that is not base64 JSON: no statement
        return {}
    return doc if isinstance(doc, dict) else {}


def scan_from_layer(blob: bytes) -> ScanFacts | None:
    """Return scan facts from one attestation layer, or None when it holds no usable scan result."""
    try:
        return scan_from_statement(statement_of(blob))
    except (ValueError, TypeError, AttributeError):
        # A malformed predicate ("critical": "many", a list where an object belongs) is no
        # scan; it must not take the image's signature/SBOM facts down with it.
        return None
