"""The committed generated gRPC code must match proto/ (regenerate with scripts/gen-proto.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path: Path) -> None:
    out = tmp_path / "sidecar" / "_proto"
    subprocess.run(
        [str(ROOT / "scripts" / "gen-proto.sh"), str(out)],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
    )
    for name in ("policy_pb2.py", "policy_pb2.pyi", "policy_pb2_grpc.py"):
        committed = (ROOT / "sidecar" / "_proto" / name).read_text(encoding="utf-8")
        fresh = (out / name).read_text(encoding="utf-8")
        assert committed == fresh, f"sidecar/_proto/{name} is stale: run scripts/gen-proto.sh"
