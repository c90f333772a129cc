"""Every config we ship or must accept starts a serving sidecar: the demo and Freightliner's examples.

They name files this machine lacks (a Harbor CA, GCP service-account keys) and registries nobody
can reach. The sidecar must still start and decide; only requests to those registries fail, naming
the missing file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.config import load_config
from tests.support.compat import COMPAT_FILES, compat_dir
from tests.support.sidecar import isolated_config, running_sidecar

pytestmark = pytest.mark.timeout(180)

_ROOT = Path(__file__).resolve().parents[2]
_DEMO = _ROOT / "deploy" / "config" / "example.yaml"


async def test_the_demo_config_of_scripts_run_sh_serves_the_readme_decision(
    tmp_path: Path,
) -> None:
    async with running_sidecar(isolated_config(load_config(_DEMO), tmp_path)) as running:
        labels = {
            "security.scan.status": "passed",
            "security.scan.completed-at": "2026-11-28T09:00:00Z",
        }
        answer = await running.stub.Decide(
            pb.DecideRequest(
                image=pb.Image(registry="ci", repository="team/web", tag="prod-1.4", labels=labels),
            ),
            timeout=30,
        )
        assert not answer.degraded and answer.bundle_revision
        assert answer.decision.allow
        assert {r.registry for r in answer.decision.routes} >= {"prod-us", "prod-eu"}


@pytest.mark.parametrize("name", COMPAT_FILES)
async def test_freightliner_example_configs_start_a_serving_sidecar(
    name: str, tmp_path: Path
) -> None:
    config = isolated_config(load_config(compat_dir() / name), tmp_path)
    async with running_sidecar(config) as running:
        assert running.sidecar.runtime is not None and running.sidecar.runtime.ready()
        # Files without a registries: list (sync settings only) have nothing to decide about.
        for registry in config.registries[:1]:
            answer = await running.stub.Decide(
                pb.DecideRequest(
                    image=pb.Image(registry=registry.name, repository="team/app", tag="v1")
                ),
                timeout=30,
            )
            assert answer.decision_id and not answer.degraded
