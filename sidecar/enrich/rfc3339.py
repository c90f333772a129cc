"""RFC 3339 timestamps as the policy reads them (OPA's ``time.parse_rfc3339_ns``, Go's layout)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["format_rfc3339", "parse_rfc3339"]

# Go's time.RFC3339 wants an upper-case "T" and a "Z" or ±hh:mm offset; Python's fromisoformat is
# laxer (spaces, no offset), so the shape is checked first and the calendar by fromisoformat.
_SHAPE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def parse_rfc3339(text: str) -> datetime | None:
    """Return the aware datetime ``text`` denotes, or None when it is not a valid RFC 3339 time."""
    found = _SHAPE.match(text)
    if found is None:
        return None
    base, fraction, offset = found.groups()
    # Python keeps microseconds; nanosecond digits beyond the sixth do not change validity.
    micro = (fraction or "")[:7]
    try:
        return datetime.fromisoformat(base + micro + ("+00:00" if offset == "Z" else offset))
    except ValueError:
        return None


def format_rfc3339(moment: datetime) -> str:
    """Return ``moment`` in UTC as RFC 3339 with a ``Z`` suffix, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
