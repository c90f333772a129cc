"""The PolicyAdmin domain: authenticate, authorise with OPA, validate, deliver, audit.

Every call is authenticated (certificate or token), held to a per-identity rate limit
(``policy.admin.rate_limit``) and authorised by ``data.system.authz`` with ``{caller, action,
target}``; a refusal of any kind is an audit event (aggregated under a flood, see
``sidecar.audit.refusals``). Reads that succeed are not audited.

A submitted bundle is untrusted bytes until its caller is authorised: nothing of it is read
before authentication and the rate limit, and the read that the authorisation target needs (which
tenants the bundle changes) is bounded by ``max_bundle_bytes``/``max_unpacked_bytes`` and runs in
a worker process (``_workers``), as does the full validation after it — never on the event loop
(nor under its GIL), and never inside the publish lock. The lock covers only activation: it
re-checks that the revision the bundle was compared with is still active (otherwise the
comparison and authorisation are redone) and then delivers, records and audits, so publishes and
rollbacks still go live one at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.audit import AuditEvent, AuditRecord, AuditTrail, RefusalAudit, RefusalWindow
from sidecar.bundles.archive import BundleArchive, digest_of
from sidecar.bundles.validate import BundleValidator, ValidationReport
from sidecar.errors import (
    BundleRejected,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    SidecarError,
)
from sidecar.governance._workers import BundleWorkers
from sidecar.governance.authz import OpaAuthorizer
from sidecar.governance.changes import BundleChanges, bundle_changes
from sidecar.governance.delivery import BundleDelivery
from sidecar.governance.identity import Authenticator, Caller, CallerUnknown, Credentials
from sidecar.governance.ratelimit import CallRateLimiter, peer_bucket
from sidecar.governance.revisions import RevisionStore, StoredRevision
from sidecar.telemetry import get_logger

__all__ = ["AdminService", "Credentials", "PublishOutcome", "RevisionList", "RollbackOutcome"]

_DETAIL_MAX = 8000
# Bundle reads and validations at once: each holds up to max_bundle_bytes + max_unpacked_bytes.
PARSE_SLOTS = 2
# A change compared with a revision that stopped being active is compared (and authorised) again
# this many times before the call gives up: only other publishes landing meanwhile cause it.
_ACTIVATION_ATTEMPTS = 5
_log = get_logger("sidecar.governance.admin")


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """A published bundle: revision, digest, what it replaced and changed, its audit record."""

    revision: str
    digest: str
    previous_revision: str
    location: str
    changes: BundleChanges
    signed_by_sidecar: bool
    audit_seq: int


@dataclass(frozen=True, slots=True)
class RollbackOutcome:
    """A rollback: the revision now active and the one it replaced."""

    revision: str
    previous_revision: str
    digest: str
    audit_seq: int


@dataclass(frozen=True, slots=True)
class RevisionList:
    """Published revisions, newest first, and the active one's name."""

    revisions: tuple[StoredRevision, ...]
    active: str


class AdminService:
    """Implements PublishBundle, ListRevisions, Rollback, GetAuditLog and ValidateBundle."""

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        authorizer: OpaAuthorizer,
        validator: BundleValidator,
        delivery: BundleDelivery,
        revisions: RevisionStore,
        audit: AuditTrail,
        limiter: CallRateLimiter | None = None,
        refusals: RefusalWindow | None = None,
        parse_slots: int = PARSE_SLOTS,
        parse_in_processes: bool = True,
        parse_timeout_s: float | None = None,
    ) -> None:
        self._authn = authenticator
        self._authz = authorizer
        self._validator = validator
        self._delivery = delivery
        self._revisions = revisions
        self._audit = audit
        self._limiter = limiter
        self._refusals = RefusalAudit(audit, refusals or RefusalWindow())
        # Bundle parsing in worker processes: bounded in memory and CPU, and off the event loop
        # (and off its GIL: a big JSON file would hold it for as long as it takes to parse).
        self._workers = BundleWorkers(
            parse_slots,
            processes=parse_in_processes,
            timeout_s=parse_timeout_s,
            timeout_key="policy.admin.parse_timeout_s",
        )
        # One activation at a time: each replaces the revision it was compared with.
        self._changing = asyncio.Lock()

    async def publish(
        self, credentials: Credentials, raw: bytes, revision: str = ""
    ) -> PublishOutcome:
        """Validate, sign, publish and activate a bundle; every refusal is audited."""
        caller = await self._caller(credentials, "PublishBundle")
        active, archive, changes, base = await self._authorised_publish(caller, raw, revision)
        report = await self._validated(raw, base, archive=archive)
        new_revision = revision or report.revision
        try:
            out = raw
            signed = self._delivery.needs_signing(archive, report.signed, revision or None)
            if signed:
                out, _ = await self._delivery.sign(archive, revision or None)
        except SidecarError as exc:
            await self._record(_replace(base, outcome=_failure(exc), detail=exc.message))
            raise
        for _ in range(_ACTIVATION_ATTEMPTS):
            async with self._changing:
                if await self._revisions.active() == active:
                    previous = await self._stored(active)
                    try:
                        await self._revisions.check_unused(new_revision, digest_of(out))
                        delivered = await self._delivery.deliver(out, new_revision, report.files)
                        await self._revisions.record(
                            StoredRevision(
                                new_revision, delivered.digest, len(out), "", caller.subject,
                                changes.changed, changes.tenants, out,
                            )
                        )  # fmt: skip
                    except SidecarError as exc:
                        await self._record(
                            _replace(base, outcome=_failure(exc), detail=exc.message)
                        )
                        raise
                    record = await self._record_or_undo(
                        _replace(base, new_revision=new_revision, digest=delivered.digest),
                        previous,
                    )
                    return PublishOutcome(
                        new_revision, delivered.digest, active, delivered.location, changes,
                        signed, record.seq,
                    )  # fmt: skip
            # Another change went live while this one was checked: what it changes (and so who
            # may publish it) is relative to the active revision, so compare and authorise again.
            active, archive, changes, base = await self._authorised_publish(caller, raw, revision)
        await self._busy(base)
        raise AssertionError("unreachable")  # _busy raises

    async def _authorised_publish(
        self, caller: Caller, raw: bytes, revision: str
    ) -> tuple[str, BundleArchive, BundleChanges, AuditEvent]:
        """Compare ``raw`` with the active revision (off the loop), then authorise the caller."""
        active, archive, changes = await self._compare(raw)
        base = AuditEvent(
            caller.subject, "PublishBundle", "published", old_revision=active,
            new_revision=revision or archive.revision, digest=archive.digest,
            changed_files=changes.changed, tenants=changes.tenants,
        )  # fmt: skip
        await self._authorize(caller, base, {**changes.target(), "revision": base.new_revision})
        return active, archive, changes, base

    async def _busy(self, base: AuditEvent) -> None:
        message = (
            f"{base.action}: the active revision kept changing while this change was checked "
            f"({_ACTIVATION_ATTEMPTS} times); retry"
        )
        await self._record(_replace(base, outcome="failed", detail=message))
        raise SidecarError(message)

    async def rollback(self, credentials: Credentials, revision: str) -> RollbackOutcome:
        """Publish a previously published revision's exact bytes again."""
        caller = await self._caller(credentials, "Rollback")
        validated = False
        for _ in range(_ACTIVATION_ATTEMPTS):
            active = await self._revisions.active()
            base = AuditEvent(caller.subject, "Rollback", "rolled_back", active, revision)
            try:
                stored = await self._revisions.get(revision)
            except SidecarError as exc:
                await self._authorize(
                    caller, base, {"revision": revision, "tenants": [], "global": True}
                )
                await self._record(_replace(base, outcome="failed", detail=exc.message))
                raise
            active, archive, changes = await self._compare(stored.archive)
            base = _replace(
                base, old_revision=active, digest=stored.digest, changed_files=changes.changed,
                tenants=changes.tenants,
            )  # fmt: skip
            await self._authorize(caller, base, {**changes.target(), "revision": revision})
            if not validated:
                # Validated again: the inventory or the checks may have changed since it was live.
                await self._validated(stored.archive, base, require_signature=True, archive=archive)
                validated = True
            async with self._changing:
                if await self._revisions.active() != active:
                    continue  # another change went live meanwhile: compare and authorise again
                previous = await self._stored(active)
                try:
                    await self._delivery.deliver(
                        stored.archive, revision, tuple(sorted(archive.files))
                    )
                    await self._revisions.activate(revision)
                except SidecarError as exc:
                    await self._record(_replace(base, outcome="failed", detail=exc.message))
                    raise
                record = await self._record_or_undo(base, previous)
                return RollbackOutcome(revision, active, stored.digest, record.seq)
        await self._busy(base)
        raise AssertionError("unreachable")  # _busy raises

    async def validate(self, credentials: Credentials, raw: bytes) -> ValidationReport:
        """Validate a bundle without publishing it; a failed validation is audited."""
        caller = await self._caller(credentials, "ValidateBundle")
        active, archive, changes = await self._compare(raw)
        base = AuditEvent(
            caller.subject, "ValidateBundle", "rejected", old_revision=active,
            new_revision=archive.revision, digest=archive.digest,
            changed_files=changes.changed, tenants=changes.tenants,
        )  # fmt: skip
        await self._authorize(caller, base, {**changes.target(), "revision": archive.revision})
        report = await self._validation(raw, archive, require_signature=False)
        if not report.valid:
            await self._record(_replace(base, detail=_problems(report)))
        return report

    async def list_revisions(
        self, credentials: Credentials, *, tenant: str = "", limit: int = 100
    ) -> RevisionList:
        """Return published revisions (only those changing ``tenant``, when given)."""
        caller = await self._caller(credentials, "ListRevisions")
        base = AuditEvent(caller.subject, "ListRevisions", "denied", tenants=_one(tenant))
        await self._authorize(caller, base, _read_target(tenant))
        revisions = await self._revisions.list(limit=limit, tenant=tenant or None)
        return RevisionList(tuple(revisions), await self._revisions.active())

    async def audit_log(
        self, credentials: Credentials, *, tenant: str = "", limit: int = 100, before_seq: int = 0
    ) -> list[AuditRecord]:
        """Return audit records, newest first (only those touching ``tenant``, when given)."""
        caller = await self._caller(credentials, "GetAuditLog")
        base = AuditEvent(caller.subject, "GetAuditLog", "denied", tenants=_one(tenant))
        await self._authorize(caller, base, _read_target(tenant))
        return await self._audit.log.list(limit=limit, tenant=tenant or None, before_seq=before_seq)

    async def adopt(self, raw: bytes, actor: str) -> None:
        """Record the bundle the sidecar started with as the active revision (and audit it).

        A managed OPA serving a locally built bundle serves a new build after each restart; the
        audit log says so, and later publishes are compared with (and can roll back to) it.
        """
        async with self._changing:
            active, archive, changes = await self._compare(raw, trusted=True)
            revision = archive.revision
            if not revision or revision == active:
                return
            try:
                await self._revisions.record(
                    StoredRevision(
                        revision, archive.digest, len(raw), "", actor, changes.changed,
                        changes.tenants, raw,
                    )
                )  # fmt: skip
            except InvalidArgument:
                # The name is taken by other bytes: an earlier build, or — replicas starting
                # in the same second on one database — the same policy signed with the other
                # replica's key (the revision is the build second and the content hash). The
                # store decides atomically, so the loser of that race lands here too, and keeps
                # serving its own build rather than failing its startup.
                _log.warning(
                    "startup bundle not recorded: its revision names other bytes already",
                    bundle_revision=revision,
                    digest=archive.digest,
                )
                return
            await self._record(
                AuditEvent(
                    actor, "PublishBundle", "published", active, revision, archive.digest,
                    changes.changed, changes.tenants, "bundle built and activated at startup",
                )
            )  # fmt: skip

    async def observe_activation(self, previous: str, revision: str, source: str) -> None:
        """Audit OPA activating ``revision`` unless PolicyAdmin published it (then it is audited).

        A bundle published straight to the store (``bundle publish --to``) or by another
        publisher is still a policy change: the audit log records who served it (``source``),
        when, and the revisions before and after. OPA does not hand out the archive, so there
        is no digest; the bundle's own manifest and signature name its contents.
        """
        async with self._changing:  # a publish in flight finishes (and records) first
            if not revision:
                return
            try:
                await self._revisions.get(revision)
            except SidecarError:
                pass  # never published through PolicyAdmin: audit it below
            else:
                # Published (or rolled back to) through PolicyAdmin, so audited already; OPA may
                # activate it after a later revision was published, polling lags behind.
                return
            await self._record(
                AuditEvent(
                    source, "ActivateBundle", "activated", previous, revision,
                    detail="OPA activated a revision that no PolicyAdmin call published "
                    "(bundle publish --to, or another publisher of the bundle store)",
                )
            )  # fmt: skip

    async def close(self) -> None:
        """Write the refusal summaries still held back and stop the bundle workers."""
        try:
            await self._refusals.close()
        finally:
            await self._workers.close()

    async def _caller(self, credentials: Credentials, action: str) -> Caller:
        """Authenticate, then take one call from the caller's rate limit; refusals are audited."""
        key = peer_bucket(credentials.peer)
        if (
            self._limiter is not None
            and self._limiter.exhausted(key)
            and not self._authn.is_cheap(credentials)
        ):
            # A peer whose failed calls used up its bucket gets no more bcrypt checks until it
            # refills: a guessing flood must not queue ahead of an operator's token on the pool.
            # Cheap credentials (a certificate, a sha256-hashed or recently verified token) from
            # the same host are still checked, so a flood cannot lock an admin out.
            await self._within_rate(key, f"{key} (unchecked token)", action)
        try:
            caller = await self._authn.authenticate(credentials)
        except CallerUnknown as exc:
            # No identity to trust: the peer address is what a flood from one host shares.
            await self._within_rate(key, exc.actor, action)
            await self._refused(
                key, AuditEvent(exc.actor, action, "unauthenticated", detail=exc.message)
            )
            raise
        await self._within_rate(caller.subject, caller.subject, action)
        return caller

    async def _within_rate(self, key: str, actor: str, action: str) -> None:
        if self._limiter is None:
            return
        try:
            self._limiter.check(key, action)
        except ResourceExhausted as exc:
            await self._refused(key, AuditEvent(actor, action, "rate_limited", detail=exc.message))
            raise

    async def _authorize(self, caller: Caller, base: AuditEvent, target: Mapping[str, Any]) -> None:
        try:
            decision = await self._authz.authorize(caller, base.action, target)
        except SidecarError as exc:
            await self._record(
                _replace(base, outcome="failed", detail=f"authorisation: {exc.message}")
            )
            raise
        if not decision.allow:
            roles = ", ".join(decision.roles) or "none"
            scope = _scope(target)
            message = (
                f"{caller.subject} (roles: {roles}) may not {base.action} {scope} "
                f"(data.system.authz, bundle revision {decision.bundle_revision or 'unknown'})"
            )
            await self._refused(caller.subject, _replace(base, outcome="denied", detail=message))
            raise PermissionDenied(message)

    async def _validated(
        self,
        raw: bytes,
        base: AuditEvent,
        *,
        require_signature: bool = False,
        archive: BundleArchive | None = None,
    ) -> ValidationReport:
        report = await self._validation(raw, archive, require_signature=require_signature)
        if not report.valid:
            await self._record(_replace(base, outcome="rejected", detail=_problems(report)))
            report.raise_if_invalid()
        return report

    async def _validation(
        self, raw: bytes, archive: BundleArchive | None, *, require_signature: bool
    ) -> ValidationReport:
        """Run every check on ``raw`` in a bundle worker, reusing its bounded read."""
        await asyncio.to_thread(self._validator.prepare)  # ToolMissing is raised here
        return await self._workers.run(_validate, self._validator, raw, archive, require_signature)

    async def _compare(
        self, raw: bytes, *, trusted: bool = False
    ) -> tuple[str, BundleArchive, BundleChanges]:
        """Read ``raw`` within the size limits and diff it with the active revision, off the loop.

        ``trusted``: the sidecar's own startup bundle, read in a thread (no worker is started).
        """
        active = await self._revisions.active()
        current = (await self._revisions.get(active)).archive if active else None
        run = asyncio.to_thread if trusted else self._workers.run
        archive, changes = await run(_read_and_compare, self._validator.reader(), raw, current)
        return active, archive, changes

    async def _stored(self, revision: str) -> StoredRevision | None:
        """The active revision as stored, to restore if the change cannot be audited."""
        if not revision:
            return None
        try:
            return await self._revisions.get(revision)
        except SidecarError:
            return None

    async def _record_or_undo(
        self, event: AuditEvent, previous: StoredRevision | None
    ) -> AuditRecord:
        """Audit a delivered change; when the record cannot be written, undo the change.

        No revision may stay live without its audit record: if the append fails, ``previous``
        (the revision active before the change) is delivered and marked active again and the
        call fails. The bundle store and OPA are not in the audit database's transaction, so
        this is compensation, not atomicity: a crash between delivery and the append, or a
        failing undo (logged at error level, naming both revisions), can still leave the new
        revision live without its record — the residual risk docs/policy.md names.
        """
        try:
            return await self._record(event)
        except Exception as exc:  # any failure to write the record undoes the change
            problem = exc.message if isinstance(exc, SidecarError) else f"{exc!r}"
        restored = await self._undo(previous, event.new_revision)
        back = (
            f"revision {previous.revision!r} is active again"
            if restored and previous is not None
            else "the previous revision could NOT be restored (see the sidecar log)"
        )
        raise SidecarError(
            f"{event.action} of revision {event.new_revision!r} undone: its audit record could "
            f"not be written ({problem}); {back}"
        )

    async def _undo(self, previous: StoredRevision | None, revision: str) -> bool:
        if previous is None:
            _log.error(
                "audit record not written and no previous revision to restore: "
                "the revision is live without an audit record",
                bundle_revision=revision,
            )
            return False
        try:
            read = await asyncio.to_thread(self._validator.reader(), previous.archive)
            files = tuple(sorted(read.files))
            await self._delivery.deliver(previous.archive, previous.revision, files)
            await self._revisions.activate(previous.revision)
        except Exception as exc:  # logged; the caller gets an error either way
            _log.error(
                "audit record not written and restoring the previous revision failed: the "
                "revision may be live without an audit record",
                bundle_revision=revision,
                previous_revision=previous.revision,
                error=f"{exc!r}",
            )
            return False
        _log.warning(
            "audit record not written: previous revision restored",
            bundle_revision=revision,
            previous_revision=previous.revision,
        )
        return True

    async def _record(self, event: AuditEvent) -> AuditRecord:
        return await self._audit.record(_bounded(event))

    async def _refused(self, key: str, event: AuditEvent) -> None:
        """Audit a refusal of ``key``'s call (one row, or counted into a summary under a flood)."""
        await self._refusals.refused(key, _bounded(event))


def _read_and_compare(
    read: Callable[[bytes], BundleArchive], raw: bytes, current_raw: bytes | None
) -> tuple[BundleArchive, BundleChanges]:
    """Read the upload and the active revision, and diff them (in a bundle worker)."""
    archive = read(raw)
    current = read(current_raw) if current_raw is not None else None
    return archive, bundle_changes(current, archive)


def _validate(
    validator: BundleValidator,
    raw: bytes,
    archive: BundleArchive | None,
    require_signature: bool,
) -> ValidationReport:
    """Run every check on ``raw`` (in a bundle worker)."""
    return validator.validate(raw, require_signature=require_signature, archive=archive)


def _bounded(event: AuditEvent) -> AuditEvent:
    if len(event.detail) > _DETAIL_MAX:
        return _replace(event, detail=event.detail[:_DETAIL_MAX] + " …(truncated)")
    return event


def _failure(exc: SidecarError) -> str:
    return "rejected" if isinstance(exc, (BundleRejected, InvalidArgument)) else "failed"


def _replace(event: AuditEvent, **changes: Any) -> AuditEvent:
    return dataclasses.replace(event, **changes)


def _problems(report: ValidationReport) -> str:
    return "\n".join(str(p) for p in report.problems)


def _one(tenant: str) -> tuple[str, ...]:
    return (tenant,) if tenant else ()


def _read_target(tenant: str) -> dict[str, Any]:
    return {"tenants": [tenant], "global": False} if tenant else {"tenants": [], "global": True}


def _scope(target: Mapping[str, Any]) -> str:
    tenants = target.get("tenants") or []
    if target.get("global", True) or not tenants:
        return "with global scope" + (
            f" (tenants {', '.join(tenants)} and more)" if tenants else ""
        )
    return f"for tenant {', '.join(tenants)}"
