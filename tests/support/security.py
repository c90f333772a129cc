"""Attack helpers shared by ``tests/security/`` and the attack bench (``tests/bench/attacks.py``).

An attack test starts a real sidecar (gRPC, metrics and webhook listeners on loopback ports, a
managed OPA), attacks it through one of its real surfaces, asserts the refusal, and then asserts
with :func:`assert_serving` that an ordinary caller is still answered. The configs are small
Freightliner-style inventories written to YAML and read by the real config loader, so every
setting an attack relies on goes through the same validation an operator's file does.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from sidecar._proto import policy_pb2 as pb
from sidecar.config import Config, load_config
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar

__all__ = [
    "CLOSED",
    "DecisionLoad",
    "assert_serving",
    "attacked_sidecar",
    "decide_request",
    "inventory",
    "metric_value",
    "metrics_text",
    "p99_ms",
    "post_events",
    "push_event",
    "registry_entry",
    "scanned_labels",
    "sidecar_config",
    "streamed_body",
    "write_config",
]

# A loopback port nothing listens on: registries there are refused at once (no timeouts).
CLOSED = "http://127.0.0.1:1"


def registry_entry(
    name: str,
    endpoint: str = CLOSED,
    *,
    environment: str = "prod",
    region: str = "us-east-1",
    **fields: Any,
) -> dict[str, Any]:
    """One Freightliner ``registries:`` entry; ``fields`` adds e.g. ``auth`` or ``insecure``."""
    entry: dict[str, Any] = {
        "name": name,
        "type": "generic",
        "endpoint": endpoint,
        "region": region,
        "metadata": {"environment": environment, "gdpr": region.startswith("eu")},
    }
    entry.update(fields)
    return entry


def inventory(*extra: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A source ``ci`` and three destinations (dev, sandbox, prod), plus ``extra`` registries."""
    return [
        registry_entry("ci", environment="ci"),
        registry_entry("dev-us", environment="dev"),
        registry_entry("sandbox", environment="sandbox", region="us-west-2"),
        registry_entry("prod-us"),
        *(dict(e) for e in extra),
    ]


def _merge(into: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


def sidecar_config(
    registries: Sequence[Mapping[str, Any]] | None = None, **policy: Any
) -> dict[str, Any]:
    """A config document: ``registries`` (default :func:`inventory`) and a ``policy:`` section.

    Registry enrichment is off unless ``policy`` turns it on: the default inventory's registries
    exist nowhere, and an attack on the registry client configures its own hostile registry.
    """
    doc: dict[str, Any] = {
        "registries": list(registries) if registries is not None else inventory(),
        "policy": {
            "replication": {"registry_enrichment": False},
            "telemetry": {"log_level": "warning"},
        },
    }
    _merge(doc["policy"], policy)
    return doc


def write_config(doc: Mapping[str, Any], work: Path) -> Path:
    """Write ``doc`` as ``work/sidecar.yaml`` (state, bundle output and ports local to ``work``)."""
    work.mkdir(parents=True, exist_ok=True)
    doc = copy.deepcopy(dict(doc))
    policy = doc.setdefault("policy", {})
    policy.setdefault("state_dir", str(work / "state"))
    policy.setdefault("listen", "127.0.0.1:0")
    policy.setdefault("metrics_listen", "127.0.0.1:0")
    policy.setdefault("bundle", {}).setdefault("output", str(work / "bundle.tar.gz"))
    path = work / "sidecar.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _load(doc: Mapping[str, Any], work: Path) -> Config:
    return isolated_config(load_config(write_config(doc, work)), work / "state")


@contextlib.asynccontextmanager
async def attacked_sidecar(doc: Mapping[str, Any], work: Path) -> AsyncIterator[RunningSidecar]:
    """A started sidecar for config document ``doc`` (see :func:`sidecar_config`), stopped after."""
    async with running_sidecar(_load(doc, work)) as running:
        yield running


def scanned_labels(**extra: str) -> dict[str, str]:
    """Labels of an image scanned clean an hour ago (a prod tag needs them to be routed)."""
    completed = datetime.now(UTC) - timedelta(hours=1)
    return {
        "security.scan.status": "passed",
        "security.scan.completed-at": f"{completed:%Y-%m-%dT%H:%M:%SZ}",
        "security.scan.critical": "0",
        **extra,
    }


def decide_request(
    i: int = 0, *, registry: str = "ci", repository: str = "team/app", tag: str = "", **fields: Any
) -> pb.DecideRequest:
    """An ordinary caller's request for a dev image; ``fields`` sets other DecideRequest fields."""
    image = pb.Image(
        registry=registry,
        repository=repository,
        tag=tag or f"dev-{i}",
        labels=fields.pop("labels", {"criticality": "high"}),
        platforms=fields.pop("platforms", ["linux/amd64"]),
    )
    return pb.DecideRequest(
        request_id=f"r{i}",
        image=image,
        caller=fields.pop("caller", pb.Caller(subject="replicator")),
        **fields,
    )


async def assert_serving(running: RunningSidecar, *, timeout_s: float = 15.0) -> pb.DecideResponse:
    """Assert an ordinary Decide is answered by OPA (not the fail mode) within ``timeout_s``."""
    answer = await running.stub.Decide(decide_request(), timeout=timeout_s)
    assert answer.decision_id, "no decision id: the sidecar did not decide"
    assert not answer.degraded, "answered by the fail mode: the policy engine is not serving"
    assert answer.bundle_revision
    return answer


async def metrics_text(running: RunningSidecar) -> str:
    """The sidecar's ``/metrics`` page, fetched over HTTP as Prometheus would."""
    metrics = running.sidecar.metrics
    assert metrics is not None, "metrics listener is off"
    url = f"http://127.0.0.1:{metrics.port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        resp.raise_for_status()
        return await resp.text()


async def metric_value(
    running: RunningSidecar, name: str, labels: Mapping[str, str] | None = None
) -> float:
    """The sum of sample ``name`` over the series matching ``labels`` (0 when there is none)."""
    total = 0.0
    for family in text_string_to_metric_families(await metrics_text(running)):
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in (labels or {}).items()
            ):
                total += sample.value
    return total


def p99_ms(latencies_s: Sequence[float]) -> float:
    """Nearest-rank 99th percentile of ``latencies_s``, in milliseconds (0 for none)."""
    if not latencies_s:
        return 0.0
    ordered = sorted(latencies_s)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000


class DecisionLoad:
    """Closed-loop ordinary Decide callers, run while an attack goes on; records latencies.

    ``async with DecisionLoad(stub, 4) as load: ...`` keeps 4 callers deciding until the block
    ends; ``load.latencies`` are the answered calls (seconds), ``load.errors`` the failed ones.
    """

    def __init__(
        self,
        stub: Any,
        concurrency: int = 4,
        *,
        request: Callable[[int], pb.DecideRequest] = decide_request,
        timeout_s: float = 30.0,
    ) -> None:
        """Nothing runs until the block is entered."""
        self._stub, self._concurrency, self._request = stub, concurrency, request
        self._timeout_s = timeout_s
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _caller(self, index: int) -> None:
        n = index
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                answer = await self._stub.Decide(self._request(n), timeout=self._timeout_s)
            except grpc.aio.AioRpcError as exc:
                self.errors.append(f"{exc.code().name}: {exc.details()}")
            else:
                if answer.degraded:
                    self.errors.append("degraded")
                else:
                    self.latencies.append(time.perf_counter() - started)
            n += self._concurrency

    async def __aenter__(self) -> DecisionLoad:
        """Start the callers."""
        self._tasks = [asyncio.create_task(self._caller(i)) for i in range(self._concurrency)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the callers after their calls in flight."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    @property
    def p99_ms(self) -> float:
        """p99 of the answered calls, in ms."""
        return p99_ms(self.latencies)


async def streamed_body(
    request: web.Request, size: int, *, content_type: str, chunk: int = 1 << 20
) -> tuple[web.StreamResponse, int]:
    """Stream ``size`` bytes of JSON-ish padding as a chunked answer; return it and bytes sent.

    A reader that stops early resets the connection: the count says what the attacker really got
    to send, which is the cost of the attack (and what the sidecar had to look at).
    """
    resp = web.StreamResponse(headers={"Content-Type": content_type})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    sent = 0
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        while sent < size:
            part = min(chunk, size - sent)
            await resp.write(b" " * part)
            sent += part
        await resp.write_eof()
    return resp, sent


def push_event(
    event_id: str, host: str, *, repository: str = "team/app", tag: str = "", digest: str = ""
) -> dict[str, Any]:
    """One CNCF Distribution push notification for ``repository`` from the registry at ``host``."""
    target: dict[str, Any] = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": 400,
        "repository": repository,
        "url": f"http://{host}/v2/{repository}/manifests/{digest or tag}",
    }
    if tag:
        target["tag"] = tag
    if digest:
        target["digest"] = digest
    return {
        "id": event_id,
        "timestamp": "2026-01-01T00:00:00Z",
        "action": "push",
        "target": target,
        "request": {"addr": "127.0.0.1:5555", "host": host, "method": "PUT", "useragent": "t"},
        "source": {"addr": "attacker:5000", "instanceID": "x"},
    }


async def post_events(
    url: str, secret: str, events: Sequence[Mapping[str, Any]]
) -> tuple[int, int]:
    """POST ``events`` in one envelope as a registry does; return (status, body bytes sent)."""
    body = json.dumps({"events": list(events)}).encode()
    headers = {
        "Content-Type": "application/vnd.docker.distribution.events.v1+json",
        "Authorization": f"Bearer {secret}",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        await r.read()
        return r.status, len(body)
