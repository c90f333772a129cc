"""Property-based (fuzz) test support: hypothesis profiles, example budgets and the §3.2 contract check.

Profiles, chosen with ``HYPOTHESIS_PROFILE`` (default ``ci``):

- ``ci`` — small, derandomized example counts, so every run tries the same inputs and a failure
  reproduces exactly; the whole fuzz suite stays well under a minute on two cores;
- ``storm`` — :data:`STORM_FACTOR` times the examples, random seeds, and the example database kept in
  ``.hypothesis/`` so a failure found once is replayed first next time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "CASES_CONFIG",
    "FUZZ_TOKEN",
    "PROFILE_ENV",
    "ROOT",
    "STORM_FACTOR",
    "active_profile",
    "contract_violations",
    "examples",
    "json_values",
    "nasty_text",
    "near_rfc3339",
    "register_profiles",
    "urlish",
]

PROFILE_ENV = "HYPOTHESIS_PROFILE"
STORM_FACTOR = 25
ROOT = Path(__file__).resolve().parents[2]
# The data-driven cases' inventory: nine registries across environments, GDPR, DR and tenants.
CASES_CONFIG = ROOT / "tests" / "cases" / "sidecar.yaml"
_DEFAULT_PROFILE = "ci"
# The bearer token of the authenticated fuzz sidecar (policy.auth), bound to the platform replicator.
FUZZ_TOKEN = "fuzz-token-0123456789"

# Hand-picked strings that break naive parsers: empty, whitespace, NUL, combining and
# right-to-left characters, emoji, templates, globs, JSON-ish words, quotes.
_NASTY = ("", " ", "\n", "\x00", "é", "İ", "🚀", "\u202e", "a" * 300, "${HOME}", "$1", "*",
          "../..", "null", "true", "0", "-1", "1e400", "NaN", "[", "{", "%s", "'", '"')  # fmt: skip
# Any Unicode text a UTF-8 wire format can carry (control characters and NUL included; lone
# surrogates cannot be encoded at all), plus the strings above.
nasty_text: st.SearchStrategy[str] = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40), st.sampled_from(_NASTY)
)

# Any JSON document (orjson-encodable: no NaN, integers within 64 bits), a few levels deep.
json_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        nasty_text,
    ),
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(nasty_text, kids, max_size=4)
    ),
    max_leaves=20,
)

# URL-shaped strings, most of them broken: bad IPv6 brackets, ports out of range or not numbers,
# missing schemes or hosts — what urllib.parse raises ValueError on.
urlish: st.SearchStrategy[str] = st.builds(
    lambda scheme, userinfo, host, port, path: f"{scheme}{userinfo}{host}{port}{path}",
    st.sampled_from(["http://", "https://", "s3://", "gs://", "postgresql://", "", "//", "http:/"]),
    st.sampled_from(["", "u:p@", "u@", "@"]),
    st.sampled_from(["127.0.0.1", "[::1]", "[x", "a]b", "[::1", "", "host", "ex ample", "é.com"]),
    st.sampled_from(["", ":80", ":0", ":65536", ":99999999", ":xx", ":-1", ":"]),
    st.sampled_from(["", "/", "/v2/x", "?q", "#f", "/bundles/name"]),
)


def _rfc3339(moment: datetime, fraction: str, offset: str) -> str:
    return moment.isoformat(timespec="seconds") + fraction + offset


# Near misses of RFC 3339: lower-case t, 24:00, Feb 30, full-width digits, a trailing newline.
_NOT_QUITE_RFC3339 = ("2026-01-01t00:00:00Z", "2026-01-01T24:00:00Z", "2026-02-30T00:00:00Z",
                      "\uff12\uff10\uff12\uff16-01-01T00:00:00Z", "2026-01-01T00:00:00Z\n",
                      "0000-01-01T00:00:00Z")  # fmt: skip
# Valid RFC 3339 times and near misses: missing or out-of-range offsets, too many fraction
# digits, junk (a newline, an Arabic-Indic digit) spliced into a valid time.
near_rfc3339: st.SearchStrategy[str] = st.one_of(
    st.builds(
        _rfc3339,
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
        st.sampled_from(["", ".5", ".123456789", ".1234567890"]),
        st.sampled_from(["Z", "+00:00", "-23:59", "+24:00", "z", "", "+0100"]),
    ),
    st.builds(
        lambda t, junk: t[: len(t) // 2] + junk + t[len(t) // 2 :],
        st.just((datetime(2026, 1, 1, tzinfo=UTC) - timedelta(days=1)).isoformat()),
        st.sampled_from(["\n", "\u0663", "T", " ", "x"]),
    ),
    st.sampled_from(_NOT_QUITE_RFC3339),
)


def register_profiles() -> None:
    """Register the ``ci``, ``deep`` and ``storm`` profiles (no deadline: real processes answer).

    ``ci`` (pytest, every run) and ``deep`` (25x the examples, after the fault storm in CI) are
    derandomized, so they gate: the same examples every run. ``storm`` is the same budget with
    random seeds and a failure database: a search for new bugs, run on demand.
    """
    # A real OPA, gRPC server or subprocess takes as long as it takes on a loaded machine; the
    # properties are about answers, not timing, so neither the deadline nor too_slow applies.
    common: dict[str, Any] = {
        "deadline": None,
        "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    }
    settings.register_profile("ci", max_examples=30, derandomize=True, database=None, **common)
    settings.register_profile(
        "deep", max_examples=30 * STORM_FACTOR, derandomize=True, database=None, **common
    )
    settings.register_profile("storm", max_examples=30 * STORM_FACTOR, **common)


def active_profile() -> str:
    """Return the profile named by ``HYPOTHESIS_PROFILE`` (default ``ci``)."""
    return os.environ.get(PROFILE_ENV, _DEFAULT_PROFILE) or _DEFAULT_PROFILE


def examples(ci: int) -> int:
    """Return the example budget of a test that tries ``ci`` examples in the ``ci`` profile."""
    return ci * STORM_FACTOR if active_profile() in ("deep", "storm") else ci


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape_problems(decision: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if not isinstance(decision.get("allow"), bool):
        problems.append(f"allow is not a bool: {decision.get('allow')!r}")
    priority = decision.get("priority")
    if not _is_int(priority) or not 0 <= priority <= 100:
        problems.append(f"priority is not an int in 0..100: {priority!r}")
    for key in ("routes", "denied", "deferred", "actions", "reasons", "policies"):
        if not isinstance(decision.get(key, []), list):
            problems.append(f"{key} is not a list")
    return problems


def contract_violations(
    decision: Mapping[str, Any], registries: Sequence[str], source: str
) -> list[str]:
    """Return how ``decision`` breaks DESIGN §3.2 for an inventory of ``registries`` (empty: none).

    Checked: field types; every non-source registry in exactly one of routes/denied/deferred and
    the source (and unknown names) in none; ranks 1..n in order; ``allow: false`` → no routes and
    no deferrals; every denial carries at least one reason.
    """
    problems = _shape_problems(decision)
    if problems:
        return problems
    routes = decision.get("routes", [])
    denied = decision.get("denied", [])
    deferred = decision.get("deferred", [])
    placed: dict[str, list[str]] = {}
    for key, entries in (("routes", routes), ("denied", denied), ("deferred", deferred)):
        for entry in entries:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("registry"), str):
                problems.append(f"{key} entry without a registry name: {entry!r}")
                continue
            placed.setdefault(entry["registry"], []).append(key)
    for entry in denied:
        reasons = entry.get("reasons") if isinstance(entry, Mapping) else None
        if not isinstance(reasons, list) or not reasons:
            problems.append(f"denial without reasons: {entry!r}")
    expected = {name for name in registries if name != source}
    for name in sorted(expected):
        lists = placed.get(name, [])
        if len(lists) != 1:
            problems.append(f"registry {name!r} is in {lists or 'no list'}, want exactly one")
    for name in sorted(set(placed) - expected):
        what = "the source" if name == source else "not in the inventory"
        problems.append(f"registry {name!r} ({what}) appears in {placed[name]}")
    ranks = [r.get("rank") for r in routes if isinstance(r, Mapping)]
    if ranks != list(range(1, len(routes) + 1)):
        problems.append(f"route ranks are {ranks}, want 1..{len(routes)} in order")
    if decision.get("allow") is False and (routes or deferred):
        problems.append("allow is false but routes or deferred are not empty")
    return problems
