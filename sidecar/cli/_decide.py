"""``policy-sidecar decide``: one decision from a raw policy input or through the full path."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import grpc

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.api.status import grpc_status
from sidecar.app.policy import policy_runtime
from sidecar.cli._channel import caller_subject, data_plane_channel
from sidecar.config import Config
from sidecar.decide import DecisionService
from sidecar.enrich import FactTrust, StaticEnricher, validate_request
from sidecar.errors import InvalidArgument, PolicyUnavailable
from sidecar.model.decision import Caller, DecideRequest, ImageRef
from sidecar.records import DecisionRecords
from sidecar.telemetry import Telemetry

__all__ = ["decide_image", "decide_raw", "request_from_args"]


def request_from_args(
    args: argparse.Namespace, labels: dict[str, str], annotations: dict[str, str]
) -> DecideRequest:
    """Build a DecideRequest from ``decide --image`` arguments."""
    try:
        ref = ImageRef.parse(args.image)
    except ValueError as exc:
        raise InvalidArgument("--image", str(exc)) from exc
    return DecideRequest(
        image=ref,
        labels=labels,
        annotations=annotations,
        size_bytes=args.size_bytes,
        event=args.event,
        caller=Caller(
            subject=caller_subject(args.caller),
            tenant=args.caller_tenant or None,
            roles=tuple(getattr(args, "caller_role", ())),
        ),
        now=args.now,
        registry_health=dict.fromkeys(args.unhealthy, False),
        present_at=tuple(args.present_at),
    )


async def decide_raw(config: Config, policy_input: Any) -> Mapping[str, Any]:
    """Evaluate a raw DESIGN §3.1 input on a real OPA with the local bundle; return §3.2 JSON."""
    if not isinstance(policy_input, Mapping):
        raise InvalidArgument("--policy-input", "must be a JSON/YAML object (DESIGN §3.1 input)")
    # Replaying Explain output: accept the input document itself or {"input": {...}}.
    doc = policy_input.get("input", policy_input)
    async with policy_runtime(config) as runtime:
        answer = await runtime.engine.evaluate(doc)
    return answer.result


async def decide_image(
    config: Config, request: DecideRequest, server: str | None
) -> dict[str, Any]:
    """Decide ``request`` in-process (enrich → OPA) or via a running sidecar's gRPC Decide."""
    if server:
        return await _decide_remote(server, request)
    telemetry = Telemetry(
        config.policy.telemetry.service_name, otlp_endpoint=config.policy.telemetry.otlp_endpoint
    )
    try:
        async with policy_runtime(config) as runtime:
            service = DecisionService(
                # In process, the caller is the local operator, who owns the config and the
                # bundle: the facts it states are believed, as a replay's are (docs/facts.md).
                enricher=StaticEnricher(config, trust=FactTrust.operator()),
                engine=runtime.engine,
                telemetry=telemetry,
                records=DecisionRecords(1, 60.0),
                validate=lambda r: validate_request(r, config.policy.limits, config.inventory()),
                engine_url=runtime.url,
            )
            result = await service.decide(request)
    finally:
        telemetry.shutdown()
    return {
        "decision": result.decision.to_json(),
        "decision_id": result.decision_id,
        "bundle_revision": result.bundle_revision,
        "trace_id": result.trace_id,
        "degraded": result.degraded,
    }


async def _decide_remote(server: str, request: DecideRequest) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict  # noqa: PLC0415

    msg = pb.DecideRequest(
        image=pb.Image(
            registry=request.image.registry,
            repository=request.image.repository,
            tag=request.image.tag,
            digest=request.image.digest,
            labels=dict(request.labels),
            annotations=dict(request.annotations),
            size_bytes=request.size_bytes,
            present_at=list(request.present_at),
        ),
        event=request.event,
        caller=pb.Caller(
            subject=request.caller.subject,
            tenant=request.caller.tenant or "",
            roles=list(request.caller.roles),
        ),
        now=request.now or "",
        registry_health=dict(request.registry_health),
    )
    async with data_plane_channel(server) as channel:
        try:
            answer = await pb_grpc.PolicyServiceStub(channel).Decide(msg, timeout=10)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc_status(InvalidArgument.code):
                raise InvalidArgument("request", exc.details() or "") from exc
            raise PolicyUnavailable(f"{server}: {exc.code().name}: {exc.details()}") from exc
    return MessageToDict(answer, preserving_proto_field_name=True)
