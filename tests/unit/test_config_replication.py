"""The ``policy.replication`` section: named defaults, per-registry overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import ReplicationSettings, job_store_url, load_config
from sidecar.errors import ConfigError

REGISTRIES = "registries:\n  - name: hub\n  - name: ecr\n"


def _load(tmp_path: Path, text: str) -> ReplicationSettings:
    path = tmp_path / "sidecar.yaml"
    path.write_text(REGISTRIES + text, encoding="utf-8")
    return load_config(path).policy.replication


def test_defaults_keep_jobs_in_sqlite_under_the_state_dir(tmp_path: Path) -> None:
    settings = _load(tmp_path, "")
    assert settings == ReplicationSettings()
    assert job_store_url(settings, "/var/lib/sidecar") == "sqlite:////var/lib/sidecar/jobs.db"
    assert settings.webhook.listen == ""  # the webhook endpoint is off until configured


def test_overrides_are_read_with_camel_case_tolerated(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        "policy:\n  replication:\n"
        "    store: sqlite:///jobs/queue.db\n"
        "    workers: 8\n    perRegistryConcurrency: 3\n"
        "    registry_concurrency: {hub: 1}\n"
        "    registry_rate_limit_rps: {hub: 2.5}\n"
        "    retry: {max_attempts: 2, base_s: 0.1}\n"
        "    webhook: {listen: '127.0.0.1:0', secret: s3cret, retryIntervalS: 500ms}\n",
    )
    assert settings.store == f"sqlite:///{tmp_path / 'jobs' / 'queue.db'}"  # relative to the file
    assert (settings.workers, settings.per_registry_concurrency) == (8, 3)
    assert dict(settings.registry_concurrency) == {"hub": 1}
    assert dict(settings.registry_rate_limit_rps) == {"hub": 2.5}
    assert (settings.retry.max_attempts, settings.retry.base_s, settings.retry.max_s) == (
        2,
        0.1,
        60.0,
    )
    assert settings.webhook.secret == "s3cret"
    assert settings.webhook.retry_interval_s == 0.5
    assert "s3cret" not in repr(settings)  # secrets stay out of logs


def test_postgres_store_url_is_kept_as_written(tmp_path: Path) -> None:
    url = "postgresql://sidecar:pw@db.internal:5432/jobs"
    assert _load(tmp_path, f"policy:\n  replication: {{store: '{url}'}}\n").store == url


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("workers: 0", "policy.replication.workers", "at least 1"),
        (
            "registry_concurrency: {quay: 2}",
            "policy.replication.registry_concurrency.quay",
            "unknown registry 'quay'",
        ),
        ("store: mysql://x", "policy.replication.store", "sqlite:///PATH or postgresql://"),
        ("webhook: {listen: '127.0.0.1:9'}", "policy.replication.webhook.secret", "required"),
        ("webhook: {listen: nowhere, secret: s}", "policy.replication.webhook.listen", "HOST:PORT"),
        (
            "webhook: {retry_interval_s: 0}",
            "policy.replication.webhook.retry_interval_s",
            "at least 0.05",
        ),
        ("retry: {max_attemps: 3}", "policy.replication.retry.max_attemps", "max_attempts"),
    ],
)
def test_invalid_settings_name_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"policy:\n  replication:\n    {text}\n")
    assert caught.value.key == key
    assert problem in caught.value.message


def test_retention_defaults_and_overrides(tmp_path: Path) -> None:
    defaults = _load(tmp_path, "").retention
    assert (defaults.jobs_days, defaults.events_days, defaults.deferrals_days) == (30, 30, 30)
    assert (defaults.dead_events_days, defaults.keep_revisions, defaults.interval_s) == (
        90,
        50,
        3600,
    )
    settings = _load(
        tmp_path,
        "policy:\n  replication:\n    retention:\n"
        "      {jobs_days: 7, eventsDays: 0.5, keep_revisions: 0, interval_s: 10m}\n",
    ).retention
    assert (settings.jobs_days, settings.events_days, settings.keep_revisions) == (7, 0.5, 0)
    assert settings.interval_s == 600
    with pytest.raises(ConfigError, match="jobs_days"):
        _load(tmp_path, "policy:\n  replication:\n    retention: {jobs_days: -1}\n")
