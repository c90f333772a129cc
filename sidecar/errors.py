"""The sidecar's error types and the one set of error codes shared by logs, metrics and gRPC statuses."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "BundleError",
    "ConfigError",
    "ErrorCode",
    "InvalidArgument",
    "NotFound",
    "PolicyError",
    "PolicyUnavailable",
    "SidecarError",
    "ToolMissing",
]


class ErrorCode(StrEnum):
    """Stable error codes; the gRPC layer maps each to a status, metrics and logs use the value."""

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    POLICY_UNAVAILABLE = "policy_unavailable"
    POLICY_ERROR = "policy_error"
    BUNDLE_INVALID = "bundle_invalid"
    CONFIG_INVALID = "config_invalid"
    TOOL_MISSING = "tool_missing"
    INTERNAL = "internal"


class SidecarError(Exception):
    """Base class of every error the sidecar raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(SidecarError):
    """A request field is missing or malformed; ``field`` names it (dotted path)."""

    code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class ConfigError(SidecarError):
    """The configuration is invalid; ``key`` is the dotted path of the offending key."""

    code = ErrorCode.CONFIG_INVALID

    def __init__(self, key: str, problem: str, source: str = "") -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {problem}")
        self.key = key


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


class ToolMissing(SidecarError):
    """A required external tool (opa, conftest, ...) is not installed."""

    code = ErrorCode.TOOL_MISSING
