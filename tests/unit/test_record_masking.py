"""Decision records: masked configured fields, masked secret values, bounded retention."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.masking import MASKED, RecordMask, parse_mask_path
from sidecar.model.decision import (
    Caller,
    Decision,
    DecisionResult,
    Denial,
    ImageFacts,
    ImageRef,
    PolicyInput,
    Reason,
    RegistryFacts,
)
from sidecar.records import DecisionRecord, DecisionRecords

SECRET = "customer-secret-4711"


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("input.image.labels.customer-id", ("image", "labels", "customer-id")),
        ('input.image.labels["security.scan.status"]', ("image", "labels", "security.scan.status")),
        ('input["image"].tag', ("image", "tag")),
        ("input.registries.*.name", ("registries", "*", "name")),
        ("input.registries.0", ("registries", "0")),
    ],
)
def test_mask_paths_parse(text: str, segments: tuple[str, ...]) -> None:
    assert parse_mask_path(text) == segments


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("image.tag", "starts with 'input.'"),
        ("input", "not the whole input"),
        ("input..tag", "empty segment"),
        ("input.tag.", "ends with '.'"),
        ('input.labels["open', 'expected \\["key"\\]'),
        ('input.labels["a"]x', "unexpected 'x'"),
    ],
)
def test_bad_mask_paths_say_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_mask_path(text)


def _input(labels: dict[str, str]) -> PolicyInput:
    return PolicyInput(
        now="2026-11-28T12:00:00Z",
        event="push",
        image=ImageFacts(ref=ImageRef("ci", "team/app", "prod-1"), labels=labels),
        registries=(
            RegistryFacts(name="prod-us", region="us-east-1", environment="prod"),
            RegistryFacts(name="prod-eu", region="eu-west-1", environment="prod"),
        ),
        caller=Caller(subject="alice@example.com"),
    )


def _result(decision_id: str, labels: dict[str, str] | None = None) -> DecisionResult:
    decision = Decision(
        allow=True,
        denied=(Denial("prod-us", ("CUSTOMER_NOT_ALLOWED",)),),
        reasons=(Reason("CUSTOMER_NOT_ALLOWED", f"not for {SECRET}"),),
    )
    return DecisionResult(
        decision, decision_id, "rev-1", "trace-1", input=_input(labels or {}), decided_at="t"
    )


def test_configured_paths_are_masked_whatever_their_type() -> None:
    mask = RecordMask(
        [
            "input.image.labels.customer-id",
            'input.image.labels["team.email"]',
            "input.caller.subject",
            "input.registries.*.region",
            "input.registries.1.name",
            "input.image.size_bytes",
            "input.image.labels.absent",
        ]
    )
    labels = {"customer-id": "c-1", "team.email": "t@example.com", "keep": "me"}
    doc = mask.input(_input(labels).to_json())
    assert doc["image"]["labels"] == {"customer-id": MASKED, "team.email": MASKED, "keep": "me"}
    assert doc["caller"]["subject"] == MASKED
    assert [r["region"] for r in doc["registries"]] == [MASKED, MASKED]
    assert [r["name"] for r in doc["registries"]] == ["prod-us", MASKED]
    assert doc["image"]["size_bytes"] == MASKED
    assert doc["image"]["tag"] == "prod-1"


def test_secret_values_are_masked_anywhere_in_input_and_result() -> None:
    records = DecisionRecords(mask=RecordMask(secrets={SECRET}))
    records.put(_result("d1", {"customer-id": SECRET, "other": "fine"}))
    record = records.get("d1")
    assert record is not None
    assert record.input is not None
    assert record.input["image"]["labels"] == {"customer-id": MASKED, "other": "fine"}
    assert record.decision.reasons[0].message == f"not for {MASKED}"
    assert record.decision.denied == (Denial("prod-us", ("CUSTOMER_NOT_ALLOWED",)),)
    assert SECRET not in repr(record) and SECRET not in repr(records._items)


def test_without_a_mask_the_record_is_the_decision_as_made() -> None:
    records = DecisionRecords()
    result = _result("d1", {"customer-id": "c-1"})
    records.put(result)
    record = records.get("d1")
    assert record == DecisionRecord.of(result)
    assert record is not None and record.input == result.input.to_json()  # type: ignore[union-attr]
    assert (record.bundle_revision, record.trace_id, record.decided_at) == ("rev-1", "trace-1", "t")


def test_short_secrets_match_whole_strings_only() -> None:
    mask = RecordMask(secrets={"eu", "gold"})
    assert mask.result({"a": "eu", "b": "prod-eu", "c": ["gold", "golden"]}) == {
        "a": MASKED,
        "b": "prod-eu",
        "c": [MASKED, "golden"],
    }


def test_mask_repr_hides_the_secrets() -> None:
    assert SECRET not in repr(RecordMask(["input.event"], {SECRET}))
    assert not RecordMask().active
    assert not RecordMask(secrets={""}).active


def _clocked(max_entries: int, ttl_s: float) -> tuple[DecisionRecords, list[float]]:
    now = [0.0]
    return DecisionRecords(max_entries, ttl_s, clock=lambda: now[0]), now


def test_retention_keeps_the_newest_max_entries() -> None:
    records, _ = _clocked(max_entries=3, ttl_s=100)
    for i in range(5):
        records.put(_result(f"d{i}"))
    assert len(records) == 3
    assert [records.get(f"d{i}") is not None for i in range(5)] == [False, False, True, True, True]


def test_retention_drops_expired_records_even_unasked() -> None:
    records, now = _clocked(max_entries=100, ttl_s=10)
    records.put(_result("old"))
    now[0] = 5
    records.put(_result("mid"))
    now[0] = 12  # "old" is past its TTL; putting a new record drops it without a lookup
    records.put(_result("new"))
    assert len(records) == 2
    assert records.get("old") is None
    now[0] = 15.5  # "mid" expires on lookup too
    assert records.get("mid") is None and records.get("new") is not None
    assert len(records) == 1


def test_a_masked_store_keeps_the_same_retention() -> None:
    now = [0.0]
    records = DecisionRecords(2, 10, clock=lambda: now[0], mask=RecordMask(secrets={SECRET}))
    for i in range(3):
        records.put(_result(f"d{i}", {"customer-id": SECRET}))
    assert len(records) == 2 and records.get("d0") is None
    now[0] = 11
    assert records.get("d2") is None


def _walk(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _walk(v)]
    if isinstance(value, list):
        return [s for v in value for s in _walk(v)]
    return [value] if isinstance(value, str) else []


def test_masked_record_holds_no_secret_anywhere() -> None:
    mask = RecordMask(["input.image.labels.customer-id"], {SECRET, "c-2"})
    record = DecisionRecord.of(_result("d1", {"customer-id": "c-1", "x": "c-2"}), mask)
    strings = _walk(dict(record.input or {})) + _walk(record.decision.to_json())
    assert "c-1" not in strings and "c-2" not in strings and SECRET not in strings


def _json_len(record: DecisionRecord | None) -> int:
    assert record is not None
    doc = {"input": record.input, "decision": record.decision.to_json()}
    return len(json.dumps(doc, separators=(",", ":"), default=str))


def test_retention_keeps_within_the_byte_budget() -> None:
    # Issue 15: records were capped by count only, so a few huge inputs held unbounded memory.
    big = {f"k{i}": "v" * 4000 for i in range(4)}  # ~16 KB of input per record
    one = _json_len(DecisionRecord.of(_result("d0", big)))
    assert one > 16_000
    records = DecisionRecords(max_entries=1000, ttl_s=100, max_bytes=3 * one + one // 2)
    for i in range(10):
        records.put(_result(f"d{i}", big))
    assert len(records) == 3
    assert records.size_bytes <= 3 * one + one // 2
    assert [records.get(f"d{i}") is not None for i in range(10)] == [False] * 7 + [True] * 3


def test_byte_budget_counts_the_masked_record_and_replacements() -> None:
    records = DecisionRecords(mask=RecordMask(secrets={SECRET}), max_bytes=1_000_000)
    records.put(_result("d1", {"customer-id": SECRET * 100}))
    held = records.get("d1")
    assert held is not None and records.size_bytes == _json_len(held)
    records.put(_result("d1", {"customer-id": "small"}))  # the same id again: replaced, not added
    assert len(records) == 1 and records.size_bytes == _json_len(records.get("d1"))
