"""The one place sidecar errors become gRPC statuses: the code table and the rich error details.

Every status a servicer returns on purpose goes through :func:`abort`: its code comes from the
error code, and ``grpc-status-details-bin`` carries a ``google.rpc.Status`` with a
``google.rpc.ErrorInfo`` (``reason`` = the error code, the same value as in logs, metrics and
``Job.error_code``; ``domain`` = :data:`DOMAIN`; ``metadata`` = the identifiers known where it
failed: decision_id, trace_id, bundle_revision, job_id, limit) and, for a bad request field, a
``google.rpc.BadRequest`` naming the field. A client reads them instead of parsing the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn, Protocol

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from sidecar.errors import ErrorCode, InvalidArgument, ResourceExhausted, SidecarError

__all__ = ["DETAILS_KEY", "DOMAIN", "abort", "error_code_of", "grpc_status", "rich_status"]

#: ErrorInfo.domain of every error the sidecar sends.
DOMAIN = "policy-sidecar"
#: The trailing-metadata key of the serialized google.rpc.Status (what grpc_status reads).
DETAILS_KEY = "grpc-status-details-bin"

# The message travels twice in the trailers (grpc-message, and base64-encoded inside the
# details beside a field violation's problem), and gRPC clients start refusing trailers over
# 8 KiB by default: longer texts are cut, the message in both places alike (clients check that
# they match), so the status always arrives whole.
_MAX_MESSAGE_CHARS = 2500
_MAX_PROBLEM_CHARS = 500

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
    ErrorCode.NOT_ENABLED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}


def grpc_status(code: ErrorCode) -> grpc.StatusCode:
    """Return the gRPC status code for a sidecar error code."""
    return _STATUS.get(code, grpc.StatusCode.INTERNAL)


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def rich_status(error: SidecarError, metadata: Mapping[str, str] | None = None) -> grpc.Status:
    """Return the status for ``error``: its code and message with ErrorInfo (+ BadRequest) details.

    ``metadata`` adds identifiers the caller of :func:`abort` knows to those the error carries.
    """
    facts = dict(error.context)
    for key, value in (metadata or {}).items():
        if value:
            facts.setdefault(key, value)
    if isinstance(error, ResourceExhausted) and error.limit:
        facts.setdefault("limit", error.limit)
    details = [
        _packed(error_details_pb2.ErrorInfo(reason=error.code.value, domain=DOMAIN, metadata=facts))
    ]
    if isinstance(error, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=_cut(error.problem, _MAX_PROBLEM_CHARS)
        )
        details.append(_packed(error_details_pb2.BadRequest(field_violations=[violation])))
    status = status_pb2.Status(
        code=grpc_status(error.code).value[0],
        message=_cut(error.message, _MAX_MESSAGE_CHARS),
        details=details,
    )
    return rpc_status.to_status(status)


async def abort(
    context: grpc.aio.ServicerContext[Any, Any], error: SidecarError, **metadata: str
) -> NoReturn:
    """End the call with the rich status of ``error``; ``metadata`` as for :func:`rich_status`."""
    # grpc-stubs lacks aio's abort_with_status (grpcio has it since 1.38).
    await context.abort_with_status(rich_status(error, metadata))  # type: ignore[attr-defined]
    raise AssertionError("context.abort_with_status returned")  # it always raises


class _Failed(Protocol):
    """A failed call as a client sees it (grpc.Call, grpc.aio.AioRpcError)."""

    def trailing_metadata(self) -> Any:
        """Return the call's trailing metadata: (key, value) pairs."""


def error_code_of(error: _Failed) -> ErrorCode | None:
    """Return the sidecar error code an error status carries (its ErrorInfo), or None."""
    for key, value in error.trailing_metadata() or ():
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == DOMAIN:
                try:
                    return ErrorCode(info.reason)
                except ValueError:
                    return None
    return None
