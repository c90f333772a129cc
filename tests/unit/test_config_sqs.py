"""``policy.replication.sqs``: SQS sources of ECR events, with named defaults and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import SqsAuth, SqsSource, load_config
from sidecar.errors import ConfigError

REGISTRIES = (
    "registries:\n"
    "  - {name: ecr-west, type: ecr, region: us-west-2, account_id: '123456789012',\n"
    "     auth: {type: ecr, profile: replicator}}\n"
    "  - {name: hub}\n"
)
QUEUE = "https://sqs.us-west-2.amazonaws.com/123456789012/ecr-events"


def _load(tmp_path: Path, sources: str) -> tuple[SqsSource, ...]:
    path = tmp_path / "sidecar.yaml"
    path.write_text(REGISTRIES + "policy:\n  replication:\n    sqs:\n" + sources, encoding="utf-8")
    return load_config(path).policy.replication.sqs


def test_no_sources_by_default(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(REGISTRIES, encoding="utf-8")
    assert load_config(path).policy.replication.sqs == ()


def test_a_source_needs_only_its_queue_and_registry(tmp_path: Path) -> None:
    (source,) = _load(tmp_path, f"      - {{queue_url: '{QUEUE}', registry: ecr-west}}\n")
    assert source == SqsSource(queue_url=QUEUE, registry="ecr-west", name="ecr-west")
    # The named defaults: long polling at SQS's maximum, a minute hidden, invalid ones deleted.
    assert (source.wait_time_s, source.visibility_timeout_s, source.max_messages) == (20, 60, 10)
    assert (source.max_message_bytes, source.invalid_messages) == (65536, "delete")
    assert source.auth is None  # the registry's own AWS credentials


def test_settings_are_read_with_camel_case_and_paths_resolved(tmp_path: Path) -> None:
    (source,) = _load(
        tmp_path,
        f"      - queueUrl: '{QUEUE}'\n"
        "        registry: ecr-west\n"
        "        name: west-events\n"
        "        endpointUrl: http://127.0.0.1:4566\n"
        "        waitTimeS: 5\n"
        "        visibilityTimeoutS: 120\n"
        "        invalidMessages: keep\n"
        "        retryBaseS: 500ms\n"
        "        auth: {credentials_file: aws/creds, role_arn: 'arn:aws:iam::1:role/r'}\n",
    )
    assert source.name == "west-events"
    assert source.endpoint_url == "http://127.0.0.1:4566"
    assert (source.wait_time_s, source.visibility_timeout_s) == (5, 120)
    assert source.invalid_messages == "keep"
    assert source.retry_base_s == 0.5
    assert source.auth == SqsAuth(
        credentials_file=str(tmp_path / "aws" / "creds"), role_arn="arn:aws:iam::1:role/r"
    )


@pytest.mark.parametrize(
    ("entry", "key", "problem"),
    [
        ("{registry: ecr-west}", "sqs[0].queue_url", "required"),
        (f"{{queue_url: '{QUEUE}'}}", "sqs[0].registry", "required"),
        (f"{{queue_url: '{QUEUE}', registry: nowhere}}", "sqs[0].registry", "unknown registry"),
        ("{queue_url: 'ftp://x/q', registry: ecr-west}", "sqs[0].queue_url", "http(s)"),
        (
            f"{{queue_url: '{QUEUE}', registry: ecr-west, wait_time_s: 21}}",
            "sqs[0].wait_time_s",
            "at most 20",
        ),
        (
            f"{{queue_url: '{QUEUE}', registry: ecr-west, max_messages: 11}}",
            "sqs[0].max_messages",
            "at most 10",
        ),
        (
            f"{{queue_url: '{QUEUE}', registry: ecr-west, invalid_messages: drop}}",
            "sqs[0].invalid_messages",
            "not one of delete, keep",
        ),
        (
            f"{{queue_url: '{QUEUE}', registry: ecr-west, retry_base_s: 5, retry_max_s: 1}}",
            "sqs[0].retry_max_s",
            "at least retry_base_s",
        ),
        (
            f"{{queue_url: '{QUEUE}', registry: ecr-west, wait: 3}}",
            "sqs[0].wait",
            "unknown key",
        ),
        (
            f"{{queue_url: '{QUEUE}', registry: ecr-west, auth: {{password: x}}}}",
            "sqs[0].auth.password",
            "unknown key",
        ),
    ],
)
def test_mistakes_are_refused_naming_the_key(
    tmp_path: Path, entry: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"      - {entry}\n")
    assert key in str(caught.value)
    assert problem in str(caught.value)


def test_two_sources_may_not_share_a_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="duplicate SQS source name 'ecr-west'"):
        _load(
            tmp_path,
            f"      - {{queue_url: '{QUEUE}', registry: ecr-west}}\n"
            f"      - {{queue_url: '{QUEUE}-2', registry: ecr-west}}\n",
        )
