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
    "ALL_JOB_COLUMNS",
    "DIALECT_MIGRATIONS",
    "JOB_COLUMNS",
    "JOB_KEY",
    "MIGRATIONS",
    "POST_MIGRATION",
    "READ_COLUMNS",
    "SCHEMA_VERSION",
    "Dialect",
    "job_from_row",
    "jobs_table",
    "migration_statements",
    "pull_hour",
    "result_json",
    "schema_statements",
    "spec_params",
    "timestamp",
]

SCHEMA_VERSION = 7

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
    # 3: the reconciler (issue 13): delete jobs beside copy jobs, and the route rank that orders
    # the jobs of one decision (then DIALECT_MIGRATIONS[3] widens the unique key by kind).
    3: (
        "ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'copy'",
        "ALTER TABLE jobs ADD COLUMN job_rank BIGINT NOT NULL DEFAULT 0",
    ),
    # 4: pulls in a sliding window (issue 13): lifetime totals per repository and region become
    # hourly buckets. The totals a store held move into the bucket of the hour it was upgraded
    # (``__PULL_HOUR__``): access keeps its shape for one window instead of dropping to nothing
    # at once, which would look to the policy like every region stopped pulling.
    4: (
        "INSERT INTO pull_buckets (repository, region, bucket, pulls_count) "
        "SELECT repository, region, '__PULL_HOUR__', pulls_count FROM pulls",
        "DROP TABLE pulls",
    ),
    # 5: re-deciding on a bundle activation (issue 13): a job keeps the request it was decided
    # from, so a worker can ask the new revision before it copies.
    5: ("ALTER TABLE jobs ADD COLUMN request TEXT NOT NULL DEFAULT ''",),
    # 6: two replicas on one database (issue 16): a replica claims an inbox event with a lease
    # (who, until when, on the database's clock) so no other replica processes it meanwhile; a
    # separate pair of columns, not ``next_attempt_at``, so an event in flight stays pending.
    6: (
        "ALTER TABLE events ADD COLUMN leased_by TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE events ADD COLUMN leased_until TEXT NOT NULL DEFAULT ''",
    ),
    # 7: a copy never runs on a stale decision: when its job was last decided (enqueued,
    # requeued by a new decision, or decided again by a worker). Empty for older jobs: their
    # ``created_at`` stands in (sidecar.replicate.redecide).
    7: ("ALTER TABLE jobs ADD COLUMN decided_at TEXT NOT NULL DEFAULT ''",),
}

#: Per-database DDL of a step that plain ``ADD COLUMN`` cannot express, run after that step's
#: :data:`MIGRATIONS`: 3 widens the jobs' unique key by ``kind`` (a delete job shares digest and
#: destination with the copy job it undoes). SQLite cannot alter a constraint, so it copies the
#: table; PostgreSQL swaps the constraint, whatever name it was given when the table was made.
DIALECT_MIGRATIONS: dict[int, dict[str, tuple[str, ...]]] = {
    3: {
        "sqlite": (
            "__JOBS_TABLE__ jobs_v3",
            "__COPY_JOBS__ jobs_v3",
            "DROP TABLE jobs",
            "ALTER TABLE jobs_v3 RENAME TO jobs",
        ),
        "postgresql": (
            "DO $$ DECLARE c text; BEGIN FOR c IN SELECT conname FROM pg_constraint "
            "WHERE conrelid = 'jobs'::regclass AND contype = 'u' LOOP "
            "EXECUTE 'ALTER TABLE jobs DROP CONSTRAINT ' || quote_ident(c); END LOOP; END $$",
            "ALTER TABLE jobs ADD CONSTRAINT jobs_key "
            "UNIQUE (kind, digest, destination_registry, destination_repository, tag)",
        ),
    },
}

#: Idempotent DDL over columns a migration may have added: run after :data:`MIGRATIONS`.
POST_MIGRATION: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS events_due "
    "ON events (completed_at, dead_at, next_attempt_at, received_at, event_id)",
    "CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs (state, priority DESC, created_at, job_id)",
    "CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at DESC, job_id DESC)",
    "CREATE INDEX IF NOT EXISTS jobs_parked ON jobs (destination_registry, state)",
    "CREATE INDEX IF NOT EXISTS jobs_claim "
    "ON jobs (state, priority DESC, job_rank, created_at, job_id)",
    "CREATE INDEX IF NOT EXISTS jobs_digest ON jobs (digest, state)",
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
    "kind",
    "job_rank",
    "request",
)
# Columns named otherwise than their JobSpec attribute ("rank" is a function name in SQL).
_ATTRIBUTE = {"job_rank": "rank"}
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
    "decided_at",
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


def pull_hour(at: datetime | None = None, *, plus_s: float = 0.0) -> str:
    """Return the start of the hour holding ``at`` (default now) plus ``plus_s``, as a bucket key."""
    moment = ((at or datetime.now(UTC)) + timedelta(seconds=plus_s)).astimezone(UTC)
    return timestamp(moment.replace(minute=0, second=0, microsecond=0))


def timestamp(at: datetime | None = None, *, plus_s: float = 0.0) -> str:
    """Return ``at`` (default now) plus ``plus_s`` seconds as fixed-width RFC3339 UTC text."""
    moment = (at or datetime.now(UTC)) + timedelta(seconds=plus_s)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: The jobs' idempotency key (a unique constraint, and every upsert's conflict target).
JOB_KEY = ("kind", "digest", "destination_registry", "destination_repository", "tag")
#: Jobs columns added by a migration after step 3's table copy: the step that adds each.
_ADDED_AT = {"request": 5, "decided_at": 7}
#: Every column of the jobs table (what a table copy moves).
ALL_JOB_COLUMNS = (*READ_COLUMNS, "lease_owner", "lease_expires")


def jobs_table(name: str = "jobs") -> str:
    """Return the DDL of the jobs table of the current schema under ``name``."""
    spec_cols = ",\n".join(
        f"  {c} {'BIGINT' if c in ('priority', 'dry_run', 'job_rank') else 'TEXT'} NOT NULL"
        + {"kind": " DEFAULT 'copy'", "job_rank": " DEFAULT 0", "request": " DEFAULT ''"}.get(c, "")
        for c in _SPEC_COLUMNS
    )
    return f"""CREATE TABLE IF NOT EXISTS {name} (
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
  decided_at TEXT NOT NULL DEFAULT '',
  lease_owner TEXT NOT NULL DEFAULT '',
  lease_expires TEXT NOT NULL DEFAULT '',
  result TEXT NOT NULL DEFAULT '',
  CONSTRAINT {name}_key UNIQUE ({", ".join(JOB_KEY)})
)"""


def migration_statements(step: int, dialect: Dialect, now: datetime | None = None) -> list[str]:
    """Return the DDL bringing a store from ``step - 1`` to ``step`` on ``dialect`` at ``now``."""
    # The hour is this module's own fixed-width text: nothing here comes from input.
    hour = pull_hour(now)
    statements = [s.replace("__PULL_HOUR__", hour) for s in MIGRATIONS.get(step, ())]
    for statement in DIALECT_MIGRATIONS.get(step, {}).get(dialect.name, ()):
        if statement.startswith("__JOBS_TABLE__ "):
            statements.append(jobs_table(statement.split()[1]))
        elif statement.startswith("__COPY_JOBS__ "):
            target = statement.split()[1]
            # Only the columns the old table has at this step (later steps add the others).
            cols = ", ".join(c for c in ALL_JOB_COLUMNS if _ADDED_AT.get(c, 0) <= step)
            # Names from this module's constants only; nothing here comes from input.
            statements.append(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM jobs")  # noqa: S608
        else:
            statements.append(statement)
    return statements


def schema_statements(dialect: Dialect) -> list[str]:
    """Return the idempotent DDL creating every table of the current schema version.

    A table that already exists is left as it is: :data:`MIGRATIONS` brings older ones up.
    """
    return [
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        jobs_table(),
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
  dead_at TEXT NOT NULL DEFAULT '',
  leased_by TEXT NOT NULL DEFAULT '',
  leased_until TEXT NOT NULL DEFAULT ''
)""",
        "CREATE INDEX IF NOT EXISTS events_pending ON events (completed_at, received_at, event_id)",
        # Named leases (one scheduled reconcile at a time across replicas) and their last run.
        """CREATE TABLE IF NOT EXISTS leases (
  name TEXT PRIMARY KEY,
  owner TEXT NOT NULL DEFAULT '',
  expires TEXT NOT NULL DEFAULT '',
  last_run TEXT NOT NULL DEFAULT ''
)""",
        # Pulls per repository, region and hour (``bucket``: the hour's start, RFC3339 text):
        # ``input.access`` sums the buckets of the pull window, the prune drops older ones.
        """CREATE TABLE IF NOT EXISTS pull_buckets (
  repository TEXT NOT NULL,
  region TEXT NOT NULL,
  bucket TEXT NOT NULL,
  pulls_count BIGINT NOT NULL,
  PRIMARY KEY (repository, region, bucket)
)""",
    ]


def spec_params(spec: JobSpec) -> list[Any]:
    """Return the spec's column values in ``_SPEC_COLUMNS`` order."""
    values = (getattr(spec, _ATTRIBUTE.get(c, c)) for c in _SPEC_COLUMNS)
    return [int(v) if isinstance(v, bool) else v for v in values]


def job_from_row(row: Sequence[Any]) -> Job:
    """Build a :class:`Job` from a row selected as ``READ_COLUMNS``."""
    values = dict(zip(READ_COLUMNS, row, strict=True))
    spec_values = {_ATTRIBUTE.get(c, c): values[c] for c in _SPEC_COLUMNS}
    spec_values["dry_run"] = bool(spec_values["dry_run"])
    spec_values["priority"] = int(spec_values["priority"])
    spec_values["rank"] = int(spec_values["rank"])
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
