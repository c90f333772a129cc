"""The sandbox's static parts: the shipped capabilities file and the scrubbed child environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sidecar.tools import OPA_CAPABILITIES, SANDBOX_REMOVED_BUILTINS, sandbox_env

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_capabilities_match_the_pinned_opa() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "opa-capabilities.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_the_capabilities_drop_network_and_environment_builtins_only() -> None:
    capabilities = json.loads(OPA_CAPABILITIES.read_text(encoding="utf-8"))
    names = {b["name"] for b in capabilities["builtins"]}
    assert not names & set(SANDBOX_REMOVED_BUILTINS)
    assert {"net.cidr_contains", "time.now_ns", "crypto.sha256", "time.parse_rfc3339_ns"} <= names
    assert capabilities["allow_net"] == []


def test_a_child_gets_the_allowlist_and_what_it_is_given_nothing_else() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/s",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "GOOGLE_APPLICATION_CREDENTIALS": "/k.json",
        "POLICY_SIDECAR_ADMIN_TOKEN": "t",
        "DATABASE_URL": "postgresql://u:p@db/x",
        "HTTPS_PROXY": "http://proxy:3128",
    }
    env = sandbox_env({"AWS_REGION": "eu-west-1"}, environ)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/s",
        "HTTPS_PROXY": "http://proxy:3128",
        "AWS_REGION": "eu-west-1",
    }
