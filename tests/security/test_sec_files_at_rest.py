"""Issue 15, the smaller list: files the sidecar reads at startup cannot be swapped or half-set.

The findings: the sensitive-data envelope did not bind the document name (or its age) into its
AAD, so an encrypted file could be swapped for another document's or rolled back to an older copy;
an unset ``${VAR}`` was kept as literal text for ``webhook.secret`` and
``bundle.serve.read_token`` (a guessable secret). The attacks edit files next to a real
``policy-sidecar serve`` process; each must refuse to start (exit 2, naming the problem) rather
than serve the attacker's data or a literal ``${VAR}`` secret.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecar.sensitive import FileKey, seal
from tests.support.ports import free_port
from tests.support.security import sidecar_config, write_config
from tests.support.sensitive import sensitive_config

pytestmark = pytest.mark.integration

UNSET = "POLICY_SIDECAR_SEC_TEST_NEVER_SET"


def _serve(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != UNSET}
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def _refused(config: Path, *needles: str) -> str:
    done = _serve(config)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, last
    return last


def test_an_encrypted_file_swapped_for_another_documents_is_refused(tmp_path: Path) -> None:
    config = sensitive_config(tmp_path)  # documents.customers → customers.enc.json
    key = FileKey(tmp_path / "kek.key")
    # The attacker holds another valid envelope under the same key (say, of "partners"): before
    # the fix, putting it in place of customers.enc.json decrypted fine.
    other = seal({"allowlist": {"prod-us": ["attacker"]}}, key, "partners")
    (tmp_path / "customers.enc.json").write_bytes(other.to_bytes())
    _refused(config, "customers", "swapped: this file was encrypted for document 'partners'")


def test_an_older_copy_put_back_is_refused_by_the_rollback_floor(tmp_path: Path) -> None:
    config = sensitive_config(tmp_path)
    old = (tmp_path / "customers.enc.json").read_bytes()  # the attacker keeps this copy
    # The operator re-encrypts (e.g. to revoke a customer) and raises the floor past the old copy.
    raw = yaml.safe_load(config.read_text())
    raw["policy"]["sensitive_data"]["not_before"] = "2099-01-01T00:00:00Z"
    config.write_text(yaml.safe_dump(raw))
    (tmp_path / "customers.enc.json").write_bytes(old)
    _refused(config, "customers", "not_before")
    # Refused before anything was built: the old document never reached an OPA.
    assert not (tmp_path / "state" / "bundle.tar.gz").exists()


@pytest.mark.parametrize(
    "policy",
    [
        {"replication": {"webhook": {"listen": "127.0.0.1:0", "secret": f"${{{UNSET}}}"}}},
        {"bundle": {"serve": {"listen": "127.0.0.1:0", "read_token": f"${{{UNSET}}}"}}},
    ],
    ids=["webhook.secret", "bundle.serve.read_token"],
)
def test_an_unset_variable_in_a_secret_is_refused(
    tmp_path: Path, policy: dict[str, object]
) -> None:
    doc = sidecar_config(**policy)
    doc["policy"]["listen"] = f"127.0.0.1:{free_port()}"
    config = write_config(doc, tmp_path)
    _refused(config, f"${{{UNSET}}} is not set in the environment")
