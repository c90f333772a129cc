"""The append-only, hash-chained audit log, in the job store's database (SQLite or PostgreSQL).

``audit_log`` holds one row per record; ``audit_head`` one row with the last ``seq`` and hash.
Appends lock the head row, so replicas sharing PostgreSQL still build one linear chain. The head
is what catches a deleted *last* record: the chain alone would still verify without it.
"""

# Statements are this module's constants; every value is bound.
# ruff: noqa: S608

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.audit.record import GENESIS_HASH, AuditEvent, AuditRecord, chain_hash
from sidecar.store import Backend, store_backend, timestamp

__all__ = ["AuditLog", "Verification", "open_audit_log"]

_COLUMNS = (
    "seq, at, actor, action, outcome, old_revision, new_revision, digest, changed_files, "
    "tenants, detail, prev_hash, hash"
)
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit_log (
  seq BIGINT PRIMARY KEY,
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  outcome TEXT NOT NULL,
  old_revision TEXT NOT NULL,
  new_revision TEXT NOT NULL,
  digest TEXT NOT NULL,
  changed_files TEXT NOT NULL,
  tenants TEXT NOT NULL,
  detail TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq BIGINT NOT NULL,
  hash TEXT NOT NULL
)""",
    # Created with the table, so an append always finds (and can lock) the head row.
    f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}') "
    "ON CONFLICT (id) DO NOTHING",
)
_BATCH = 500


@dataclass(frozen=True, slots=True)
class Verification:
    """The result of checking the whole chain: how many records, and every break found."""

    records: int
    head_seq: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Return whether the chain is intact."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict."""
        return {"ok": self.ok, "records": self.records, "head_seq": self.head_seq,
                "problems": list(self.problems)}  # fmt: skip


class AuditLog:
    """Appends, lists and verifies audit records over a job-store backend."""

    def __init__(self, backend: Backend, *, description: str = "") -> None:
        self._backend = backend
        self._description = description
        # PostgreSQL: FOR UPDATE serialises appenders across replicas; SQLite's BEGIN IMMEDIATE
        # already holds the database write lock.
        self._lock_head = " FOR UPDATE" if backend.dialect.name == "postgresql" else ""

    def __repr__(self) -> str:
        return f"AuditLog({self._description})"

    async def open(self) -> AuditLog:
        """Connect, then create the audit tables; return ``self``."""
        await self._backend.connect()
        try:
            await self.create_schema()
        except BaseException:
            await self._backend.close()
            raise
        return self

    async def create_schema(self) -> None:
        """Create the audit tables (idempotent) on an already connected backend."""
        async with self._backend.transaction() as tx:
            if self._backend.dialect.migrate_lock:
                await tx.fetch(self._backend.dialect.migrate_lock)
            for statement in _SCHEMA:
                await tx.execute(statement)

    async def close(self) -> None:
        """Close the connections."""
        await self._backend.close()

    async def append(self, event: AuditEvent) -> AuditRecord:
        """Number, chain and store ``event``; return the stored record."""
        async with self._backend.transaction() as tx:
            rows = await tx.fetch(f"SELECT seq, hash FROM audit_head WHERE id = 1{self._lock_head}")
            last_seq, last_hash = (int(rows[0][0]), str(rows[0][1])) if rows else (0, GENESIS_HASH)
            seq, at = last_seq + 1, timestamp()
            digest = chain_hash(seq, at, event, last_hash)
            await tx.execute(
                f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [seq, at, event.actor, event.action, event.outcome, event.old_revision,
                 event.new_revision, event.digest, json.dumps(list(event.changed_files)),
                 json.dumps(list(event.tenants)), event.detail, last_hash, digest],
            )  # fmt: skip
            await tx.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", [seq, digest])
        return AuditRecord(seq, at, event, last_hash, digest)

    async def list(
        self, *, limit: int = 100, tenant: str | None = None, before_seq: int = 0
    ) -> list[AuditRecord]:
        """Return up to ``limit`` records, newest first (only those touching ``tenant``)."""
        records: list[AuditRecord] = []
        cursor = before_seq if before_seq > 0 else None
        while len(records) < limit:
            where, params = ("WHERE seq < ?", [cursor]) if cursor is not None else ("", [])
            async with self._backend.transaction() as tx:
                rows = await tx.fetch(
                    f"SELECT {_COLUMNS} FROM audit_log {where} ORDER BY seq DESC LIMIT {_BATCH}",
                    params,
                )
            if not rows:
                break
            for row in rows:
                record = _record(row)
                if tenant is None or tenant in record.event.tenants:
                    records.append(record)
            cursor = int(rows[-1][0])
        return records[:limit]

    async def head(self) -> tuple[int, str]:
        """Return the last ``seq`` and hash the log recorded (0 and the genesis hash when empty)."""
        async with self._backend.transaction() as tx:
            rows = await tx.fetch("SELECT seq, hash FROM audit_head WHERE id = 1")
        # A deleted head row reads as an empty log, which a non-empty chain then contradicts.
        return (int(rows[0][0]), str(rows[0][1])) if rows else (0, GENESIS_HASH)

    async def verify(self, anchors: Mapping[int, str] | None = None) -> Verification:
        """Walk the whole chain; report every edited, reordered, missing or extra record.

        ``anchors`` maps a seq to the hash recorded for it outside the database (the
        ``audit event`` log lines carry both): a chain recomputed after a rewrite is
        self-consistent, but it cannot reproduce those hashes.
        """
        for _ in range(3):
            before = await self.head()
            result, after = await self._verify_once(dict(anchors or {}))
            # An append racing the walk moves the head: walk again rather than report it.
            if result.ok or after == before:
                return result
        return result

    async def _verify_once(self, anchors: dict[int, str]) -> tuple[Verification, tuple[int, str]]:
        problems: list[str] = []
        expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
        async for record in self._scan():
            count += 1
            anchored = anchors.pop(record.seq, None)
            if anchored is not None and anchored != record.hash:
                problems.append(
                    f"record {record.seq}: hash {record.hash[:12]}… is not the anchored "
                    f"{anchored[:12]}… (the log was rewritten and its chain recomputed)"
                )
            if record.seq != expected_seq:
                problems.append(
                    f"record {record.seq}: expected record {expected_seq} here "
                    f"(records {expected_seq}..{record.seq - 1} deleted, or records reordered)"
                )
            if record.prev_hash != prev_hash:
                problems.append(
                    f"record {record.seq}: prev_hash does not match the hash of the record "
                    "before it (a record was deleted, inserted or reordered)"
                )
            recomputed = chain_hash(record.seq, record.at, record.event, record.prev_hash)
            if recomputed != record.hash:
                problems.append(
                    f"record {record.seq}: content does not match its hash (the record was edited)"
                )
            expected_seq, prev_hash = record.seq + 1, record.hash
        problems.extend(
            f"record {seq}: anchored (hash {anchored[:12]}…) but not in the log (deleted)"
            for seq, anchored in sorted(anchors.items())
        )
        head = await self.head()
        if head != (expected_seq - 1, prev_hash):
            problems.append(
                f"head: the log recorded {head[0]} records ending in hash {head[1][:12]}…, "
                f"but the chain ends at record {expected_seq - 1} with hash {prev_hash[:12]}… "
                "(records deleted from the end, or the head was edited)"
            )
        return Verification(count, head[0], tuple(problems)), head

    async def _scan(self) -> AsyncIterator[AuditRecord]:
        last = 0
        while True:
            async with self._backend.transaction() as tx:
                rows = await tx.fetch(
                    f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT {_BATCH}",
                    [last],
                )
            if not rows:
                return
            for row in rows:
                yield _record(row)
            last = int(rows[-1][0])


def _record(row: Sequence[Any]) -> AuditRecord:
    (seq, at, actor, action, outcome, old, new, digest, files, tenants, detail, prev, hash_) = row
    event = AuditEvent.__new__(AuditEvent)
    # Built without __post_init__: a tampered outcome must still be readable, to be reported.
    for name, value in (
        ("actor", actor), ("action", action), ("outcome", outcome), ("old_revision", old),
        ("new_revision", new), ("digest", digest), ("changed_files", _strings(files)),
        ("tenants", _strings(tenants)), ("detail", detail),
    ):  # fmt: skip
        object.__setattr__(event, name, value)
    return AuditRecord(int(seq), str(at), event, str(prev), str(hash_))


def _strings(text: Any) -> tuple[str, ...]:
    try:
        value = json.loads(str(text))
    except ValueError:
        return (str(text),)
    return tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)


async def open_audit_log(url: str) -> AuditLog:
    """Open the audit log kept in the job store at ``url`` (``policy.replication.store``)."""
    return await AuditLog(store_backend(url), description=url.rsplit("@", maxsplit=1)[-1]).open()
