"""What the installed-wheel and container-image tests share: a decision-only config and one Decide."""

from __future__ import annotations

from typing import Any

import grpc

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc

__all__ = ["decide_dev_image", "standalone_config"]


def standalone_config(
    grpc_port: int, metrics_port: int, state_dir: str, **policy: Any
) -> dict[str, Any]:
    """A sidecar config with two unreachable registries (decisions only, never a copy)."""
    registries = [
        {
            "name": name,
            "type": "generic",
            "endpoint": "http://127.0.0.1:1",
            "region": region,
            "metadata": {"environment": environment},
        }
        for name, region, environment in (("ci", "us-east-1", "ci"), ("dev-us", "us-west-2", "dev"))
    ]
    return {
        "registries": registries,
        "policy": {
            "listen": f"127.0.0.1:{grpc_port}",
            "metrics_listen": f"127.0.0.1:{metrics_port}",
            "state_dir": state_dir,
            **policy,
        },
    }


def decide_dev_image(channel: grpc.Channel, digest: str, subject: str) -> pb.DecideResponse:
    """Decide ``ci/team/app:dev-1.0@digest`` (routed to dev-us by the default policy)."""
    return pb_grpc.PolicyServiceStub(channel).Decide(
        pb.DecideRequest(
            image=pb.Image(registry="ci", repository="team/app", tag="dev-1.0", digest=digest),
            caller=pb.Caller(subject=subject),
        ),
        timeout=20,
    )
