"""The cron expressions of policy.reconcile.schedule: parsing, errors and the next/previous time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sidecar.config import Cron


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", "2026-12-06T07:14:59", "2026-12-06T07:15:00"),
        ("*/15 * * * *", "2026-12-06T07:15:00", "2026-12-06T07:30:00"),
        ("30 2 * * *", "2026-12-06T02:30:00", "2026-12-07T02:30:00"),
        ("0 0 1 * *", "2026-12-06T00:00:00", "2027-01-01T00:00:00"),
        ("0 3 * * 0", "2026-12-06T04:00:00", "2026-12-13T03:00:00"),  # Sunday; 7 works too
        ("0 3 * * 7", "2026-12-06T04:00:00", "2026-12-13T03:00:00"),
        ("0 12 29 2 *", "2026-03-01T00:00:00", "2028-02-29T12:00:00"),
        ("0 9-17/4 * * 1-5", "2026-12-05T10:00:00", "2026-12-07T09:00:00"),  # Sat → Mon 09:00
        ("0 0 13 * 5", "2026-12-05T00:00:00", "2026-12-11T00:00:00"),  # day 13 OR Friday
    ],
)
def test_next_after(expression: str, after: str, expected: str) -> None:
    assert Cron.parse(expression).next_after(_at(after)) == _at(expected)


def test_previous_before_finds_the_time_a_stopped_sidecar_missed() -> None:
    cron = Cron.parse("0 2 * * *")
    assert cron.previous_before(_at("2026-12-06T07:00:00")) == _at("2026-12-06T02:00:00")
    assert cron.previous_before(_at("2026-12-06T01:59:00")) == _at("2026-12-05T02:00:00")


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("* * * *", "expected 5 fields"),
        ("60 * * * *", "minute: '60' is outside 0-59"),
        ("* 24 * * *", "hour: '24' is outside 0-23"),
        ("*/0 * * * *", "minute: step must be at least 1"),
        ("* * * * mon", "not a number"),
    ],
)
def test_bad_expressions_name_the_field(expression: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Cron.parse(expression)


def test_a_bad_schedule_is_a_config_error_with_its_line(tmp_path: object) -> None:
    from pathlib import Path  # noqa: PLC0415

    from sidecar.config import load_config  # noqa: PLC0415
    from sidecar.errors import ConfigError  # noqa: PLC0415

    path = Path(str(tmp_path)) / "c.yaml"
    path.write_text("policy:\n  reconcile:\n    schedule: '61 * * * *'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c.yaml:3: policy.reconcile.schedule: .*outside 0-59"):
        load_config(path)


@pytest.mark.parametrize(
    ("macro", "after", "expected"),
    [
        ("@hourly", "2026-12-06T07:14:59", "2026-12-06T08:00:00"),
        ("@daily", "2026-12-06T07:14:59", "2026-12-07T00:00:00"),
        ("@midnight", "2026-12-06T07:14:59", "2026-12-07T00:00:00"),
        ("@weekly", "2026-12-06T07:14:59", "2026-12-13T00:00:00"),  # Sunday
        ("@monthly", "2026-12-06T07:14:59", "2027-01-01T00:00:00"),
        ("@yearly", "2026-12-06T07:14:59", "2027-01-01T00:00:00"),
    ],
)
def test_macros_are_cron_shorthands(macro: str, after: str, expected: str) -> None:
    assert Cron.parse(macro).next_after(_at(after)) == _at(expected)


def test_a_legacy_rule_schedule_is_checked_like_a_cron(tmp_path: object) -> None:
    from pathlib import Path  # noqa: PLC0415

    from sidecar.config import load_config  # noqa: PLC0415
    from sidecar.errors import ConfigError  # noqa: PLC0415

    path = Path(str(tmp_path)) / "c.yaml"
    path.write_text(
        "policy:\n  legacy:\n    rules:\n      - source_repository: 'a/*'\n"
        "        destination_registry: x\n        schedule: '@every 1h'\n",
        encoding="utf-8",
    )
    with pytest.raises(
        ConfigError, match=r"c.yaml:6: policy.legacy.rules\[0\].schedule: .*unknown macro"
    ):
        load_config(path)
