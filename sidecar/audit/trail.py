"""Records audit events in all three places at once: the hash-chained log, a log line, a metric."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from sidecar.audit.record import OUTCOMES, AuditEvent, AuditRecord
from sidecar.audit.store import AuditLog
from sidecar.telemetry import METRIC_PREFIX, get_logger

__all__ = ["ACTIONS", "AuditTrail"]

# The PolicyAdmin RPCs, and OPA activating a revision published outside them (the metric's
# action label takes only these, or "other").
ACTIONS = (
    "PublishBundle",
    "ListRevisions",
    "Rollback",
    "GetAuditLog",
    "ValidateBundle",
    "ActivateBundle",
    "Reconcile",  # a removal executed by the reconciler
)

_log = get_logger("sidecar.audit")


class AuditTrail:
    """Appends events to the audit log, logs them and counts them by action and outcome."""

    def __init__(self, log: AuditLog, registry: CollectorRegistry) -> None:
        """Use ``log`` for records and register ``policy_sidecar_audit_events_total``."""
        self._log = log
        self._events = Counter(
            f"{METRIC_PREFIX}audit_events",
            "Audit events recorded, by admin action and outcome.",
            ["action", "outcome"],
            registry=registry,
        )
        for action in ACTIONS:
            for outcome in OUTCOMES:
                self._events.labels(action=action, outcome=outcome)

    @property
    def log(self) -> AuditLog:
        """Return the underlying audit log (for listing and verifying)."""
        return self._log

    async def record(self, event: AuditEvent) -> AuditRecord:
        """Append ``event`` to the chain, then log and count it."""
        record = await self._log.append(event)
        # Bounded labels: an unexpected action name is counted as "other", never as free text.
        action = event.action if event.action in ACTIONS else "other"
        self._events.labels(action=action, outcome=event.outcome).inc()
        log = (
            _log.warning
            if event.outcome in ("denied", "unauthenticated", "rejected")
            else _log.info
        )
        log(
            "audit event",
            audit_seq=record.seq,
            audit_hash=record.hash,
            actor=event.actor,
            action=event.action,
            outcome=event.outcome,
            old_revision=event.old_revision,
            new_revision=event.new_revision,
            bundle_revision=event.new_revision or event.old_revision,
            digest=event.digest,
            changed_files=list(event.changed_files),
            tenants=list(event.tenants),
            detail=event.detail,
        )
        return record
