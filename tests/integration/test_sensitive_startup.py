"""Bad sensitive data stops ``serve`` before anything runs, with an error naming the problem.

Wrong key, tampered ciphertext, a missing or disabled KMS key, a plaintext file: exit status 2
(a configuration problem) and one line naming the config key and what is wrong; an unreachable
KMS is exit 1 (retry later). Nothing is built or started. Also the ``data`` CLI against moto KMS.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml

from sidecar.sensitive import FileKey, generate_key_file, seal
from tests.support.moto import MotoServer, moto_server
from tests.support.sensitive import ALLOWLIST, sensitive_config

pytestmark = pytest.mark.integration

_DOC = "policy.sensitive_data.documents.customers"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server for KMS, its fake credentials in the environment."""
    with moto_server(tmp_path_factory.mktemp("moto")) as server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        yield server


def _kms(moto: MotoServer) -> object:
    return boto3.client("kms", endpoint_url=moto.endpoint_url, region_name=moto.region)


def _new_key(moto: MotoServer) -> str:
    return str(_kms(moto).create_key()["KeyMetadata"]["Arn"])  # type: ignore[attr-defined]


def _cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=dict(os.environ),
        check=False,
    )


def _edit_config(path: Path, **sensitive: object) -> None:
    raw = yaml.safe_load(path.read_text())
    raw["policy"]["sensitive_data"].update(sensitive)
    path.write_text(yaml.safe_dump(raw))


def _serve_fails(config: Path, status: int, *needles: str) -> str:
    done = _cli("--config", str(config), "serve")
    assert done.returncode == status, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in line, line
    # Decryption comes first: no bundle was built, so no OPA was started either.
    assert not (config.parent / "state" / "bundle.tar.gz").exists()
    return line


def test_wrong_key_file(tmp_path: Path) -> None:
    config = sensitive_config(tmp_path)
    generate_key_file(tmp_path / "other.key")
    _edit_config(config, key_file=str(tmp_path / "other.key"))
    _serve_fails(config, 2, _DOC, "wrong key: encrypted with key file")


def test_tampered_ciphertext(tmp_path: Path) -> None:
    config = sensitive_config(tmp_path)
    path = tmp_path / "customers.enc.json"
    doc = json.loads(path.read_text())
    raw = bytearray(base64.b64decode(doc["ciphertext"]))
    raw[0] ^= 0x80
    doc["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(doc))
    _serve_fails(config, 2, _DOC, "tampered: the ciphertext")


def test_file_of_another_document(tmp_path: Path) -> None:
    # Regression (issue 15): a file encrypted (with the right key) for another document name.
    config = sensitive_config(tmp_path)
    key = FileKey(tmp_path / "kek.key")
    (tmp_path / "customers.enc.json").write_bytes(seal(ALLOWLIST, key, "partners").to_bytes())
    _serve_fails(config, 2, _DOC, "swapped: this file was encrypted for document 'partners'")


def test_plaintext_document(tmp_path: Path) -> None:
    config = sensitive_config(tmp_path)
    (tmp_path / "customers.enc.json").write_text(json.dumps(ALLOWLIST))
    _serve_fails(config, 2, _DOC, "not an encrypted data file")


def test_file_of_another_kms_key(moto: MotoServer, tmp_path: Path) -> None:
    config = sensitive_config(tmp_path, moto=moto, kms_key_id=_new_key(moto))
    other = _new_key(moto)
    _edit_config(config, kms_key_id=other)
    _serve_fails(config, 2, _DOC, "wrong key: encrypted with KMS key", other)


def test_missing_kms_key(moto: MotoServer, tmp_path: Path) -> None:
    config = sensitive_config(tmp_path, moto=moto, kms_key_id=_new_key(moto))
    _edit_config(config, kms_key_id="alias/no-such-key")
    _serve_fails(
        config, 2, "policy.sensitive_data.kms_key_id", "'alias/no-such-key' does not exist"
    )


def test_disabled_kms_key(moto: MotoServer, tmp_path: Path) -> None:
    key = _new_key(moto)
    config = sensitive_config(tmp_path, moto=moto, kms_key_id=key)
    # moto's DisableKey accepts the bare key id only (an ARN gives HTTP 500).
    _kms(moto).disable_key(KeyId=key.rsplit("/", 1)[1])  # type: ignore[attr-defined]
    _serve_fails(config, 2, "policy.sensitive_data.kms_key_id", "is Disabled")


def test_unreachable_kms_is_not_a_config_error(moto: MotoServer, tmp_path: Path) -> None:
    config = sensitive_config(tmp_path, moto=moto, kms_key_id=_new_key(moto))
    _edit_config(config, kms_endpoint_url="http://127.0.0.1:9")
    _serve_fails(config, 1, "key_service_unavailable", "http://127.0.0.1:9")


def test_data_cli_encrypts_with_kms_and_checks(moto: MotoServer, tmp_path: Path) -> None:
    key = _new_key(moto)
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump({"customers": ALLOWLIST}))
    kms = ["--kms-key-id", key, "--kms-endpoint-url", moto.endpoint_url]
    plain, out = str(tmp_path / "plain.yaml"), str(tmp_path / "out.json")
    done = _cli("data", "encrypt", *kms, plain, out)  # no --name, no config: which document?
    assert done.returncode == 2 and "give --name" in done.stderr, done.stderr
    done = _cli("data", "encrypt", *kms, "--name", "customers", plain, out)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kek"] == {"type": "aws-kms", "key_id": key}
    assert json.loads(done.stdout)["document"] == "customers"
    assert b"cust-" not in (tmp_path / "out.json").read_bytes()

    done = _cli("data", "check", *kms, "--name", "partners", out)
    assert done.returncode == 2 and "encrypted for document 'customers'" in done.stderr
    done = _cli("data", "check", *kms, out)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) | {"file": "", "sealed_at": ""} == {
        "file": "",
        "document": "customers",
        "sealed_at": "",
        "kek": {"type": "aws-kms", "key_id": key},
        "ok": True,
        "type": "object",
        "entries": 1,
    }
    assert "cust-" not in done.stdout + done.stderr

    missing = ["--kms-key-id", "alias/nope", "--kms-endpoint-url", moto.endpoint_url]
    done = _cli("data", "encrypt", *missing, "--name", "customers", plain, str(tmp_path / "x"))
    assert done.returncode == 2 and "'alias/nope' does not exist" in done.stderr
    assert not (tmp_path / "x").exists()
