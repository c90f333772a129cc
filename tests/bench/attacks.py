"""Attack bench: what each attack of issue 15 costs the attacker and the sidecar.

Run:  .venv/bin/python -m tests.bench.attacks [--concurrency 8] [--baseline-s 5]
                                              [--only NAME,...] [--output report.json]
(figures and how to read them: docs/security.md, "Figures")

The bench starts one real sidecar *process* (``python -m sidecar serve``: gRPC, metrics and webhook
listeners on loopback, a managed OPA, SQLite state, and ``policy.auth`` bearer tokens, so every
PolicyService call needs one: see DATA_TOKENS and BINDINGS) next to hostile servers it runs itself: a
registry that streams endless manifests, one whose token realm lives on the attacker's host, one
with a 5,000-child index, and a registry whose tags never exist (for failing webhook events).

First ``--concurrency`` closed-loop ordinary callers (in a process of their own, so that the
attacks' own CPU does not count as the sidecar's) decide for ``--baseline-s`` seconds: the
baseline p99. Then, one after the other, each attack runs while the same callers keep deciding;
for each the table reports whether and how the sidecar refused, its RSS before, at peak (sampled
every 50 ms) and after, the p99 of the ordinary decisions during the attack, their errors, and
what the attack cost the attacker (requests and bytes it sent, or got the sidecar to take).

An attack is one ``async def`` decorated with :func:`attack`: it gets the :class:`Target` (stubs,
URLs, the hostile servers) and returns an :class:`Outcome`. Nothing else needs to change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gzip
import hashlib
import io
import json
import os
import sqlite3
import sys
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import grpc
import orjson
from aiohttp import web

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.oci import OCI_INDEX, OCI_MANIFEST, digest_of
from tests.fault.process import CHANNEL_OPTIONS, SidecarProcess, child_pids
from tests.support.fake_registry import FakeServer, fake_server
from tests.support.ports import free_ports
from tests.support.security import (
    DecisionLoad,
    decide_request,
    inventory,
    p99_ms,
    post_events,
    push_event,
    registry_entry,
    scanned_labels,
    sidecar_config,
    streamed_body,
    write_config,
)

__all__ = ["ATTACKS", "Outcome", "Target", "attack", "main", "run_bench"]

MIB = 1 << 20
ROBOT = {"type": "basic", "username": "robot", "password": "robot-password"}
WEBHOOK_SECRET = "bench-webhook-secret"
FAN_OUT = 5000
MANIFEST_OFFERED = 128 * MIB
_BCRYPT_COST = 12
STREAMS, STREAM_REQUESTS = 20, 1000  # non-reading DecideStreams, requests each offers
# policy.auth.tokens of the data plane (sha256-hashed in the config): the ordinary callers and the
# attacks that need an identity. Bindings (bundle data, data.system.bindings) below.
DATA_TOKENS = {
    "bench-ci": "bench-ci-secret",
    "bench-globex": "bench-globex-secret",
    "bench-replay": "bench-replay-secret",  # holds a policy.facts.override_roles role
}
VIEWER_TOKEN = "viewer-secret"  # an admin token bound to the viewer role
BINDINGS = {
    "token:bench-ci": {"roles": ["replicator"]},
    "token:bench-globex": {"roles": ["replicator"], "tenant": "globex"},
    "token:bench-replay": {"roles": ["replicator", "replay"]},
    "token:viewer": {"roles": ["viewer"]},
    "token:ops": {"roles": ["policy-admin"]},
}
UNPACKED_LIMIT = 64 * MIB  # policy.admin.max_unpacked_bytes (shipped default)
PARSE_TIMEOUT_S = 10  # policy.admin.parse_timeout_s of the bench (default 120)
AUDIT_WINDOW_S = 5  # policy.admin.audit_refusals.window_s of the bench (default 60)


@dataclass
class Outcome:
    """What one attack did: how it was refused and what it cost the attacker."""

    refused: str
    requests: int
    attacker_bytes: int
    note: str = ""


@dataclass
class Hostile:
    """The hostile servers of the run and what they saw or sent."""

    manifests: FakeServer
    realm_registry: FakeServer
    token_service: FakeServer
    fan_out: FakeServer
    no_tags: FakeServer
    # manifest_bytes_sent (one count per oversized manifest served), child_gets, index_digest
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    """The sidecar under attack: its channel, stubs, endpoints and the hostile servers."""

    channel: grpc.aio.Channel
    stub: Any  # PolicyService, every call with the bench-ci token (see _WithToken)
    admin: pb_grpc.PolicyAdminStub  # no credentials; bundle-sized messages allowed
    address: str
    webhook_url: str
    metrics_url: str
    hostile: Hostile
    opa_url: str  # the managed OPA's REST API
    db_path: Path  # the SQLite job store (audit_log)

    @property
    def anonymous(self) -> pb_grpc.PolicyServiceStub:
        """PolicyService without credentials."""
        return pb_grpc.PolicyServiceStub(self.channel)

    def as_caller(self, subject: str) -> Any:
        """PolicyService with the data-plane token of ``subject`` (a key of DATA_TOKENS)."""
        return _WithToken(pb_grpc.PolicyServiceStub(self.channel), DATA_TOKENS[subject])


class _WithToken:
    """A stub whose every call carries ``authorization: Bearer <token>`` metadata."""

    def __init__(self, stub: Any, token: str) -> None:
        self._stub = stub
        self.metadata = (("authorization", f"Bearer {token}"),)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, metadata=self.metadata, **kwargs)

        return call


def _request(i: int = 0, **fields: Any) -> pb.DecideRequest:
    """An ordinary request whose caller is derived from the token (an empty ``caller``)."""
    fields.setdefault("caller", pb.Caller())
    return decide_request(i, **fields)


AttackFn = Callable[[Target], Awaitable[Outcome]]


@dataclass(frozen=True)
class Attack:
    """A registered attack: its name, the issue-15 finding it exercises, and its function."""

    name: str
    finding: str
    run: AttackFn


ATTACKS: list[Attack] = []


def attack(name: str, finding: str) -> Callable[[AttackFn], AttackFn]:
    """Register ``fn`` as attack ``name`` (run in registration order)."""

    def register(fn: AttackFn) -> AttackFn:
        ATTACKS.append(Attack(name, finding, fn))
        return fn

    return register


async def _code(call: Awaitable[Any]) -> str:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return "OK"


def _tally(codes: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for code in codes:
        counts[code] = counts.get(code, 0) + 1
    return ", ".join(f"{n} x {c}" for c, n in sorted(counts.items()))


# --- the attacks ------------------------------------------------------------------------------


@attack("oversized message", "3: every RPC accepted 17 MiB messages (12.5 MB access maps: 2.4 GiB)")
async def oversized_message(target: Target) -> Outcome:
    """The issue's own measurement: 30 Decide calls, each with a 12.5 MB ``access`` map."""
    regions = {f"region-{n:07d}-" + "r" * 20: n for n in range(400_000)}
    huge = _request(0, access=regions)
    replay = target.as_caller("bench-replay")  # may state access (policy.facts.override_roles)
    codes = [await _code(replay.Decide(huge, timeout=60)) for _ in range(30)]
    return Outcome(_tally(codes), 30, 30 * huge.ByteSize())


@attack("access map over the limit", "3: access/platforms/roles had no size limits")
async def access_over_limit(target: Target) -> Outcome:
    """257 regions (one over ``max_access_regions``), 200 times, 8 at a time, from a caller that
    may state ``access`` at all (a replay role), so that the size limit is what refuses them."""
    request = _request(0, access={f"region-{n}": n for n in range(257)})
    replay = target.as_caller("bench-replay")
    sem = asyncio.Semaphore(8)

    async def one() -> str:
        async with sem:
            return await _code(replay.Decide(request, timeout=60))

    codes = await asyncio.gather(*(one() for _ in range(200)))
    return Outcome(_tally(codes), 200, 200 * request.ByteSize())


@attack("requests at every limit", "3: decision records capped by count only, whole inputs kept")
async def at_the_limit(target: Target) -> Outcome:
    """Accepted requests as large as allowed (~0.9 MB: 256 regions, 220 labels of 4 kB), 300 times.

    Not refused, by design: what bounds the memory is the decision records' byte budget. The
    caller holds a replay role: without a ``policy.facts.override_roles`` role, ``access`` alone
    is refused.
    """
    access = {f"{n:03d}-" + "r" * 250: n for n in range(256)}
    labels = {f"pad-{n}": "v" * 4000 for n in range(220)}
    request = _request(0, access=access, labels=labels)
    replay = target.as_caller("bench-replay")
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> str:
        async with sem:
            request.request_id = f"big-{i}"
            return await _code(replay.Decide(request, timeout=60))

    codes = await asyncio.gather(*(one(i) for i in range(300)))
    return Outcome(
        _tally(codes), 300, 300 * request.ByteSize(), "accepted; records kept ≤ max_bytes (64 MiB)"
    )


@attack("stream that never reads", "3: DecideStream's answer queue was unbounded")
async def non_reading_streams(target: Target) -> Outcome:
    """20 DecideStreams, each offering 1,000 requests and reading no answer, held for 5 s."""
    streams, each = STREAMS, STREAM_REQUESTS
    sent = 0
    size = _request(0).ByteSize()

    async def requests() -> AsyncIterator[pb.DecideRequest]:
        nonlocal sent
        for i in range(each):
            sent += 1
            yield _request(i)

    decided = await _metric(target.metrics_url, "policy_sidecar_decisions_total")
    options = [("grpc.http2.bdp_probe", 0)]
    async with grpc.aio.insecure_channel(target.address, options=options) as channel:
        stub = _WithToken(pb_grpc.PolicyServiceStub(channel), DATA_TOKENS["bench-ci"])
        calls = [stub.DecideStream(requests()) for _ in range(streams)]
        await asyncio.sleep(5)
        # Decisions made for anyone (ordinary callers included) while the streams were stuck.
        decided = await _metric(target.metrics_url, "policy_sidecar_decisions_total") - decided
        for call in calls:
            call.cancel()
    return Outcome(
        f"backpressure: {sent:,} of {streams * each:,} requests written, {decided:,.0f} decisions "
        "made in all", sent, sent * size, "each stream holds ≤ 64 answers",
    )  # fmt: skip


@attack("unknown admin tokens", "3: bcrypt.checkpw ran on the event loop for every token")
async def token_flood(target: Target) -> Outcome:
    """64 made-up bearer tokens against a bcrypt-hashed (cost 12) token, 16 at a time."""
    sem = asyncio.Semaphore(16)

    async def one(n: int) -> str:
        async with sem:
            metadata = (("authorization", f"Bearer guess-{n}"),)
            call = target.admin.ListRevisions(
                pb.ListRevisionsRequest(), metadata=metadata, timeout=120
            )
            return await _code(call)

    codes = await asyncio.gather(*(one(n) for n in range(64)))
    return Outcome(_tally(codes), 64, 64 * 40)


@attack("webhook flood of failing events", "4: 100 failing events blocked the inbox forever")
async def webhook_flood(target: Target) -> Outcome:
    """2,000 pushes of tags that do not exist (20 posts of 100), then one real push."""
    host = target.hostile.no_tags.url.removeprefix("http://")
    sent = posts = 0
    for batch in range(20):
        events = [push_event(f"bad-{batch}-{n}", host, tag=f"gone-{n}") for n in range(100)]
        status, size = await post_events(target.webhook_url, WEBHOOK_SECRET, events)
        sent, posts = sent + size, posts + 1
        assert status == 200, status
    good = push_event("good", host, tag="dev-1", digest="sha256:" + "ab" * 32)
    started = time.monotonic()
    status, size = await post_events(target.webhook_url, WEBHOOK_SECRET, [good])
    sent, posts = sent + size, posts + 1
    name = 'policy_sidecar_webhook_events_processed_total{action="push",outcome="pushed"}'
    while await _metric(target.metrics_url, name) < 1:
        if time.monotonic() - started > 120:
            return Outcome("NOT REFUSED: the real push waited > 120 s", posts, sent)
        await asyncio.sleep(0.1)
    waited = time.monotonic() - started
    return Outcome(f"real push replicated after {waited:.1f} s", posts, sent,
                   "failing events retried with backoff, dead after max_attempts")  # fmt: skip


@attack("oversized manifest", "7: manifest and referrer bodies had no size cap")
async def oversized_manifest(target: Target) -> Outcome:
    """20 decisions on images of a registry that streams a 128 MiB manifest for each."""
    streamed = target.hostile.state["manifest_bytes_sent"]
    before = len(streamed)
    codes = [
        await _code(target.stub.Decide(_request(i, registry="hostile"), timeout=60))
        for i in range(20)
    ]
    for _ in range(100):
        if len(streamed) - before >= 20:
            break
        await asyncio.sleep(0.05)
    taken = streamed[before:]
    most = max(taken, default=0)
    return Outcome(
        f"cut at 4 MiB (≤ {most / MIB:.1f} MiB of {MANIFEST_OFFERED // MIB} MiB read); "
        f"decisions {_tally(codes)}",
        20,
        sum(taken),
    )


@attack("token realm on another host", "7: credentials went to realms on other hosts")
async def foreign_realm(target: Target) -> Outcome:
    """20 decisions on a registry with basic credentials whose realm is the attacker's host."""
    tokens = target.hostile.token_service
    codes = [
        await _code(target.stub.Decide(_request(i, registry="realm"), timeout=60))
        for i in range(20)
    ]
    leaked = len(tokens.authorized())
    return Outcome(
        f"credentials sent to the realm: {leaked} times; decisions {_tally(codes)}",
        len(target.hostile.realm_registry.seen),
        0,
    )


@attack("index of 5,000 children", "7: the copier's index fan-out was unbounded")
async def fan_out(target: Target) -> Outcome:
    """Replicate one image whose index lists 5,000 child manifests."""
    request = _request(1, registry="fanout")
    request.image.digest = target.hostile.state["index_digest"]
    outcome = await target.stub.Replicate(pb.ReplicateRequest(request=request), timeout=60)
    deadline = time.monotonic() + 60
    job = pb.Job()
    for job_id in outcome.job_ids:
        while time.monotonic() < deadline:
            job = await target.stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10)
            if job.state in ("failed", "succeeded"):
                break
            await asyncio.sleep(0.1)
    return Outcome(
        f"job {job.state}: {job.error[:70]}… ({target.hostile.state['child_gets']} children fetched)",
        len(target.hostile.fan_out.seen),
        0,
    )


@attack("unauthenticated Decide flood", "1: PolicyService had no authentication")
async def unauthenticated_decides(target: Target) -> Outcome:
    """2,000 Decide calls, 32 at a time: half without credentials, half with made-up tokens.

    One data-plane token is bcrypt-hashed (cost 12), so every made-up token would need a bcrypt
    check: ``policy.auth.failed_auth_limit`` (default burst 20, then 1/s per peer address) is what
    bounds that work; the ordinary callers' sha256 token from the same address is still served.
    """
    request = _request(0)
    sem = asyncio.Semaphore(32)

    async def one(n: int) -> str:
        async with sem:
            stub = _WithToken(target.anonymous, f"guess-{n}") if n % 2 else target.anonymous
            return await _code(stub.Decide(request, timeout=120))

    codes = await asyncio.gather(*(one(n) for n in range(2000)))
    return Outcome(
        f"no token: {_tally(codes[0::2])}; made-up tokens: {_tally(codes[1::2])}",
        2000,
        2000 * request.ByteSize(),
    )


@attack("caller widening and other tenants' data", "1: caller came from the request body")
async def caller_widening(target: Target) -> Outcome:
    """globex's replicator claims acme, platform-admin, another subject; asks for Explain; lists jobs.

    100 calls of each forged ``caller`` shape, 100 Explain calls (a replicator may not explain)
    of a platform decision, then ListJobs: globex made no job, so every job listed would leak.
    """
    globex = target.as_caller("bench-globex")
    theirs = await target.stub.Decide(_request(7), timeout=60)
    forged = [
        pb.Caller(tenant="acme"),
        pb.Caller(roles=["platform-admin"]),
        pb.Caller(subject="token:bench-ci"),
    ]
    sem = asyncio.Semaphore(16)

    async def one(call: Callable[[], Awaitable[Any]]) -> str:
        async with sem:
            return await _code(call())

    def forge(caller: pb.Caller) -> Callable[[], Awaitable[Any]]:
        return lambda: globex.Decide(_request(0, caller=caller), timeout=60)

    explain = pb.ExplainRequest(decision_id=theirs.decision_id)
    calls = [forge(caller) for caller in forged for _ in range(100)]
    calls += [lambda: globex.Explain(explain, timeout=60) for _ in range(100)]
    codes = await asyncio.gather(*(one(c) for c in calls))
    listed = await globex.ListJobs(pb.ListJobsRequest(limit=1000), timeout=60)
    total = await target.stub.ListJobs(pb.ListJobsRequest(limit=1000), timeout=60)
    return Outcome(
        f"{_tally(codes)}; ListJobs: {len(listed.jobs)} of {len(total.jobs)} jobs shown",
        len(calls) + 2,
        300 * _request(0, caller=forged[0]).ByteSize() + 100 * explain.ByteSize(),
        "globex made none",
    )


@attack("forged scan/tenant/compliance labels", "2: request labels overrode the registry's")
async def forged_facts(target: Target) -> Outcome:
    """200 Decides of a prod tag claiming a passed scan, tenant and no compliance requirement,
    then 100 stating ``now`` or ``registry_health`` (sidecar facts), by a caller with no
    fact-override role. The source registry cannot show the image, so nothing is observed."""
    labels = scanned_labels(tenant="globex", **{"compliance-required": "false"})
    sem = asyncio.Semaphore(16)
    routed = 0

    async def claim(i: int) -> str:
        nonlocal routed
        async with sem:
            request = _request(i, tag=f"prod-{i}", labels=labels)
            try:
                answer = await target.stub.Decide(request, timeout=60)
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            routed += any(r.registry == "prod-us" for r in answer.decision.routes)
            return "OK"

    async def sidecar_fact(i: int) -> str:
        async with sem:
            fact = {"now": "2020-01-01T00:00:00Z"} if i % 2 else {"registry_health": {"ci": True}}
            request = _request(i, tag=f"prod-{i}", labels=labels, **fact)
            return await _code(target.stub.Decide(request, timeout=60))

    codes = await asyncio.gather(*(claim(i) for i in range(200)))
    refused = await asyncio.gather(*(sidecar_fact(i) for i in range(100)))
    size = _request(0, tag="prod-0", labels=labels).ByteSize()
    # Control: the same claim from a replaying caller (override role) is believed and routed,
    # so the zero above is the fact-trust rule, not a request that could never route.
    replay = target.as_caller("bench-replay")
    control = await replay.Decide(_request(0, tag="prod-0", labels=labels), timeout=60)
    believed = any(r.registry == "prod-us" for r in control.decision.routes)
    return Outcome(
        f"routed to prod: {routed} of 200 ({_tally(codes)}); now/registry_health: {_tally(refused)}",
        300,
        300 * size,
        f"the same claim from a replay-role caller: {'routed' if believed else 'NOT routed'}",
    )


@attack("OPA REST API without the token", "5: OPA's REST API had no authentication")
async def opa_api(target: Target) -> Outcome:
    """100 rounds of 8 reads and writes of the managed OPA's API (data.sensitive, policies,
    query), without credentials and with a guessed token: 1,600 requests, 16 at a time."""
    attempts = [
        ("GET", "/v1/data/sensitive", None),
        ("GET", "/v1/data", None),
        ("GET", "/v1/policies", None),
        ("PUT", "/v1/policies/pwn", b"package system.authz\nallow := true\n"),
        ("PUT", "/v1/data/replication/settings", b'{"mode": "owned"}'),
        ("POST", "/v1/query", b'{"query": "x := data.sensitive"}'),
        ("POST", "/v1/data/system/authz/allow", b'{"input": {}}'),
        ("DELETE", "/v1/data/sensitive", None),
    ]
    headers = [{}, {"Authorization": "Bearer guessed"}]
    statuses: list[str] = []
    sent = 0
    sem = asyncio.Semaphore(16)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(method: str, path: str, body: bytes | None, head: dict[str, str]) -> None:
            nonlocal sent
            async with sem, http.request(method, target.opa_url + path, data=body,
                                         headers=head) as answer:  # fmt: skip
                await answer.read()
                statuses.append(f"HTTP {answer.status}")
                sent += len(path) + len(body or b"")

        await asyncio.gather(*(one(m, p, b, h) for _ in range(100)
                               for m, p, b in attempts for h in headers))  # fmt: skip
    return Outcome(_tally(statuses), len(statuses), sent)


@attack("bundle bombs from anonymous and viewer", "3: bundles parsed on the loop before authz")
async def bundle_bombs(target: Target) -> Outcome:
    """Unauthenticated: ValidateBundle of a 64 MiB gzip bomb and a 15 MiB upload, 5 each. A viewer
    (authenticated, may not publish): PublishBundle of the bomb, a 48 MB-JSON bundle (5 each) and a
    4 MB-YAML bundle that parses for minutes (once; cut at ``parse_timeout_s``)."""
    bomb, big_json, slow_yaml = _bomb(), _big_json(), _slow_yaml()
    big = bytes(range(256)) * (15 * MIB // 256)
    viewer = (("authorization", f"Bearer {VIEWER_TOKEN}"),)
    codes: list[str] = []
    sent = 0
    pid = target.hostile.state["sidecar_pid"]
    async with _Peak(pid) as first:
        for raw in [bomb, big] * 5:
            codes.append(await _code(target.admin.ValidateBundle(
                pb.ValidateBundleRequest(bundle=raw), timeout=60)))  # fmt: skip
            sent += len(raw)
    anonymous = _tally(codes)
    codes = []
    async with _Peak(pid) as second:
        for raw in [bomb, big_json] * 5 + [slow_yaml]:
            call = target.admin.PublishBundle(
                pb.PublishBundleRequest(bundle=raw), metadata=viewer, timeout=PARSE_TIMEOUT_S + 60
            )
            codes.append(await _code(call))
            sent += len(raw)
    workers = _python_children_mib(target)
    return Outcome(
        f"unauthenticated: {anonymous}; viewer: {_tally(codes)}",
        21,
        sent,
        f"sidecar RSS peak {first.peak:.0f} MiB (unauthenticated), {second.peak:.0f} MiB (viewer); "
        f"bundle workers {workers} after",
    )


@attack("unauthenticated admin flood", "3: every refused admin call wrote an fsync'd audit row")
async def admin_flood(target: Target) -> Outcome:
    """400 ListRevisions without credentials, 20 at a time; audit rows counted in the store after
    the refusal window ends (the bench sets ``audit_refusals.window_s`` to 5 s)."""
    await asyncio.sleep(10)  # the earlier attacks drew on the same address's bucket: refill it
    before = _audit_rows(target.db_path)
    codes: list[str] = []
    for _ in range(20):
        codes += await asyncio.gather(*(_code(target.admin.ListRevisions(
            pb.ListRevisionsRequest(), timeout=60)) for _ in range(20)))  # fmt: skip
    await asyncio.sleep(AUDIT_WINDOW_S + 1.5)
    rows = _audit_rows(target.db_path) - before
    return Outcome(f"{_tally(codes)}; audit rows written: {rows} for 400 calls", 400, 400 * 40)


def _gzipped_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, body in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(body)
            archive.addfile(member, io.BytesIO(body))
    return gzip.compress(buffer.getvalue(), compresslevel=9)


def _bomb() -> bytes:
    """A bundle whose one data file unpacks to 64 MiB + 1 of zeros: ~65 kB gzipped."""
    return _gzipped_tar({"replication/data.json": b"0" * (UNPACKED_LIMIT + 1)})


def _big_json() -> bytes:
    """A bundle within every limit whose data file is 48 MB of valid JSON: ~100 kB gzipped."""
    blob = json.dumps({"tenants": {"acme": {"blob": ["0123456789"] * 3_400_000}}}).encode()
    manifest = json.dumps({"revision": "big", "roots": ["replication", "system"]}).encode()
    return _gzipped_tar({".manifest": manifest, "replication/data.json": blob})


def _slow_yaml() -> bytes:
    """A bundle within every limit whose 4 MB YAML data file takes minutes to parse (~60 kB)."""
    body = "tenants:\n  acme:\n    blob:\n" + "      - item\n" * 330_000
    manifest = json.dumps({"revision": "slow", "roots": ["replication", "system"]}).encode()
    return _gzipped_tar({".manifest": manifest, "replication/data.yaml": body.encode()})


def _audit_rows(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM audit_log").fetchone()
    return int(count)


def _python_children_mib(target: Target) -> str:
    """RSS of the sidecar's Python children (the bundle worker processes), in MiB."""
    pid = target.hostile.state.get("sidecar_pid", 0)
    sizes = []
    for child in child_pids(pid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{child}/comm").read_text().strip().startswith("python"):
                sizes.append(f"{_rss_mib(child):.0f}")
    return " + ".join(sizes) + " MiB" if sizes else "none running"


# --- the harness --------------------------------------------------------------------------------


async def _metric(url: str, sample: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        text = await resp.text()
    # ``name{labels}`` is one series; a bare name sums every series of that name.
    total = 0.0
    for line in text.splitlines():
        if line.startswith(sample + " ") or ("{" not in sample and line.startswith(sample + "{")):
            total += float(line.split()[-1])
    return total


def _rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class _Peak:
    """Samples a process's RSS every 50 ms while the block runs; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, _rss_mib(pid)
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, _rss_mib(self.pid))
            await asyncio.sleep(0.05)

    async def __aenter__(self) -> _Peak:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak = max(self.peak, _rss_mib(self.pid))


def _hostile_handlers(hostile_state: dict[str, Any]) -> dict[str, Any]:
    """The request handlers of the hostile servers (state shared through ``hostile_state``)."""
    index_doc, children = _index(FAN_OUT)
    hostile_state["index_digest"] = digest_of(index_doc)

    async def unknown(request: web.Request) -> web.StreamResponse:
        if request.path == "/v2/":
            return web.Response(status=200)
        return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)

    async def manifests(request: web.Request) -> web.StreamResponse:
        if "/manifests/" not in request.path or request.method != "GET":
            return await unknown(request)
        resp, sent = await streamed_body(request, MANIFEST_OFFERED, content_type=OCI_MANIFEST)
        hostile_state["manifest_bytes_sent"].append(sent)
        return resp

    async def realm_registry(request: web.Request) -> web.StreamResponse:
        challenge = f'Bearer realm="{hostile_state["token_url"]}/token",service="realm"'
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})

    async def tokens(request: web.Request) -> web.StreamResponse:
        return web.json_response({"token": "attacker-token"})

    async def fan_out_source(request: web.Request) -> web.StreamResponse:
        reference = request.path.rsplit("/", 1)[-1]
        if "/manifests/" in request.path and reference == hostile_state["index_digest"]:
            return web.Response(body=index_doc, content_type=OCI_INDEX)
        if reference in children:
            hostile_state["child_gets"] += 1
            return web.Response(body=children[reference], content_type=OCI_MANIFEST)
        return await unknown(request)

    return {"unknown": unknown, "manifests": manifests, "realm": realm_registry,
            "tokens": tokens, "fan_out": fan_out_source}  # fmt: skip


def _index(children: int) -> tuple[bytes, dict[str, bytes]]:
    docs = {}
    for i in range(children):
        doc = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                            "annotations": {"i": str(i)}})  # fmt: skip
        docs[digest_of(doc)] = doc
    entries = [{"mediaType": OCI_MANIFEST, "digest": d, "size": len(b)} for d, b in docs.items()]
    return orjson.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}), docs


def _config(work: Path, servers: dict[str, FakeServer], ports: list[int]) -> dict[str, Any]:
    grpc_port, metrics_port, webhook_port, opa_port = ports
    registries = inventory(
        registry_entry("hostile", servers["manifests"].url, environment="ci"),
        registry_entry("realm", servers["realm"].url, environment="ci", auth=ROBOT),
        registry_entry("fanout", servers["fan_out"].url, environment="ci"),
    )
    # Ordinary callers' source answers "no such tag" at once: enrichment is on (the registry
    # attacks need it), and a fast refusal keeps the baseline about policy, not timeouts.
    registries[0] = registry_entry("ci", servers["unknown"].url, environment="ci")
    registries[1] = registry_entry("dev-us", servers["empty"].url, environment="dev")
    hashed = bcrypt.hashpw(b"the-real-operator-token", bcrypt.gensalt(_BCRYPT_COST)).decode()
    data_hashed = bcrypt.hashpw(b"a-bcrypt-data-token", bcrypt.gensalt(_BCRYPT_COST)).decode()
    bindings = work / "bindings" / "system" / "bindings" / "data.json"
    bindings.parent.mkdir(parents=True)
    bindings.write_text(json.dumps(BINDINGS), encoding="utf-8")
    doc = sidecar_config(
        registries,
        listen=f"127.0.0.1:{grpc_port}",
        metrics_listen=f"127.0.0.1:{metrics_port}",
        opa={"port": opa_port},
        bundle={"data_dirs": [str(work / "bindings")]},
        replication={
            "registry_enrichment": True,
            "webhook": {
                "listen": f"127.0.0.1:{webhook_port}",
                "secret": WEBHOOK_SECRET,
                "retry_interval_s": 0.5,
                "max_attempts": 3,
            },
        },
        # The data plane as deployed: every PolicyService call needs a token (ordinary callers
        # and the attacks use bench-ci's unless they attack authentication itself).
        auth={
            "tokens": [
                *({"subject": s, "sha256": _sha256(t)} for s, t in DATA_TOKENS.items()),
                # Bound to nothing, never presented: it makes every unknown token a bcrypt check.
                {"subject": "bench-bcrypt", "bcrypt": data_hashed},
            ]
        },
        admin={
            "tokens": [
                {"subject": "ops", "bcrypt": hashed},
                {"subject": "viewer", "sha256": _sha256(VIEWER_TOKEN)},
            ],
            "parse_timeout_s": PARSE_TIMEOUT_S,
            "audit_refusals": {"window_s": AUDIT_WINDOW_S},
        },
    )
    return doc


async def _wait_ready(proc: SidecarProcess, timeout_s: float = 120.0) -> None:
    """Wait until ListJobs answers the bench-ci token (SidecarProcess's own check has none)."""
    started = time.monotonic()
    async with grpc.aio.insecure_channel(proc.address, options=CHANNEL_OPTIONS) as channel:
        stub = _WithToken(pb_grpc.PolicyServiceStub(channel), DATA_TOKENS["bench-ci"])
        while True:
            assert proc.alive, f"sidecar exited:\n{proc.log_tail()}"
            try:
                await stub.ListJobs(pb.ListJobsRequest(limit=1), timeout=2)
                return
            except grpc.aio.AioRpcError:
                assert time.monotonic() - started < timeout_s, f"never served:\n{proc.log_tail()}"
                await asyncio.sleep(0.05)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class _LoadProcess:
    """The ordinary callers, in a process of their own (``--load ADDRESS``).

    The attacks themselves cost CPU in this process (serialising 12.5 MB messages, streaming
    manifests): measured here, the ordinary callers' latencies would include that. Apart, they
    see only what the sidecar does. ``stop()`` ends the load and returns its latencies and errors.
    """

    def __init__(self, address: str, concurrency: int) -> None:
        self._args = [sys.executable, "-m", "tests.bench.attacks", "--load", address,
                      "--concurrency", str(concurrency)]  # fmt: skip
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> _LoadProcess:
        self._proc = await asyncio.create_subprocess_exec(
            *self._args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 << 20,  # the results are one JSON line: thousands of latencies
        )
        assert self._proc.stdout is not None
        ready = await self._proc.stdout.readline()
        assert ready.strip() == b"ready", ready
        return self

    async def stop(self) -> dict[str, Any]:
        """Stop the callers after their calls in flight; their latencies (s) and errors."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"stop\n")
        await proc.stdin.drain()
        result: dict[str, Any] = json.loads(await proc.stdout.readline())
        await proc.wait()
        return result

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()


async def _load_main(address: str, concurrency: int) -> None:
    """``--load``: decide with ``concurrency`` callers until "stop" on stdin; print the results."""
    loop = asyncio.get_running_loop()
    async with (
        grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel,
        DecisionLoad(
            _WithToken(pb_grpc.PolicyServiceStub(channel), DATA_TOKENS["bench-ci"]),
            concurrency,
            request=_request,
        ) as load,
    ):
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
    print(json.dumps({"latencies": load.latencies, "errors": load.errors}), flush=True)


async def _measure(
    target: Target, pid: int, concurrency: int, run: Callable[[], Awaitable[Outcome | None]]
) -> dict[str, Any]:
    before = _rss_mib(pid)
    async with _Peak(pid) as peak, _LoadProcess(target.address, concurrency) as load:
        started = time.perf_counter()
        outcome = await run()
        elapsed = time.perf_counter() - started
        result = await load.stop()
    latencies, errors = result["latencies"], result["errors"]
    row: dict[str, Any] = {
        "seconds": round(elapsed, 2),
        "rss_before_mib": before,
        "rss_peak_mib": peak.peak,
        "rss_after_mib": _rss_mib(pid),
        "decisions": len(latencies),
        "p99_ms": round(p99_ms(latencies), 1),
        "decision_errors": len(errors),
        "decision_error_sample": errors[:2],
    }
    if outcome is not None:
        row.update(asdict(outcome))
    return row


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Start the hostile servers and a sidecar process, measure the baseline and every attack."""
    wanted = {n.strip() for n in (args.only or "").split(",") if n.strip()}
    chosen = [a for a in ATTACKS if not wanted or a.name in wanted]
    state: dict[str, Any] = {"manifest_bytes_sent": [], "child_gets": 0}
    handlers = _hostile_handlers(state)
    with tempfile.TemporaryDirectory(prefix="attack-bench-") as tmp:
        work = Path(tmp)
        async with contextlib.AsyncExitStack() as stack:
            servers = {
                name: await stack.enter_async_context(fake_server(handler))
                for name, handler in handlers.items()
            }
            servers["empty"] = await stack.enter_async_context(fake_server(handlers["unknown"]))
            state["token_url"] = servers["tokens"].url
            ports = free_ports(4)
            config = write_config(_config(work, servers, ports), work)
            proc = SidecarProcess(config, work / "sidecar.log", f"127.0.0.1:{ports[0]}")
            proc.start()
            stack.callback(proc.stop)
            await _wait_ready(proc)
            assert proc.process is not None
            pid = proc.process.pid
            state["sidecar_pid"] = pid
            channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(proc.address, options=CHANNEL_OPTIONS)
            )
            # Bundles of up to 15 MiB go to PolicyAdmin (the client's default send cap is 4 MiB).
            admin_channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(
                    proc.address, options=(("grpc.max_send_message_length", 64 * MIB),)
                )
            )
            hostile = Hostile(servers["manifests"], servers["realm"], servers["tokens"],
                              servers["fan_out"], servers["unknown"], state)  # fmt: skip
            target = Target(
                channel,
                _WithToken(pb_grpc.PolicyServiceStub(channel), DATA_TOKENS["bench-ci"]),
                pb_grpc.PolicyAdminStub(admin_channel),
                proc.address,
                f"http://127.0.0.1:{ports[2]}/v1/registry/events",
                f"http://127.0.0.1:{ports[1]}/metrics",
                hostile,
                f"http://127.0.0.1:{ports[3]}",
                work / "state" / "jobs.db",
            )
            # Warm up: connections, OPA's caches, the first records.
            async with DecisionLoad(target.stub, args.concurrency, request=_request):
                await asyncio.sleep(2)

            async def idle() -> None:
                await asyncio.sleep(args.baseline_s)

            baseline = await _measure(target, pid, args.concurrency, idle)
            rows = []
            for chosen_attack in chosen:

                async def run(a: Attack = chosen_attack) -> Outcome:
                    return await a.run(target)

                row = await _measure(target, pid, args.concurrency, run)
                rows.append({"attack": chosen_attack.name, "finding": chosen_attack.finding, **row})
                print(_line(rows[-1]), file=sys.stderr, flush=True)
            assert proc.alive, f"the sidecar died:\n{proc.log_tail()}"
            opa = sum(_rss_mib(p) for p in child_pids(pid))
    return {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "concurrency": args.concurrency,
        "baseline": baseline,
        "attacks": rows,
        "opa_rss_mib_at_end": opa,
    }


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['attack']:<34} {row['refused'][:60]:<60} rss {row['rss_before_mib']:>6} → "
        f"{row['rss_peak_mib']:>6} → {row['rss_after_mib']:>6} MiB  p99 {row['p99_ms']:>7} ms  "
        f"errors {row['decision_errors']}  attacker {row['requests']} req / "
        f"{row['attacker_bytes'] / MIB:.1f} MiB"
    )


def table(report: dict[str, Any]) -> str:
    """The report as the Markdown table of docs/security.md."""
    base = report["baseline"]
    lines = [
        "| attack | finding | refused? (how) | sidecar RSS before → peak → after "
        "| p99 of decisions during | decisions (errors) | attack lasted | attacker sent |",
        "|---|---|---|---|---:|---:|---:|---|",
        f"| (baseline, no attack) | | - | {base['rss_before_mib']:.0f} → "
        f"{base['rss_peak_mib']:.0f} → {base['rss_after_mib']:.0f} MiB | {base['p99_ms']:.0f} ms "
        f"| {base['decisions']} ({base['decision_errors']}) | {base['seconds']:.1f} s | - |",
    ]
    for row in report["attacks"]:
        sent = f"{row['requests']:,} requests, {row['attacker_bytes'] / MIB:,.1f} MiB"
        refused = row["refused"] + (f"; {row['note']}" if row.get("note") else "")
        lines.append(
            f"| {row['attack']} | {row['finding'].split(':')[0]} | {refused} | "
            f"{row['rss_before_mib']:.0f} → "
            f"{row['rss_peak_mib']:.0f} → {row['rss_after_mib']:.0f} MiB | {row['p99_ms']:.0f} ms "
            f"| {row['decisions']} ({row['decision_errors']}) | {row['seconds']:.1f} s | {sent} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the bench, print the Markdown table, write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=8, help="ordinary callers deciding")
    parser.add_argument("--baseline-s", type=float, default=5.0, help="baseline duration")
    parser.add_argument("--only", default="", help="comma-separated attack names")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--list", action="store_true", help="list the attacks and exit")
    parser.add_argument("--load", metavar="ADDRESS", help=argparse.SUPPRESS)  # the callers' process
    args = parser.parse_args(argv)
    if args.load:
        asyncio.run(_load_main(args.load, args.concurrency))
        return 0
    if args.list:
        for a in ATTACKS:
            print(f"{a.name:<34} {a.finding}")
        return 0
    report = asyncio.run(run_bench(args))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
