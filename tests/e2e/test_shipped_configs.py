"""Every config we ship or must accept starts a serving sidecar: the demo and Freightliner's examples.

They name files this machine lacks (a Harbor CA, GCP service-account keys) and registries nobody
can reach. The sidecar must still start and decide; only requests to those registries fail, naming
the missing file.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.config import load_config
from sidecar.tools import find_tool
from tests.support.compat import COMPAT_FILES, compat_dir
from tests.support.sidecar import isolated_config, running_sidecar

pytestmark = pytest.mark.timeout(180)

_ROOT = Path(__file__).resolve().parents[2]
_DEMO = _ROOT / "deploy" / "config" / "example.yaml"


def _readme_decide_command() -> str:
    """Return the README's "Try it" grpcurl Decide command, as a newcomer would paste it."""
    readme = (_ROOT / "README.md").read_text(encoding="utf-8")
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if "grpcurl -plaintext -d" in line)
    end = next(i for i in range(start, len(lines)) if "PolicyService/Decide" in lines[i])
    return "\n".join(lines[start : end + 1])


@pytest.mark.clock
async def test_the_demo_config_of_scripts_run_sh_serves_the_readme_decision(
    tmp_path: Path,
) -> None:
    """The README's first decision, run by bash as written (its scan time comes from `date`)."""
    async with running_sidecar(isolated_config(load_config(_DEMO), tmp_path)) as running:
        command = _readme_decide_command().replace("127.0.0.1:50051", running.address)
        shell = await asyncio.create_subprocess_exec(
            "bash", "-c", command,
            env={**os.environ, "T": str(find_tool("grpcurl").parent)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(shell.communicate(), 60)
        assert shell.returncode == 0, err.decode()
        answer = json.loads(out)  # grpcurl prints proto field names
        decision = answer["decision"]
        assert not answer.get("degraded") and answer["bundle_revision"], answer
        assert decision.get("allow"), decision
        assert {r["registry"] for r in decision["routes"]} >= {"prod-us", "prod-eu"}


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
