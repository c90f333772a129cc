"""``policy-sidecar data keygen|encrypt|check``: envelope-encrypt sensitive policy data files.

The key comes from the flags, else from ``policy.sensitive_data`` in the config. Reports name
documents, keys and counts, never a decrypted value.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from sidecar.config import SENSITIVE_ROOT, Config
from sidecar.errors import InvalidArgument, SensitiveDataError

if TYPE_CHECKING:
    from sidecar.typing import KeyEncryptionKey

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add ``data keygen|encrypt|check`` to the CLI's subcommands."""
    data = sub.add_parser(
        "data", help=f"encrypt sensitive policy data (loaded into OPA as data.{SENSITIVE_ROOT})"
    )
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    keygen = dsub.add_parser("keygen", help="write a new random 256-bit key file (mode 0600)")
    keygen.add_argument("key_file", metavar="KEY_FILE")
    encrypt = dsub.add_parser("encrypt", help="envelope-encrypt a JSON/YAML document")
    encrypt.add_argument("input", metavar="IN", help="plaintext JSON or YAML document (- = stdin)")
    encrypt.add_argument("output", metavar="OUT", help="encrypted file to write")
    check = dsub.add_parser("check", help="decrypt a file in memory and report its shape")
    check.add_argument("input", metavar="FILE", help="encrypted file")
    for parser, does in ((encrypt, "bind the file to"), (check, "check the file is bound to")):
        parser.add_argument(
            "--name",
            help=f"{does} this document name (its key in policy.sensitive_data.documents); "
            "default: the configured document whose file is OUT/FILE",
        )
    for parser in (encrypt, check):
        key = parser.add_mutually_exclusive_group()
        key.add_argument("--kms-key-id", help="AWS KMS key id, ARN or alias (the KEK)")
        key.add_argument("--key-file", help="local key file (the KEK), from `data keygen`")
        parser.add_argument("--kms-region", help="AWS region of the KMS key")
        parser.add_argument("--kms-endpoint-url", help="KMS endpoint (VPC endpoints, emulators)")


def _key(args: argparse.Namespace, config: Config) -> KeyEncryptionKey:
    # Imported here: boto3 costs ~80 ms, which every other command would pay at startup.
    from sidecar.sensitive.keys import FileKey, KmsKey  # noqa: PLC0415

    settings = config.policy.sensitive_data
    if args.key_file:
        return FileKey(Path(args.key_file))
    kms_key_id = args.kms_key_id
    if not kms_key_id and settings.key_file:
        return FileKey(Path(settings.key_file))
    kms_key_id = kms_key_id or settings.kms_key_id
    if not kms_key_id:
        raise InvalidArgument(
            "--kms-key-id", "give --kms-key-id or --key-file (or policy.sensitive_data in --config)"
        )
    return KmsKey(
        kms_key_id,
        region=args.kms_region or settings.kms_region,
        endpoint_url=args.kms_endpoint_url or settings.kms_endpoint_url,
    )


def _configured_name(args: argparse.Namespace, path: str, config: Config) -> str | None:
    """The document name: ``--name``, else the configured document whose file is ``path``."""
    if args.name:
        return str(args.name)
    target = Path(path).resolve()
    for name, file in config.policy.sensitive_data.documents.items():
        if Path(file).resolve() == target:
            return name
    return None


def _name(args: argparse.Namespace, path: str, config: Config) -> str:
    name = _configured_name(args, path, config)
    if name is None:
        raise InvalidArgument(
            "--name",
            f"give --name: the document {path} holds (its key in "
            "policy.sensitive_data.documents), which the file is bound to",
        )
    return name


def _read_plaintext(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        return yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument("IN", f"cannot read {path}: {exc}") from None
    except yaml.YAMLError:
        # The parser's message quotes the offending line: that line may be secret.
        raise InvalidArgument("IN", f"{path} is not valid JSON or YAML") from None


def _write(path: Path, body: bytes) -> None:
    path = path.resolve()
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
        os.chmod(partial, 0o644)  # ciphertext: fine to publish, commit or mount
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)


def _shape(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {"type": "object", "entries": len(value)}  # keys may be secret too
    if isinstance(value, list):
        return {"type": "array", "length": len(value)}
    return {"type": type(value).__name__}


def run(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """Run one data action and return its JSON report."""
    from sidecar.sensitive.envelope import Envelope, open_envelope, seal  # noqa: PLC0415
    from sidecar.sensitive.keys import generate_key_file  # noqa: PLC0415

    action = args.data_command
    if action == "keygen":
        try:
            fingerprint = generate_key_file(Path(args.key_file))
        except FileExistsError:
            raise InvalidArgument("KEY_FILE", f"{args.key_file} exists; not overwritten") from None
        except OSError as exc:
            raise InvalidArgument("KEY_FILE", f"cannot write {args.key_file}: {exc}") from None
        return {"key_file": str(Path(args.key_file).resolve()), "fingerprint": fingerprint}
    key = _key(args, config)
    if action == "encrypt":
        name = _name(args, args.output, config)
        document = _read_plaintext(args.input)
        try:
            envelope = seal(document, key, name)
        except (TypeError, ValueError):
            raise InvalidArgument(
                "IN", f"{args.input} holds values JSON cannot represent (dates? quote them)"
            ) from None
        _write(Path(args.output), envelope.to_bytes())
        return {
            "output": str(Path(args.output).resolve()),
            "document": name,
            "kek": dict(envelope.kek),
        }
    if action == "check":
        try:
            raw = Path(args.input).read_bytes()
        except OSError as exc:
            raise SensitiveDataError(args.input, f"cannot read: {exc}") from None
        envelope = Envelope.parse(raw, args.input)
        value = open_envelope(
            envelope, key, args.input, name=_configured_name(args, args.input, config)
        )
        return {
            "file": args.input,
            "document": envelope.document,
            "sealed_at": envelope.sealed_at,
            "kek": dict(envelope.kek),
            "ok": True,
            **_shape(value),
        }
    raise AssertionError(f"unhandled data action {action}")  # argparse rejects unknown ones
