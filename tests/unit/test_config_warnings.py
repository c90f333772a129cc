"""Unknown keys in a registry entry load with a warning (file, line, key, hint); --strict refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sidecar.config import load_config
from sidecar.errors import ConfigError
from tests.support.compat import COMPAT_FILES, compat_dir

TYPO = "registries:\n  - name: a\n    endpont: registry.example.com\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sidecar.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_registry_key_is_a_warning_naming_file_line_key_and_hint(tmp_path: Path) -> None:
    path = _write(tmp_path, TYPO)
    with capture_logs() as logs:
        config = load_config(path)
    assert config.registry("a").endpoint == ""
    assert config.warnings == (
        f"{path}:3: registries[0].endpont: unknown registry key; did you mean 'endpoint'? "
        "(ignored; --strict refuses it)",
    )
    [logged] = [e for e in logs if e["event"] == "config_warning"]
    assert logged["log_level"] == "warning"
    assert (logged["file"], logged["line"], logged["key"]) == (
        str(path),
        3,
        "registries[0].endpont",
    )


def test_unknown_auth_and_tls_keys_warn_too(tmp_path: Path) -> None:
    text = (
        "registries:\n  registries:\n    - name: a\n      auth: {type: basic, usernme: x}\n"
        "      tls:\n        caFiel: /ca.pem\n"
    )
    config = load_config(_write(tmp_path, text))
    assert [w.split(": ", 2)[1] for w in config.warnings] == [
        "registries.registries[0].auth.usernme",
        "registries.registries[0].tls.caFiel",
    ]
    assert ":4: " in config.warnings[0]
    assert ":6: " in config.warnings[1]
    assert "did you mean 'username'" in config.warnings[0]
    assert "did you mean 'ca_file'" in config.warnings[1]


def test_freightliner_fields_the_sidecar_does_not_use_stay_silent(tmp_path: Path) -> None:
    text = (
        "registries:\n  - name: a\n    type: gcr\n    location: us\n    accountID: '1'\n"
        "    retryAttempts: 3\n    timeout: 30\n    insecure: true\n    environment: prod\n"
        "    metadata: {anything: goes}\n"
    )
    assert load_config(_write(tmp_path, text)).warnings == ()


@pytest.mark.parametrize("name", COMPAT_FILES)
def test_freightliner_examples_load_without_warnings(name: str) -> None:
    assert load_config(compat_dir() / name, strict=True).warnings == ()


def test_strict_turns_the_warning_into_the_same_error(tmp_path: Path) -> None:
    path = _write(tmp_path, TYPO)
    with pytest.raises(ConfigError) as caught:
        load_config(path, strict=True)
    assert caught.value.key == "registries[0].endpont"
    assert str(caught.value) == (
        f"{path}:3: registries[0].endpont: unknown registry key; did you mean 'endpoint'?"
    )
