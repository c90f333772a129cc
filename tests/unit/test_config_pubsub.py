"""``policy.replication.webhook.pubsub``: Pub/Sub push and pull settings, and their clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import GOOGLE_ISSUER, GOOGLE_JWKS_URL, PubSubSettings, load_config
from sidecar.errors import ConfigError

HEAD = (
    "registries:\n  - name: ar\n    endpoint: https://us-east1-docker.pkg.dev\n"
    "policy:\n  replication:\n    webhook:\n      listen: '127.0.0.1:0'\n      secret: s\n"
)


def _load(tmp_path: Path, pubsub: str, head: str = HEAD) -> PubSubSettings | None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(head + "      pubsub:\n" + pubsub, encoding="utf-8")
    return load_config(path).policy.replication.webhook.pubsub


def test_absent_means_off(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(HEAD, encoding="utf-8")
    assert load_config(path).policy.replication.webhook.pubsub is None


def test_push_with_oidc_defaults_to_google_issuer_and_keys(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        "        push: true\n        oidc:\n          audience: https://sidecar.example/push\n"
        "          serviceAccount: pusher@p.iam.gserviceaccount.com\n",
    )
    assert settings is not None and settings.push and settings.oidc is not None
    assert settings.oidc.audience == "https://sidecar.example/push"
    assert (settings.oidc.issuer, settings.oidc.jwks_url) == (GOOGLE_ISSUER, GOOGLE_JWKS_URL)
    assert settings.oidc.service_account == "pusher@p.iam.gserviceaccount.com"


def test_push_token_stays_out_of_repr(tmp_path: Path) -> None:
    settings = _load(tmp_path, "        push: true\n        token: t0ken-value\n")
    assert settings is not None and settings.token == "t0ken-value"
    assert "t0ken-value" not in repr(settings)


def test_pull_subscription_with_an_emulator(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        "        subscription: projects/my-project/subscriptions/gcr-sidecar\n"
        "        endpoint: 127.0.0.1:8085\n        insecure: true\n        max_messages: 20\n",
    )
    assert settings is not None
    assert settings.subscription == "projects/my-project/subscriptions/gcr-sidecar"
    assert (settings.endpoint, settings.insecure, settings.max_messages) == (
        "127.0.0.1:8085",
        True,
        20,
    )


@pytest.mark.parametrize(
    ("pubsub", "key", "problem"),
    [
        ("        push: true\n", "pubsub.token", "required when push is true"),
        ("        push: true\n        oidc: {issuer: x}\n", "oidc.audience", "required"),
        ("        token: t\n", "pubsub.push", "neither push"),
        ("        subscription: gcr\n", "pubsub.subscription", "projects/PROJECT"),
        (
            "        subscription: projects/my-project/subscriptions/s1x\n        insecure: true\n",
            "pubsub.endpoint",
            "required when insecure",
        ),
        ("        push: true\n        token: t\n        pushh: 1\n", "pubsub.pushh", "unknown"),
        (
            "        push: true\n        oidc: {audience: a, jwks_url: 'file:///etc/keys'}\n",
            "oidc.jwks_url",
            "http(s)",
        ),
    ],
)
def test_errors_name_the_key(tmp_path: Path, pubsub: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, pubsub)
    assert key in str(caught.value) and problem in str(caught.value), str(caught.value)


def test_pubsub_needs_the_webhook_listener(tmp_path: Path) -> None:
    head = "registries:\n  - name: ar\npolicy:\n  replication:\n    webhook:\n"
    with pytest.raises(ConfigError, match=r"webhook\.pubsub.*needs webhook\.listen"):
        _load(tmp_path, "        push: true\n        token: t\n", head=head)
