"""``policy-sidecar bundle build|sign|publish|verify|keygen|serve``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.app.bundle import build_local_bundle, signing_keys
from sidecar.bundles.build import BuiltBundle
from sidecar.bundles.keys import generate_keypair
from sidecar.config import Config
from sidecar.errors import BundleError, InvalidArgument
from sidecar.tools import find_tool

if TYPE_CHECKING:
    from sidecar.bundles.validate import ValidationReport

__all__ = ["TOKEN_ENV", "add_parser", "run"]

# Tokens come from the environment by default: a --token value shows up in `ps` and shell history.
TOKEN_ENV = "POLICY_SIDECAR_BUNDLE_TOKEN"  # noqa: S105 - a variable name, not a secret
READ_TOKEN_ENV = "POLICY_SIDECAR_BUNDLE_READ_TOKEN"  # noqa: S105


def add_parser(sub: Any) -> None:
    """Add ``bundle build|sign|publish|verify|keygen|serve`` to the CLI's subcommands."""
    bundle = sub.add_parser("bundle", help="build, sign, publish, verify and serve policy bundles")
    bsub = bundle.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")
    build = bsub.add_parser("build", help="build and sign the bundle from rego/ and bundles/")
    build.add_argument("--output", "-o", required=True, help="bundle .tar.gz to write")
    build.add_argument("--revision", help="bundle revision (default: timestamp + content hash)")
    build.add_argument("--signing-key", help="RS256 private key PEM (default: config or dev key)")
    verify = bsub.add_parser(
        "verify",
        help="validate a bundle: signature, opa check --strict, opa test, data schema, rule "
        "chains, inventory references, conftest inventory checks",
    )
    verify.add_argument("bundle_path", metavar="BUNDLE")
    verify.add_argument("--verification-key", help="public key PEM (default: config or dev key)")
    keygen = bsub.add_parser("keygen", help="generate an RS256 signing key pair")
    keygen.add_argument("directory")
    sign = bsub.add_parser("sign", help="(re)sign a bundle archive or directory with opa build")
    sign.add_argument("bundle_path", metavar="BUNDLE", help="bundle .tar.gz or directory")
    sign.add_argument("--output", "-o", required=True, help="signed bundle .tar.gz to write")
    sign.add_argument("--signing-key", help="RS256 private key PEM (default: config or dev key)")
    sign.add_argument("--revision", help="new revision (default: the bundle's .manifest one)")
    publish = bsub.add_parser(
        "publish", help="publish a signed bundle to S3, GCS or the built-in bundle server"
    )
    publish.add_argument(
        "--to", required=True, metavar="URL",
        help="s3://BUCKET/KEY, gs://BUCKET/OBJECT or http(s)://HOST:PORT/bundles/NAME",
    )  # fmt: skip
    publish.add_argument("--bundle", metavar="PATH", help="archive to publish (default: build)")
    publish.add_argument(
        "--token", help="bundle server upload token (default: $POLICY_SIDECAR_BUNDLE_TOKEN)"
    )
    publish.add_argument("--endpoint-url", help="S3/GCS endpoint (MinIO, emulators, gateways)")
    publish.add_argument("--region", help="S3 region (default: the AWS SDK's)")
    publish.add_argument(
        "--verification-key", help="validate with this public key before uploading"
    )
    publish.add_argument(
        "--skip-verify", action="store_true", help="upload without validating it first"
    )
    serve_bundles = bsub.add_parser("serve", help="run the built-in HTTP bundle server")
    serve_bundles.add_argument("--state-dir", required=True, help="where bundles are kept")
    serve_bundles.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve_bundles.add_argument("--port", type=int, default=8282, help="port to bind")
    serve_bundles.add_argument(
        "--token", help="upload token (default: $POLICY_SIDECAR_BUNDLE_TOKEN)"
    )
    serve_bundles.add_argument(
        "--max-bytes", type=int, default=64 * 1024 * 1024, help="largest bundle accepted"
    )


def run(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """Run one bundle action and return its JSON report."""
    action = args.bundle_command
    if action == "build":
        local = build_local_bundle(
            config,
            output=Path(args.output),
            revision=args.revision,
            signing_key=Path(args.signing_key) if args.signing_key else None,
        )
        built = local.bundle
        return {
            "path": str(built.path),
            "revision": built.revision,
            "digest": built.digest,
            "size_bytes": built.size,
            "files": list(built.files),
            "verification_key": str(local.verification_key),
        }
    if action == "verify":
        key = Path(args.verification_key) if args.verification_key else signing_keys(config)[1]
        return _validate(Path(args.bundle_path), key, config).to_json()
    if action == "sign":
        return _sign(args, config)
    if action == "publish":
        return _publish(args, config)
    if action == "serve":
        asyncio.run(_serve(args))
        return {"stopped": True}
    if action == "keygen":
        private, public = generate_keypair(Path(args.directory))
        return {"signing_key": str(private), "verification_key": str(public)}
    raise AssertionError(f"unhandled bundle action {action}")  # argparse rejects unknown ones


def _sign(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    from sidecar.bundles import sign_bundle  # noqa: PLC0415

    key = Path(args.signing_key) if args.signing_key else signing_keys(config)[0]
    signed = sign_bundle(
        Path(args.bundle_path),
        Path(args.output),
        signing_key=key,
        opa_binary=find_tool("opa", config.policy.opa.binary),
        revision=args.revision,
    )
    return {"path": str(signed.path), "revision": signed.revision, "digest": signed.digest}


def _publish(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    from sidecar.bundles.publish import bundle_from_file, publisher_for  # noqa: PLC0415
    from sidecar.config import parse_target  # noqa: PLC0415

    target = parse_target(args.to)  # a bad URL fails before anything is built
    token = args.token or os.environ.get(TOKEN_ENV)
    if target.store == "http" and not token:
        raise InvalidArgument(
            "--token", f"the bundle server needs a token (--token or ${TOKEN_ENV})"
        )
    bundle: BuiltBundle = (
        bundle_from_file(Path(args.bundle)) if args.bundle else build_local_bundle(config).bundle
    )
    if not args.skip_verify:
        # Refuse to ship what OPA would refuse, or what would do harm once active.
        key = Path(args.verification_key) if args.verification_key else signing_keys(config)[1]
        _validate(bundle.path, key, config)
    publisher = publisher_for(
        args.to, token=token, endpoint_url=args.endpoint_url, region=args.region
    )
    return publisher.publish(bundle).to_json()


def _validate(path: Path, key: Path, config: Config) -> ValidationReport:
    """Run every validation check; BundleRejected lists every problem found."""
    from sidecar.bundles.validate import validator_for  # noqa: PLC0415

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read bundle {path}: {exc}") from exc
    limits = config.policy.admin
    validator = validator_for(
        config,
        key,
        max_bytes=limits.max_bundle_bytes,
        max_unpacked_bytes=limits.max_unpacked_bytes,
    )
    report = validator.validate(raw, require_signature=True)
    report.raise_if_invalid(f"bundle {path}")
    return report


async def _serve(args: argparse.Namespace) -> None:
    from sidecar.bundles.server import BundleServer  # noqa: PLC0415

    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        raise InvalidArgument("--token", f"set an upload token (--token or ${TOKEN_ENV})")
    server = BundleServer(
        Path(args.state_dir),
        token=token,
        read_token=os.environ.get(READ_TOKEN_ENV),
        host=args.host,
        port=args.port,
        max_bytes=args.max_bytes,
    )
    stopping = asyncio.Event()
    # SIGTERM (Kubernetes) ends the wait like Ctrl-C does, so held long polls get their 304.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await server.start()
    try:
        await stopping.wait()
    finally:
        await server.stop()
