"""Maps the sidecar's error codes to gRPC status codes, in one table used by every servicer."""

from __future__ import annotations

import grpc

from sidecar.errors import ErrorCode

__all__ = ["grpc_status"]

_STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.POLICY_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    # OPA answered but the decision is unusable: retrying will not help until the bundle changes.
    ErrorCode.POLICY_ERROR: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.BUNDLE_INVALID: grpc.StatusCode.FAILED_PRECONDITION,
    # A bundle someone submitted is bad input: the caller must fix the bundle.
    ErrorCode.BUNDLE_REJECTED: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.CONFIG_INVALID: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.TOOL_MISSING: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.REGISTRY_ERROR: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.REGISTRY_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.DIGEST_MISMATCH: grpc.StatusCode.DATA_LOSS,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.KEY_SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    # Another write of the same tag won the race: a concurrency conflict, not a failure.
    ErrorCode.SUPERSEDED: grpc.StatusCode.ABORTED,
    ErrorCode.RECONCILE_BUSY: grpc.StatusCode.ABORTED,
    # A caller over its rate or a size limit: it may retry later, or smaller.
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}


def grpc_status(code: ErrorCode) -> grpc.StatusCode:
    """Return the gRPC status code for a sidecar error code."""
    return _STATUS.get(code, grpc.StatusCode.INTERNAL)
