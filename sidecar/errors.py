"""The sidecar's error types and the one set of error codes shared by logs, metrics and gRPC statuses."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

__all__ = [
    "BundleError",
    "BundleRejected",
    "ConfigError",
    "DigestMismatch",
    "ErrorCode",
    "InvalidArgument",
    "KeyServiceUnavailable",
    "NotEnabled",
    "NotFound",
    "PermissionDenied",
    "PolicyError",
    "PolicyUnavailable",
    "ReconcileBusy",
    "RegistryError",
    "RegistryUnavailable",
    "ResourceExhausted",
    "SecretUnusable",
    "SensitiveDataError",
    "SidecarError",
    "TagSuperseded",
    "ToolMissing",
    "Unauthenticated",
    "WebhookRejected",
]


class ErrorCode(StrEnum):
    """Stable error codes; the gRPC layer maps each to a status, metrics and logs use the value."""

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    POLICY_UNAVAILABLE = "policy_unavailable"
    POLICY_ERROR = "policy_error"
    BUNDLE_INVALID = "bundle_invalid"
    BUNDLE_REJECTED = "bundle_rejected"
    CONFIG_INVALID = "config_invalid"
    TOOL_MISSING = "tool_missing"
    REGISTRY_ERROR = "registry_error"
    REGISTRY_UNAVAILABLE = "registry_unavailable"
    DIGEST_MISMATCH = "digest_mismatch"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    KEY_SERVICE_UNAVAILABLE = "key_service_unavailable"
    SUPERSEDED = "superseded"
    RECONCILE_BUSY = "reconcile_busy"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    NOT_ENABLED = "not_enabled"
    INTERNAL = "internal"


class SidecarError(Exception):
    """Base class of every error the sidecar raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Identifiers known where the error happened (decision_id, trace_id, bundle_revision,
        # job_id): a gRPC caller gets them in the status's ErrorInfo metadata, so it can find the
        # failure in our logs and traces without parsing the message.
        self.context: dict[str, str] = {}

    def with_context(self, **facts: str) -> Self:
        """Attach identifiers to the error (empty values ignored); returns the error itself.

        A later call overwrites a key: an error instance kept and raised again (a stored TLS
        failure) must name the decision it failed this time, not the first one.
        """
        self.context.update({key: value for key, value in facts.items() if value})
        return self


class InvalidArgument(SidecarError):
    """A request field is missing or malformed; ``field`` names it (dotted path)."""

    code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotEnabled(SidecarError):
    """The call needs a part this sidecar does not run (replication, ResolvePull, Reconcile)."""

    code = ErrorCode.NOT_ENABLED


class ConfigError(SidecarError):
    """The configuration is invalid; ``key`` is the dotted path of the offending key."""

    code = ErrorCode.CONFIG_INVALID

    def __init__(self, key: str, problem: str, source: str = "", line: int | None = None) -> None:
        where = f"{source}:{line}: " if source and line else f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {problem}")
        self.key = key
        self.line = line


class SensitiveDataError(ConfigError):
    """Sensitive policy data cannot be encrypted or decrypted: wrong key, tampering, bad file."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(where, problem)
        self.problem = problem


class KeyServiceUnavailable(SidecarError):
    """The key service (AWS KMS) could not be reached; retrying later can succeed."""

    code = ErrorCode.KEY_SERVICE_UNAVAILABLE


class NotFound(SidecarError):
    """A looked-up object (decision id, job, revision) does not exist."""

    code = ErrorCode.NOT_FOUND


class PolicyUnavailable(SidecarError):
    """OPA could not be reached or did not answer within the deadline."""

    code = ErrorCode.POLICY_UNAVAILABLE


class PolicyError(SidecarError):
    """OPA answered, but not with a usable decision (error, undefined, malformed)."""

    code = ErrorCode.POLICY_ERROR


class BundleError(SidecarError):
    """A bundle could not be built, signed or verified; ``problems`` lists every finding."""

    code = ErrorCode.BUNDLE_INVALID

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        detail = "".join(f"\n  - {p}" for p in problems)
        super().__init__(message + detail)
        self.problems = problems


class BundleRejected(BundleError):
    """A submitted bundle failed validation; ``problems`` lists every finding (file/rule named)."""

    code = ErrorCode.BUNDLE_REJECTED


class Unauthenticated(SidecarError):
    """A caller could not be identified: no credentials, or an unknown or expired token."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(SidecarError):
    """An identified caller was refused: by ``data.system.authz``, or for widening its caller."""

    code = ErrorCode.PERMISSION_DENIED


class ResourceExhausted(SidecarError):
    """A caller went over a limit (its call rate, a size); ``limit`` names the config key."""

    code = ErrorCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, limit: str = "") -> None:
        super().__init__(message)
        self.limit = limit


class ToolMissing(SidecarError):
    """A required external tool (opa, conftest, ...) is not installed."""

    code = ErrorCode.TOOL_MISSING


class RegistryError(SidecarError):
    """A registry refused or failed a request; ``status`` is the HTTP status when there was one.

    ``transient`` says whether retrying can succeed (429, 5xx, connection errors) and
    ``retry_after`` carries the registry's ``Retry-After`` in seconds when it sent one.
    """

    code = ErrorCode.REGISTRY_ERROR

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.retry_after = retry_after


class RegistryUnavailable(RegistryError):
    """A registry could not be reached at all (connection refused, timeout): work for it is parked."""

    code = ErrorCode.REGISTRY_UNAVAILABLE

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, transient=True, retry_after=retry_after)


class SecretUnusable(RegistryError):
    """A registry's credentials could not be read from its secret manager (missing, denied, malformed).

    The message names the registry and the secret, never the secret's value. ``transient`` when
    the manager itself could not be reached (asking again later can succeed).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message, status=None, transient=transient)


class DigestMismatch(RegistryError):
    """Content did not hash to the digest it was fetched or pushed by (never retried blindly)."""

    code = ErrorCode.DIGEST_MISMATCH


class TagSuperseded(SidecarError):
    """The source tag moved to another digest while a copy ran: the destination tag is not written.

    A copy must never move a destination tag backwards (issue 13): the newer image's own copy
    owns the tag. ``current`` is the digest the source tag names now.
    """

    code = ErrorCode.SUPERSEDED

    def __init__(self, message: str, *, current: str) -> None:
        super().__init__(message)
        self.current = current


class ReconcileBusy(SidecarError):
    """Another reconcile is applying a plan (it holds the job store's lease): one at a time."""

    code = ErrorCode.RECONCILE_BUSY


class WebhookRejected(SidecarError):
    """A registry notification was refused: bad shared secret (``status`` 401) or a broken body (400)."""

    code = ErrorCode.UNAUTHENTICATED

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status
