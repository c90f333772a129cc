"""SQL text, schema and row mapping shared by the SQLite and PostgreSQL job stores.

Statements are written once with ``?`` placeholders; :class:`Dialect` adapts them (``%s`` for
psycopg) and supplies the few type names and the row-locking clause that differ.
Timestamps are fixed-width RFC3339 UTC text, so ordering and comparisons behave the same
in both databases without per-dialect date functions.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sidecar.model.jobs import CopyResult, Job, JobSpec, JobState

__all__ = [
    "JOB_COLUMNS",
    "MIGRATIONS",
    "POST_MIGRATION",
    "READ_COLUMNS",
    "SCHEMA_VERSION",
    "Dialect",
    "job_from_row",
    "result_json",
    "schema_statements",
    "spec_params",
    "timestamp",
]

SCHEMA_VERSION = 2

#: DDL bringing a store at version ``v - 1`` up to ``v``, run once when a store older than ``v``
#: opens (a fresh store gets the current tables from :func:`schema_statements` instead).
#: Plain ``ALTER TABLE ... ADD COLUMN`` is the form both SQLite and PostgreSQL accept.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 2: webhook inbox retries (issue 15): a failing event waits for its next attempt instead of
    # blocking the inbox, and after too many attempts is dead-lettered with its last error.
    2: (
        "ALTER TABLE events ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE events ADD COLUMN next_attempt_at TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE events ADD COLUMN last_error TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE events ADD COLUMN dead_at TEXT NOT NULL DEFAULT ''",
    ),
}

#: Idempotent DDL over columns a migration may have added: run after :data:`MIGRATIONS`.
POST_MIGRATION: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS events_due "
    "ON events (completed_at, dead_at, next_attempt_at, received_at, event_id)",
)

_SPEC_COLUMNS = (
    "source_registry",
    "source_repository",
    "digest",
    "destination_registry",
    "destination_repository",
    "tag",
    "priority",
    "decision_id",
    "bundle_revision",
    "dry_run",
)
_STATE_COLUMNS = (
    "state",
    "attempts",
    "bytes_total",
    "bytes_done",
    "blobs_total",
    "blobs_done",
    "error",
    "error_code",
    "created_at",
    "updated_at",
    "not_before",
)
JOB_COLUMNS = ("job_id", *_SPEC_COLUMNS, *_STATE_COLUMNS)
#: What a read selects: the inserted columns plus the finished copy's result.
READ_COLUMNS = (*JOB_COLUMNS, "result")


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the two databases: placeholders, binary type, row locking."""

    name: str
    placeholder: str
    blob_type: str
    # PostgreSQL skips rows another replica is claiming; SQLite serialises writers instead.
    lock_clause: str
    # Taken inside the schema transaction so replicas starting together do not race on DDL.
    migrate_lock: str = ""
    # The database's own clock (one query returning an aware datetime), used for every lease and
    # job timestamp so that replicas whose clocks disagree never misjudge each other's leases.
    # Empty: the local clock *is* the database's (SQLite: one process on one host).
    now_sql: str = ""

    def sql(self, text: str) -> str:
        """Return ``text`` with ``?`` placeholders rewritten for this database."""
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)


def timestamp(at: datetime | None = None, *, plus_s: float = 0.0) -> str:
    """Return ``at`` (default now) plus ``plus_s`` seconds as fixed-width RFC3339 UTC text."""
    moment = (at or datetime.now(UTC)) + timedelta(seconds=plus_s)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def schema_statements(dialect: Dialect) -> list[str]:
    """Return the idempotent DDL creating every table of the current schema version.

    A table that already exists is left as it is: :data:`MIGRATIONS` brings older ones up.
    """
    spec_cols = ",\n".join(
        f"  {c} {'BIGINT' if c in ('priority', 'dry_run') else 'TEXT'} NOT NULL"
        for c in _SPEC_COLUMNS
    )
    return [
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY,
{spec_cols},
  state TEXT NOT NULL,
  attempts BIGINT NOT NULL DEFAULT 0,
  bytes_total BIGINT NOT NULL DEFAULT 0,
  bytes_done BIGINT NOT NULL DEFAULT 0,
  blobs_total BIGINT NOT NULL DEFAULT 0,
  blobs_done BIGINT NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  error_code TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  not_before TEXT NOT NULL,
  lease_owner TEXT NOT NULL DEFAULT '',
  lease_expires TEXT NOT NULL DEFAULT '',
  result TEXT NOT NULL DEFAULT '',
  UNIQUE (digest, destination_registry, destination_repository, tag)
)""",
        "CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs (state, priority DESC, created_at, job_id)",
        "CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at DESC, job_id DESC)",
        "CREATE INDEX IF NOT EXISTS jobs_parked ON jobs (destination_registry, state)",
        f"""CREATE TABLE IF NOT EXISTS events (
  event_id TEXT PRIMARY KEY,
  payload {dialect.blob_type} NOT NULL,
  received_at TEXT NOT NULL,
  completed_at TEXT NOT NULL DEFAULT '',
  attempts BIGINT NOT NULL DEFAULT 0,
  next_attempt_at TEXT NOT NULL DEFAULT '',
  last_error TEXT NOT NULL DEFAULT '',
  dead_at TEXT NOT NULL DEFAULT ''
)""",
        "CREATE INDEX IF NOT EXISTS events_pending ON events (completed_at, received_at, event_id)",
        """CREATE TABLE IF NOT EXISTS pulls (
  repository TEXT NOT NULL,
  region TEXT NOT NULL,
  pulls_count BIGINT NOT NULL,
  PRIMARY KEY (repository, region)
)""",
    ]


def spec_params(spec: JobSpec) -> list[Any]:
    """Return the spec's column values in ``_SPEC_COLUMNS`` order."""
    return [int(v) if isinstance(v, bool) else v for v in (getattr(spec, c) for c in _SPEC_COLUMNS)]


def job_from_row(row: Sequence[Any]) -> Job:
    """Build a :class:`Job` from a row selected as ``READ_COLUMNS``."""
    values = dict(zip(READ_COLUMNS, row, strict=True))
    spec_values = {c: values[c] for c in _SPEC_COLUMNS}
    spec_values["dry_run"] = bool(spec_values["dry_run"])
    spec_values["priority"] = int(spec_values["priority"])
    state_values = {c: values[c] for c in _STATE_COLUMNS}
    state_values["state"] = JobState(state_values["state"])
    return Job(
        job_id=str(values["job_id"]),
        spec=JobSpec(**spec_values),
        result=result_from_json(str(values["result"] or "")),
        **state_values,
    )


def result_from_json(text: str) -> CopyResult | None:
    """Return the finished copy's result stored by :func:`result_json` (None when empty)."""
    return CopyResult(**json.loads(text)) if text else None


def result_json(result: CopyResult | None) -> str:
    """Return a finished copy's result as JSON text (empty when there is none)."""
    return "" if result is None else json.dumps(dataclasses.asdict(result), sort_keys=True)
