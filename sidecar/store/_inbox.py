"""The job store's webhook-inbox statements: record, lease, retry, dead-letter and complete events.

Each function runs inside a transaction the store opened (``tx``), like :mod:`._recovery`, so the
store keeps the one place that opens connections and reads the database's clock.
"""

# Statements are assembled only from this module's constant fragments; every value is bound.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sidecar.model.jobs import InboxEvent
from sidecar.store._protocols import Tx
from sidecar.store._sql import timestamp

__all__ = [
    "claim_events",
    "complete_event",
    "fail_event",
    "inbox_counts",
    "inbox_events",
    "pending_events",
    "record_event",
    "release_events",
]

# An inbox event's state: dead-lettered, retrying (failed or deferred before) or pending.
_EVENT_STATE = (
    "CASE WHEN dead_at <> '' THEN 'dead' "
    "WHEN attempts > 0 OR next_attempt_at <> '' THEN 'retrying' ELSE 'pending' END"
)
_EVENT_OPEN = "completed_at = '' AND dead_at = ''"
_EVENT_UNLEASED = "leased_by = '', leased_until = ''"
# The longest wait between two attempts of a failing event, however many it has had.
_MAX_EVENT_DELAY_S = 900.0


async def record_event(tx: Tx, event_id: str, payload: bytes) -> bool:
    """Insert an event; False when its id was already recorded (a duplicate)."""
    inserted = await tx.execute(
        "INSERT INTO events (event_id, payload, received_at) VALUES (?, ?, ?) "
        "ON CONFLICT (event_id) DO NOTHING",
        [event_id, payload, timestamp()],
    )
    return inserted == 1


async def pending_events(tx: Tx, limit: int, due: datetime | None) -> list[tuple[str, bytes]]:
    """Open events due at ``due`` (default now), oldest first, at most ``limit``."""
    rows = await tx.fetch(
        f"SELECT event_id, payload FROM events WHERE {_EVENT_OPEN} "
        "AND next_attempt_at <= ? ORDER BY received_at, event_id LIMIT ?",
        [timestamp(due), limit],
    )
    return [(str(r[0]), bytes(r[1])) for r in rows]


async def claim_events(
    tx: Tx,
    owner: str,
    *,
    at: datetime | None,
    lease_s: float,
    limit: int,
    due: datetime | None,
    lock: str,
) -> list[tuple[str, bytes]]:
    """Lease due, unleased (or lease-expired) events to ``owner`` at the store's time ``at``."""
    rows = await tx.fetch(
        "UPDATE events SET leased_by = ?, leased_until = ? WHERE event_id IN "
        f"(SELECT event_id FROM events WHERE {_EVENT_OPEN} AND next_attempt_at <= ? "
        f"AND leased_until <= ? ORDER BY received_at, event_id LIMIT ? {lock}) "
        "RETURNING event_id, payload, received_at",
        [owner, timestamp(at, plus_s=lease_s), timestamp(due), timestamp(at), limit],
    )
    # RETURNING does not promise an order; events are processed oldest first.
    rows.sort(key=lambda r: (str(r[2]), str(r[0])))
    return [(str(r[0]), bytes(r[1])) for r in rows]


async def release_events(tx: Tx, owner: str, event_ids: Collection[str]) -> int:
    """Drop ``owner``'s leases on ``event_ids`` (every one it holds when empty)."""
    ids = sorted(event_ids)
    only = f"AND event_id IN ({', '.join('?' for _ in ids)})" if ids else ""
    return await tx.execute(
        f"UPDATE events SET {_EVENT_UNLEASED} WHERE leased_by = ? AND {_EVENT_OPEN} {only}",
        [owner, *ids],
    )


async def fail_event(
    tx: Tx,
    event_id: str,
    *,
    error: str,
    retry_in_s: float,
    max_attempts: int,
    count: bool,
    now: datetime,
) -> bool:
    """Record a failed attempt: dead-letter at ``max_attempts``, else wait (doubling); True when
    dead-lettered."""
    rows = await tx.fetch(
        f"UPDATE events SET attempts = attempts + ?, last_error = ?, {_EVENT_UNLEASED} "
        f"WHERE event_id = ? AND {_EVENT_OPEN} RETURNING attempts",
        [int(count), error, event_id],
    )
    if not rows:
        return False
    attempts = int(rows[0][0])
    if count and attempts >= max_attempts:
        await tx.execute(
            "UPDATE events SET dead_at = ?, next_attempt_at = '' WHERE event_id = ?",
            [timestamp(now), event_id],
        )
        return True
    doublings = min(max(attempts - 1, 0), 30) if count else 0
    delay = min(_MAX_EVENT_DELAY_S, retry_in_s * 2**doublings)
    await tx.execute(
        "UPDATE events SET next_attempt_at = ? WHERE event_id = ?",
        [timestamp(now, plus_s=delay), event_id],
    )
    return False


async def inbox_events(tx: Tx, limit: int) -> list[InboxEvent]:
    """Events not completed (pending, retrying or dead-lettered), oldest first."""
    rows = await tx.fetch(
        f"SELECT event_id, {_EVENT_STATE}, attempts, last_error, received_at, "
        "next_attempt_at, dead_at FROM events WHERE completed_at = '' "
        "ORDER BY received_at, event_id LIMIT ?",
        [limit],
    )
    return [
        InboxEvent(str(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4]), str(r[5]), str(r[6]))
        for r in rows
    ]


async def inbox_counts(tx: Tx) -> dict[str, int]:
    """How many events are ``pending``, ``retrying`` and ``dead`` (each present)."""
    rows = await tx.fetch(
        f"SELECT {_EVENT_STATE}, COUNT(*) FROM events WHERE completed_at = '' GROUP BY 1"
    )
    counts = dict.fromkeys(("pending", "retrying", "dead"), 0)
    counts.update({str(r[0]): int(r[1]) for r in rows})
    return counts


async def complete_event(tx: Tx, event_id: str) -> None:
    """Mark an open event processed and drop its lease."""
    await tx.execute(
        f"UPDATE events SET completed_at = ?, {_EVENT_UNLEASED} "
        "WHERE event_id = ? AND completed_at = ''",
        [timestamp(), event_id],
    )
