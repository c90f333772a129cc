"""The job store's record of each bundle revision's reconcile outcomes (its *baseline*).

An activation re-plans only the images whose outcome the new revision changes, compared with the
outcomes under the revision before (sidecar.reconcile.baselines). Kept here, in the database the
replicas share, a baseline survives a restart and is seen by the replica that runs the activation
even when another made the last runs. One row per revision: the reconciler's own encoded text.
"""

from __future__ import annotations

from sidecar.store._protocols import Tx

__all__ = ["BASELINE_SCHEMA", "KEEP_BASELINES", "load_baseline", "save_baseline"]

#: Revisions whose baseline is kept: the newest by when they were last recorded.
KEEP_BASELINES = 8

BASELINE_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS reconcile_baselines (
  revision TEXT PRIMARY KEY,
  body TEXT NOT NULL,
  recorded_at TEXT NOT NULL
)""",
)


async def save_baseline(tx: Tx, revision: str, body: str, *, now: str) -> None:
    """Store ``body`` as ``revision``'s baseline (replacing it), keeping the newest revisions."""
    await tx.execute(
        "INSERT INTO reconcile_baselines (revision, body, recorded_at) VALUES (?, ?, ?) "
        "ON CONFLICT (revision) DO UPDATE SET body = excluded.body, "
        "recorded_at = excluded.recorded_at",
        [revision, body, now],
    )
    await tx.execute(
        "DELETE FROM reconcile_baselines WHERE revision NOT IN (SELECT revision FROM "
        "reconcile_baselines ORDER BY recorded_at DESC, revision DESC LIMIT ?)",
        [KEEP_BASELINES],
    )


async def load_baseline(tx: Tx, revision: str) -> str | None:
    """Return ``revision``'s stored baseline text, or None when none was recorded."""
    rows = await tx.fetch("SELECT body FROM reconcile_baselines WHERE revision = ?", [revision])
    return str(rows[0][0]) if rows else None
