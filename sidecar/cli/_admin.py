"""``policy-sidecar admin …``: a client of a running sidecar's PolicyAdmin API, and hash-token."""

from __future__ import annotations

import argparse
import getpass
import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.config import Config
from sidecar.errors import ErrorCode, InvalidArgument, SidecarError

if TYPE_CHECKING:
    import grpc

__all__ = ["TOKEN_ENV", "add_parser", "run"]

# From the environment by default: a --token value shows up in `ps` and shell history.
TOKEN_ENV = "POLICY_SIDECAR_ADMIN_TOKEN"  # noqa: S105 - a variable name, not a secret


def add_parser(sub: Any) -> None:
    """Add ``admin validate|publish|revisions|rollback|log|hash-token``."""
    admin = sub.add_parser("admin", help="call a running sidecar's PolicyAdmin API")
    asub = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    validate = asub.add_parser("validate", help="ValidateBundle: run every check, publish nothing")
    validate.add_argument("bundle_path", metavar="BUNDLE")
    publish = asub.add_parser("publish", help="PublishBundle: validate, sign, publish, activate")
    publish.add_argument("bundle_path", metavar="BUNDLE")
    publish.add_argument("--revision", default="", help="publish under this revision")
    revisions = asub.add_parser("revisions", help="ListRevisions, newest first")
    revisions.add_argument("--tenant", default="", help="only revisions changing this tenant")
    revisions.add_argument("--limit", type=int, default=0)
    rollback = asub.add_parser("rollback", help="Rollback: publish an earlier revision again")
    rollback.add_argument("revision")
    log = asub.add_parser("log", help="GetAuditLog, newest first")
    log.add_argument("--tenant", default="", help="only events touching this tenant")
    log.add_argument("--limit", type=int, default=0)
    log.add_argument("--before-seq", type=int, default=0)
    hashing = asub.add_parser(
        "hash-token", help="print the sha256 (or bcrypt) of a token for policy.admin.tokens"
    )
    hashing.add_argument("--bcrypt", action="store_true", help="bcrypt instead of sha256")
    for parser in (validate, publish, revisions, rollback, log):
        parser.add_argument("--server", help="HOST:PORT (default: policy.admin.listen or listen)")
        parser.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV})")
        parser.add_argument("--ca", help="CA of the server certificate: connect with TLS")
        parser.add_argument("--cert", help="client certificate PEM (mTLS)")
        parser.add_argument("--key", help="client private key PEM (mTLS)")
        parser.add_argument("--server-name", help="expected name in the server certificate")


async def run(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """Run one admin action and return its JSON answer."""
    if args.admin_command == "hash-token":
        return _hash_token(args.bcrypt)
    # Imported here: gRPC and the generated code would slow every other command's start.
    import grpc  # noqa: PLC0415
    from google.protobuf.json_format import MessageToDict  # noqa: PLC0415

    from sidecar._proto import policy_pb2_grpc as pb_grpc  # noqa: PLC0415

    token = args.token or os.environ.get(TOKEN_ENV) or None
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with _channel(args, config) as channel:
        stub = pb_grpc.PolicyAdminStub(channel)
        try:
            answer = await _call(stub, args, metadata)
        except grpc.aio.AioRpcError as exc:
            raise _RemoteError(exc) from None
    return MessageToDict(answer, preserving_proto_field_name=True)


async def _call(stub: Any, args: argparse.Namespace, metadata: Any) -> Any:
    from sidecar._proto import policy_pb2 as pb  # noqa: PLC0415

    action = args.admin_command
    if action == "validate":
        check = pb.ValidateBundleRequest(bundle=_read(args.bundle_path))
        return await stub.ValidateBundle(check, metadata=metadata)
    if action == "publish":
        publish = pb.PublishBundleRequest(bundle=_read(args.bundle_path), revision=args.revision)
        return await stub.PublishBundle(publish, metadata=metadata)
    if action == "revisions":
        listing = pb.ListRevisionsRequest(tenant=args.tenant, limit=args.limit)
        return await stub.ListRevisions(listing, metadata=metadata)
    if action == "rollback":
        return await stub.Rollback(pb.RollbackRequest(revision=args.revision), metadata=metadata)
    log = pb.GetAuditLogRequest(tenant=args.tenant, limit=args.limit, before_seq=args.before_seq)
    return await stub.GetAuditLog(log, metadata=metadata)


class _RemoteError(SidecarError):
    """The sidecar answered with an error status: its error code and message, as it sent them."""

    def __init__(self, exc: grpc.aio.AioRpcError) -> None:
        from sidecar.api.status import error_code_of, grpc_status  # noqa: PLC0415

        super().__init__(str(exc.details() or exc.code().name))
        # The code the status's ErrorInfo names; from a server without details, the one
        # error-code table read backwards. Exit status and message then match a local error.
        self.code = error_code_of(exc) or next(
            (code for code in ErrorCode if grpc_status(code) == exc.code()), ErrorCode.INTERNAL
        )


def _channel(args: argparse.Namespace, config: Config) -> grpc.aio.Channel:
    import grpc  # noqa: PLC0415

    admin = config.policy.admin
    server = args.server or admin.listen or config.policy.listen
    if not args.ca:
        return grpc.aio.insecure_channel(server)
    if bool(args.cert) != bool(args.key):
        raise InvalidArgument("--cert", "give both --cert and --key, or neither")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(args.ca),
        private_key=_read(args.key) if args.key else None,
        certificate_chain=_read(args.cert) if args.cert else None,
    )
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.aio.secure_channel(server, credentials, options=options)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(path, f"cannot read: {exc}") from exc


def _hash_token(use_bcrypt: bool) -> dict[str, Any]:
    # Read from the terminal or stdin, never from argv (it would land in shell history).
    token = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline().strip()
    if not token:
        raise InvalidArgument("token", "empty token")
    if use_bcrypt:
        import bcrypt  # noqa: PLC0415

        return {"bcrypt": bcrypt.hashpw(token.encode(), bcrypt.gensalt()).decode()}
    return {"sha256": hashlib.sha256(token.encode()).hexdigest()}
