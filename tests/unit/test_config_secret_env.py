"""Issue 15: a secret written as ``${VAR}`` whose variable is unset is refused at config load.

Left as literal text, ``policy.replication.webhook.secret`` would accept events signed with the
string "${VAR}", ``policy.bundle.serve.read_token`` would serve bundles to whoever sends it, and a
registry's ``auth.password``/``auth.token`` would be sent to the registry as that literal text.
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
    (  # a registry password: sent as Basic "user:${VAR}" otherwise
        "registries:\n  - name: hub\n    endpoint: https://hub.example\n    auth:\n"
        "      type: basic\n      username: bot\n      password: ${%s}\n",
        "registries[0].auth.password",
        7,
    ),
    (  # a registry token (camelCase wrapper shape, as Freightliner writes it)
        "registries:\n  registries:\n    - name: gh\n      endpoint: https://ghcr.example\n"
        "      auth:\n        type: token\n        token: ghp_${%s}\n",
        "registries.registries[0].auth.token",
        7,
    ),
    (  # any other credential field: the username
        "registries:\n  - name: hub\n    auth:\n      type: basic\n      username: ${%s}\n"
        "      password: p\n",
        "registries[0].auth.username",
        5,
    ),
    (  # the secret manager's secret name
        "registries:\n  - name: hub\n    auth:\n      use_secrets_manager: true\n"
        "      secret_name: ${%s}\n",
        "registries[0].auth.secret_name",
        5,
    ),
]
IDS = ["webhook", "read_token", "partial", "password", "token", "username", "secret_name"]


@pytest.mark.parametrize(("text", "key", "line"), CASES, ids=IDS)
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


@pytest.mark.parametrize(("text", "key", "line"), CASES, ids=IDS)
def test_a_set_variable_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, key: str, line: int
) -> None:
    monkeypatch.setenv(UNSET, "s3cret")
    path = tmp_path / "sidecar.yaml"
    path.write_text(text % UNSET, encoding="utf-8")
    config = load_config(path)
    policy = config.policy
    if key.startswith("registries"):
        value: str | None = getattr(config.registries[0].auth, key.rpartition(".")[2])
    elif key.startswith("policy.replication"):
        value = policy.replication.webhook.secret
    else:
        value = policy.bundle.serve.read_token
    assert value is not None and value.endswith("s3cret") and "${" not in value
