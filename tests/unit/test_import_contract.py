"""sidecar/ keeps its import contract (tests/support/import_contract.py), and the checker catches breaks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.import_contract import FLOORS, violations

ROOT = Path(__file__).resolve().parents[2] / "sidecar"


def test_the_package_keeps_its_import_contract() -> None:
    assert violations(ROOT) == []


def test_every_package_is_on_a_floor() -> None:
    packages = {
        p.name.removesuffix(".py") for p in ROOT.iterdir() if p.suffix == ".py" or p.is_dir()
    }
    packages -= {"__init__", "__pycache__", "_proto", "py"}
    placed = {name for floor in FLOORS for name in floor}
    assert packages <= placed, sorted(packages - placed)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the package to plant bad imports in."""
    target = tmp_path / "sidecar"
    shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _plant(copy: Path, relative: str, line: str) -> None:
    path = copy / relative
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("relative", "line", "message"),
    [
        ("store/_sql.py", "from sidecar.replicate import ReplicationService",
         "upward import (store is below replicate)"),
        ("decide.py", "from sidecar.api.convert import decision_to_pb",
         "upward import (decide is below api)"),
        ("model/jobs.py", "import sidecar.config", "upward import (model is below config)"),
        ("health/monitor.py", "from sidecar.webhooks import WebhookServer",
         "health and webhooks share a floor and must be independent"),
        ("enrich/registry.py", "from sidecar.config._registries import RegistryConfig",
         "private module of config/"),
        ("webhooks/server.py", "from sidecar.store import _sql", "private module of store/"),
        ("api/server.py", "from sidecar.replicate.service import ReplicationService",
         "api/ uses a use case through its face (sidecar.replicate) only"),
        ("decide.py", "import grpc", "only __main__, api, cli may use gRPC"),
        ("replicate/service.py", "from sidecar._proto import policy_pb2",
         "only __main__, api, cli may use gRPC"),
        ("oci/_client.py", "from . import _auth", "use absolute imports"),
    ],
)  # fmt: skip
def test_a_planted_bad_import_is_named(copy: Path, relative: str, line: str, message: str) -> None:
    _plant(copy, relative, line)
    found = violations(copy)
    assert len(found) == 1, found
    assert found[0].startswith(f"sidecar/{relative}:"), found
    assert message in found[0]


def test_a_new_package_must_be_placed_on_a_floor(copy: Path) -> None:
    (copy / "newthing").mkdir()
    (copy / "newthing" / "__init__.py").write_text("from sidecar.errors import SidecarError\n")
    assert violations(copy) == [
        "sidecar/newthing/__init__.py: package newthing is on no floor of the contract"
    ]
