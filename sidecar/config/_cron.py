"""Cron expressions (``policy.reconcile.schedule``): 5 fields, evaluated in UTC.

``minute hour day-of-month month day-of-week`` with ``*``, ``N``, ``A-B``, lists and ``/step``
(day of week 0-7, 0 and 7 are Sunday; when both day fields are restricted, either matching is
enough, as in cron).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["Cron"]

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_HORIZON_DAYS = 366 * 5  # every valid expression matches within this (Feb 29 included)
# cron's (and Freightliner's, through robfig/cron) shorthands.
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _field(text: str, index: int) -> frozenset[int]:
    low, high = _RANGES[index]
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"{_NAMES[index]}: step must be at least 1 in {part!r}")
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            start, end = int(a), int(b)
        else:
            start = int(body)
            end = high if step_text else start
        if not low <= start <= end <= high:
            raise ValueError(f"{_NAMES[index]}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed 5-field cron expression, evaluated in UTC."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Parse ``expression`` (5 fields, or a macro such as ``@hourly``); ValueError naming the
        field that is wrong."""
        macro = expression.strip().lower()
        if macro.startswith("@"):
            if macro not in _MACROS:
                raise ValueError(f"{expression!r}: unknown macro (known: {', '.join(_MACROS)})")
            parts = _MACROS[macro].split()
        else:
            parts = expression.split()
        if len(parts) != 5:
            raise ValueError(f"{expression!r}: expected 5 fields (minute hour day month weekday)")
        try:
            fields = [_field(p, i) for i, p in enumerate(parts)]
        except ValueError as exc:
            if "invalid literal" in str(exc):
                raise ValueError(f"{expression!r}: not a number in {exc}") from None
            raise
        minutes, hours, days, months, weekdays = fields
        return cls(
            expression, minutes, hours, days, months, weekdays, parts[2] == "*", parts[4] == "*"
        )

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        by_date = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_date and by_weekday
        return by_date or by_weekday

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment`` (aware, UTC)."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(_HORIZON_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        at = day.replace(hour=hour, minute=minute)
                        if at >= start:
                            return at
            day += timedelta(days=1)
        raise ValueError(f"{self.expression!r} never matches")

    def previous_before(self, moment: datetime) -> datetime | None:
        """The last matching minute at or before ``moment`` within a year, else None."""
        end = moment.astimezone(UTC).replace(second=0, microsecond=0)
        day = end.replace(hour=0, minute=0)
        for _ in range(367):
            if self._day_matches(day):
                for hour in sorted(self.hours, reverse=True):
                    for minute in sorted(self.minutes, reverse=True):
                        at = day.replace(hour=hour, minute=minute)
                        if at <= end:
                            return at
            day -= timedelta(days=1)
        return None
