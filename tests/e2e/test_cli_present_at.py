"""``policy-sidecar decide`` with observed copies: the decision's ``remove`` (DESIGN §3.4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

# clock: decisions here use the sidecar's wall clock (no scan gate applies to dev images)
pytestmark = pytest.mark.clock

ROOT = Path(__file__).resolve().parents[2]
CASES_CONFIG = ROOT / "tests" / "cases" / "sidecar.yaml"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True, text=True, timeout=180, check=False, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    raw: dict[str, Any] = yaml.safe_load(CASES_CONFIG.read_text(encoding="utf-8"))
    raw["policy"]["state_dir"] = str(tmp_path / "state")
    raw["policy"]["bundle"]["output"] = str(tmp_path / "bundle.tar.gz")
    raw["policy"]["bundle"]["data_dirs"] = [
        str((CASES_CONFIG.parent / d).resolve()) for d in raw["policy"]["bundle"]["data_dirs"]
    ]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_decide_image_names_the_copies_to_remove(config: Path) -> None:
    proc = _cli(
        "--config", str(config), "decide", "--image", "ci/team/billing:dev-3",
        "--label", "compliance-required=true", "--present-at", "dev-us", "--present-at", "dev-eu",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)["decision"]
    assert [r["registry"] for r in decision["routes"]] == ["dev-eu"]
    assert decision["remove"] == [{"registry": "dev-us", "reasons": ["NOT_GDPR"]}]
    assert "replication.removal" in decision["policies"]


def test_decide_refuses_an_unknown_present_at_registry(config: Path) -> None:
    proc = _cli(
        "--config", str(config), "decide", "--image", "ci/team/app:dev-3",
        "--present-at", "nowhere",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "image.present_at" in proc.stderr and "nowhere" in proc.stderr


def test_decide_policy_input_without_present_at_removes_nothing(
    config: Path, tmp_path: Path
) -> None:
    inventory = yaml.safe_load(CASES_CONFIG.read_text(encoding="utf-8"))["registries"]
    registries = [
        {"name": r["name"], "region": r["region"], **r["metadata"], "healthy": True}
        for r in inventory
    ]
    image = {"registry": "ci", "repository": "team/billing", "tag": "dev-3",
             "labels": {"compliance-required": "true"}}  # fmt: skip
    doc = {"now": "2026-11-28T12:00:00Z", "image": image, "registries": registries}
    answers = []
    for present in (None, ["dev-us", "ci"]):
        if present is not None:
            image["present_at"] = present
        path = tmp_path / "input.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        proc = _cli("--config", str(config), "decide", "--policy-input", str(path))
        assert proc.returncode == 0, proc.stderr
        answers.append(json.loads(proc.stdout))
    assert answers[0]["remove"] == []
    # The source (ci) is never removed, whatever present_at says.
    assert answers[1]["remove"] == [{"registry": "dev-us", "reasons": ["NOT_GDPR"]}]
