"""The PolicyAdmin domain: authenticate, authorise with OPA, validate, deliver, audit.

Every call is authenticated (certificate or token) and authorised by ``data.system.authz`` with
``{caller, action, target}``; a refusal of either kind is an audit event. Publishing and rollback
are serialised in this process and each one, successful or refused, is an audit event with the
old and new revision, the digest and what changed. Reads that succeed are not audited.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.audit import AuditEvent, AuditRecord, AuditTrail
from sidecar.bundles.archive import BundleArchive, digest_of
from sidecar.bundles.validate import BundleValidator, ValidationReport
from sidecar.errors import BundleRejected, InvalidArgument, PermissionDenied, SidecarError
from sidecar.governance.authz import OpaAuthorizer
from sidecar.governance.changes import BundleChanges, bundle_changes
from sidecar.governance.delivery import BundleDelivery
from sidecar.governance.identity import Authenticator, Caller, CallerUnknown, Credentials
from sidecar.governance.revisions import RevisionStore, StoredRevision
from sidecar.telemetry import get_logger

__all__ = ["AdminService", "Credentials", "PublishOutcome", "RevisionList", "RollbackOutcome"]

_DETAIL_MAX = 8000
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
    ) -> None:
        self._authn = authenticator
        self._authz = authorizer
        self._validator = validator
        self._delivery = delivery
        self._revisions = revisions
        self._audit = audit
        # One change at a time: each publish is compared with (and replaces) the active revision.
        self._changing = asyncio.Lock()

    async def publish(
        self, credentials: Credentials, raw: bytes, revision: str = ""
    ) -> PublishOutcome:
        """Validate, sign, publish and activate a bundle; every refusal is audited."""
        caller = await self._caller(credentials, "PublishBundle")
        async with self._changing:
            active, archive, changes = await self._compare(raw)
            base = AuditEvent(
                caller.subject, "PublishBundle", "published", old_revision=active,
                new_revision=revision or archive.revision, digest=archive.digest,
                changed_files=changes.changed, tenants=changes.tenants,
            )  # fmt: skip
            await self._authorize(caller, base, {**changes.target(), "revision": base.new_revision})
            report = await self._validated(raw, base)
            previous = await self._stored(active)
            try:
                out = raw
                signed = self._delivery.needs_signing(archive, report.signed, revision or None)
                if signed:
                    out, _ = await self._delivery.sign(archive, revision or None)
                new_revision = revision or report.revision
                await self._revisions.check_unused(new_revision, digest_of(out))
                delivered = await self._delivery.deliver(out, new_revision, report.files)
                await self._revisions.record(
                    StoredRevision(
                        new_revision, delivered.digest, len(out), "", caller.subject,
                        changes.changed, changes.tenants, out,
                    )
                )  # fmt: skip
            except SidecarError as exc:
                bad_input = isinstance(exc, (BundleRejected, InvalidArgument))
                outcome = "rejected" if bad_input else "failed"
                await self._record(_replace(base, outcome=outcome, detail=exc.message))
                raise
            record = await self._record_or_undo(
                _replace(base, new_revision=new_revision, digest=delivered.digest), previous
            )
        return PublishOutcome(
            new_revision, delivered.digest, active, delivered.location, changes, signed, record.seq
        )

    async def rollback(self, credentials: Credentials, revision: str) -> RollbackOutcome:
        """Publish a previously published revision's exact bytes again."""
        caller = await self._caller(credentials, "Rollback")
        async with self._changing:
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
            _, archive, changes = await self._compare(stored.archive)
            base = _replace(
                base, digest=stored.digest, changed_files=changes.changed, tenants=changes.tenants
            )
            await self._authorize(caller, base, {**changes.target(), "revision": revision})
            # Validated again: the inventory or the checks may have changed since it was first live.
            await self._validated(stored.archive, base, require_signature=True)
            previous = await self._stored(active)
            try:
                await self._delivery.deliver(stored.archive, revision, tuple(sorted(archive.files)))
                await self._revisions.activate(revision)
            except SidecarError as exc:
                await self._record(_replace(base, outcome="failed", detail=exc.message))
                raise
            record = await self._record_or_undo(base, previous)
        return RollbackOutcome(revision, active, stored.digest, record.seq)

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
        report = await asyncio.to_thread(self._validator.validate, raw)
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
            active, archive, changes = await self._compare(raw)
            revision = archive.revision
            if not revision or revision == active:
                return
            try:
                stored = await self._revisions.get(revision)
            except SidecarError:
                stored = None
            if stored is not None and stored.digest != archive.digest:
                _log.warning(
                    "startup bundle not recorded: its revision names other bytes already",
                    bundle_revision=revision,
                    digest=archive.digest,
                )
                return
            await self._revisions.record(
                StoredRevision(
                    revision, archive.digest, len(raw), "", actor, changes.changed,
                    changes.tenants, raw,
                )
            )  # fmt: skip
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

    async def _caller(self, credentials: Credentials, action: str) -> Caller:
        try:
            return await self._authn.authenticate(credentials)
        except CallerUnknown as exc:
            await self._record(AuditEvent(exc.actor, action, "unauthenticated", detail=exc.message))
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
            await self._record(_replace(base, outcome="denied", detail=message))
            raise PermissionDenied(message)

    async def _validated(
        self, raw: bytes, base: AuditEvent, *, require_signature: bool = False
    ) -> ValidationReport:
        report = await asyncio.to_thread(
            self._validator.validate, raw, require_signature=require_signature
        )
        if not report.valid:
            await self._record(_replace(base, outcome="rejected", detail=_problems(report)))
            report.raise_if_invalid()
        return report

    async def _compare(self, raw: bytes) -> tuple[str, BundleArchive, BundleChanges]:
        active = await self._revisions.active()
        archive = self._validator.read(raw)
        current = None
        if active:
            current = self._validator.read((await self._revisions.get(active)).archive)
        return active, archive, bundle_changes(current, archive)

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
            files = tuple(sorted(self._validator.read(previous.archive).files))
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
        if len(event.detail) > _DETAIL_MAX:
            event = _replace(event, detail=event.detail[:_DETAIL_MAX] + " …(truncated)")
        return await self._audit.record(event)


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
