"""Issue 15: a secret written as ``${VAR}`` whose variable is unset is refused at config load.

Left as literal text, ``policy.replication.webhook.secret`` would accept events signed with the
string "${VAR}" and ``policy.bundle.serve.read_token`` would serve bundles to whoever sends it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import load_config
from sidecar.errors import ConfigError

UNSET = "POLICY_SIDECAR_TEST_UNSET_SECRET"

CASES = [
    (
        "registries:\n  - name: hub\npolicy:\n  replication:\n    webhook:\n"
        "      listen: 127.0.0.1:0\n      secret: ${%s}\n",
        "policy.replication.webhook.secret",
        7,
    ),
    (
        "policy:\n  bundle:\n    serve:\n      listen: 127.0.0.1:0\n      token: t\n"
        "      read_token: ${%s}\n",
        "policy.bundle.serve.read_token",
        6,
    ),
    (  # a partly expanded secret is no better
        "policy:\n  bundle:\n    serve:\n      listen: 127.0.0.1:0\n      token: t\n"
        "      read_token: reader-${%s}\n",
        "policy.bundle.serve.read_token",
        6,
    ),
]


@pytest.mark.parametrize(("text", "key", "line"), CASES, ids=["webhook", "read_token", "partial"])
def test_an_unset_variable_in_a_secret_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, key: str, line: int
) -> None:
    monkeypatch.delenv(UNSET, raising=False)
    path = tmp_path / "sidecar.yaml"
    path.write_text(text % UNSET, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.key, caught.value.line) == (key, line)
    assert str(caught.value).startswith(f"{path}:{line}: {key}: ")
    assert f"${{{UNSET}}} is not set in the environment" in str(caught.value)


@pytest.mark.parametrize(("text", "key", "line"), CASES, ids=["webhook", "read_token", "partial"])
def test_a_set_variable_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, key: str, line: int
) -> None:
    monkeypatch.setenv(UNSET, "s3cret")
    path = tmp_path / "sidecar.yaml"
    path.write_text(text % UNSET, encoding="utf-8")
    policy = load_config(path).policy
    value = (
        policy.replication.webhook.secret
        if key.startswith("policy.replication")
        else policy.bundle.serve.read_token
    )
    assert value is not None and value.endswith("s3cret") and "${" not in value
