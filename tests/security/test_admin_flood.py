"""Attacks on PolicyAdmin through a real sidecar process: gzip bombs and floods of refused calls.

Issue 15 (limits): ValidateBundle/PublishBundle used to gunzip and parse up to 64 MiB on the event
loop, inside the publish lock, before authorisation; every unauthenticated admin call appended an
fsync'd audit row with no rate limit. Here a ``python -m sidecar serve`` process is attacked over
gRPC while ordinary Decide callers keep asking, and their p99 is measured before and during each
attack (printed; ``pytest -s`` shows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import json
import re
import statistics
import sys
import tarfile
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import yaml

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from tests.fault.process import SidecarProcess, child_pids
from tests.support.ports import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "cases"
ADMIN = (("authorization", "Bearer policy-admin-secret"),)
VIEWER = (("authorization", "Bearer viewer-secret"),)
UNPACKED_LIMIT = 64 * 1024 * 1024  # the shipped default of policy.admin.max_unpacked_bytes
RATE, BURST = 2.0, 10  # policy.admin.rate_limit of the attacked sidecar
PER_WINDOW, WINDOW_S = 5, 2.0  # policy.admin.audit_refusals
PARSE_TIMEOUT_S = 8.0  # policy.admin.parse_timeout_s
DIGEST = "sha256:" + "a" * 64


@dataclass
class Attacked:
    """The sidecar process under attack, its config file and a channel to it."""

    process: SidecarProcess
    config: Path
    channel: grpc.aio.Channel
    metrics_url: str

    @property
    def decide(self) -> pb_grpc.PolicyServiceStub:
        """A PolicyService stub."""
        return pb_grpc.PolicyServiceStub(self.channel)

    @property
    def admin(self) -> pb_grpc.PolicyAdminStub:
        """A PolicyAdmin stub."""
        return pb_grpc.PolicyAdminStub(self.channel)


def _config(work: Path, grpc_port: int, metrics_port: int) -> Path:
    doc = yaml.safe_load((CASES / "sidecar.yaml").read_text(encoding="utf-8"))
    bindings = work / "admin-data" / "system" / "bindings" / "data.json"
    bindings.parent.mkdir(parents=True)
    bindings.write_text(
        json.dumps(
            {
                "token:policy-admin": {"roles": ["policy-admin"]},
                "token:viewer": {"roles": ["viewer"]},
            }
        ),
        encoding="utf-8",
    )
    policy = doc["policy"]
    policy["listen"] = f"127.0.0.1:{grpc_port}"
    policy["metrics_listen"] = f"127.0.0.1:{metrics_port}"
    policy["state_dir"] = str(work / "state")
    policy["bundle"] = {
        **policy["bundle"],
        "data_dirs": [str(CASES / "data"), str(work / "admin-data")],
        "output": str(work / "state" / "bundle.tar.gz"),
    }
    policy["admin"] = {
        "tokens": [
            {"subject": name, "sha256": hashlib.sha256(f"{name}-secret".encode()).hexdigest()}
            for name in ("policy-admin", "viewer")
        ],
        "rate_limit": {"rate": RATE, "burst": BURST},
        "audit_refusals": {"per_window": PER_WINDOW, "window_s": WINDOW_S},
        "parse_timeout_s": PARSE_TIMEOUT_S,
    }
    path = work / "sidecar.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def attacked(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Attacked]:
    work = tmp_path_factory.mktemp("admin-flood")
    grpc_port, metrics_port = free_ports(2)
    config = _config(work, grpc_port, metrics_port)
    process = SidecarProcess(config, work / "sidecar.log", f"127.0.0.1:{grpc_port}")
    process.start()
    try:
        await process.wait_ready()
        async with grpc.aio.insecure_channel(
            process.address, options=(("grpc.max_send_message_length", 64 * 1024 * 1024),)
        ) as channel:
            yield Attacked(process, config, channel, f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        process.stop()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _memory(process: SidecarProcess) -> str:
    """RSS of the sidecar and of its Python children (the bundle workers), in MiB."""
    assert process.process is not None
    workers = []
    for pid in child_pids(process.process.pid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip().startswith("python"):
                workers.append(_rss_mib(pid))
    sidecar = _rss_mib(process.process.pid)
    return (
        f"sidecar {sidecar:.0f} MiB, bundle workers {' + '.join(f'{w:.0f}' for w in workers)} MiB"
    )


def _decide_request(index: int) -> pb.DecideRequest:
    return pb.DecideRequest(
        image=pb.Image(registry="ci", repository="team/app", tag=f"dev-{index}", digest=DIGEST),
        caller=pb.Caller(subject="test"),
    )


@contextlib.asynccontextmanager
async def _decisions(attacked: Attacked, callers: int = 4) -> AsyncIterator[list[float]]:
    """Keep ``callers`` Decide callers asking back to back; yield their latencies (seconds)."""
    latencies: list[float] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def caller(index: int) -> None:
        stub = attacked.decide
        while not stop.is_set():
            started = time.perf_counter()
            try:
                await stub.Decide(_decide_request(index), timeout=10)
            except grpc.aio.AioRpcError as exc:
                failures.append(f"{exc.code().name}: {exc.details()}")
            latencies.append(time.perf_counter() - started)

    tasks = [asyncio.create_task(caller(i)) for i in range(callers)]
    try:
        yield latencies
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert not failures, f"Decide failed during the attack: {Counter(failures).most_common(3)}"


def _p99_ms(latencies: list[float]) -> float:
    assert len(latencies) >= 10, f"too few decisions to measure: {len(latencies)}"
    return statistics.quantiles(latencies, n=100)[98] * 1000


async def _for(seconds: float, attack: Callable[[], Awaitable[Any]]) -> int:
    """Repeat ``attack`` for ``seconds``; return how many times it ran."""
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        await attack()
        count += 1
    return count


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
    """A bundle within every limit whose data file is 48 MB of valid JSON: ~100 kB gzipped.

    Finding out which tenants it changes means parsing that JSON (~0.3 s holding the GIL).
    """
    blob = json.dumps({"tenants": {"acme": {"blob": ["0123456789"] * 3_400_000}}}).encode()
    manifest = json.dumps({"revision": "big", "roots": ["replication", "system"]}).encode()
    return _gzipped_tar({".manifest": manifest, "replication/data.json": blob})


async def _status(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def _audit(attacked: Attacked) -> list[pb.AuditEvent]:
    answer = await attacked.admin.GetAuditLog(
        pb.GetAuditLogRequest(limit=1000), metadata=ADMIN, timeout=10
    )
    return list(answer.events)


def _metric(attacked: Attacked, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(attacked.metrics_url, timeout=5).read().decode()  # noqa: S310
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric.startswith(name + "{") and all(f'{k}="{v}"' in metric for k, v in labels.items()):
            return float(value)
    raise AssertionError(f"{name}{{{wanted}}} not exposed")


async def _audit_verify(config: Path) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "--config", str(config), "audit", "verify",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    result: dict[str, Any] = json.loads(out)
    return result


async def _quiet(seconds: float) -> None:
    """Let every caller's bucket refill (the attacks below share the admin's token)."""
    await asyncio.sleep(seconds)


async def test_gzip_bombs_are_refused_unread_or_bounded_and_decisions_keep_flowing(
    attacked: Attacked,
) -> None:
    bomb, big_json = _bomb(), _big_json()
    big = bytes(range(256)) * (15 * 1024 * 1024 // 256)  # 15 MiB: within max_bundle_bytes

    async with _decisions(attacked) as before:
        await asyncio.sleep(3)
    baseline = _p99_ms(before)

    # Unauthenticated: refused before a byte of the bundle is read, whatever it unpacks to.
    async def unauthenticated() -> None:
        for raw in (bomb, big):
            code, details = await _status(
                attacked.admin.ValidateBundle(pb.ValidateBundleRequest(bundle=raw), timeout=30)
            )
            assert code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED)
            assert "unpacks" not in details

    async with _decisions(attacked) as during:
        sent = await _for(4, unauthenticated)
    unauth_p99 = _p99_ms(during)

    # Authenticated but not allowed (viewer): the read that finds out what the bundle changes is
    # bounded by max_unpacked_bytes and runs in a worker process; then PERMISSION_DENIED.
    await _quiet(BURST / RATE)

    async def viewer() -> None:
        for raw in (bomb, big_json):
            code, details = await _status(
                attacked.admin.PublishBundle(
                    pb.PublishBundleRequest(bundle=raw), metadata=VIEWER, timeout=30
                )
            )
            assert code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.RESOURCE_EXHAUSTED)
            assert "token:viewer" in details

    async with _decisions(attacked) as during_viewer:
        viewer_calls = await _for(6, viewer)
    viewer_p99 = _p99_ms(during_viewer)

    # The admin itself: refused INVALID_ARGUMENT naming the limit to raise, nothing published.
    await _quiet(BURST / RATE)
    code, details = await _status(
        attacked.admin.PublishBundle(pb.PublishBundleRequest(bundle=bomb), metadata=ADMIN)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert f"unpacks to more than {UNPACKED_LIMIT} bytes" in details
    assert "policy.admin.max_unpacked_bytes" in details
    report = await attacked.admin.ValidateBundle(
        pb.ValidateBundleRequest(bundle=bomb), metadata=ADMIN
    )
    assert not report.valid
    assert any("policy.admin.max_unpacked_bytes" in p for p in report.problems)
    listing = await attacked.admin.ListRevisions(pb.ListRevisionsRequest(), metadata=ADMIN)
    assert all(r.digest != "sha256:" + hashlib.sha256(bomb).hexdigest() for r in listing.revisions)

    print(
        f"\nDecide p99 (4 concurrent callers): before {baseline:.1f} ms ({len(before)} calls); "
        f"during {sent} unauthenticated bomb+15 MiB uploads {unauth_p99:.1f} ms "
        f"({len(during)} calls); during {viewer_calls} viewer bomb+48 MB JSON publishes "
        f"{viewer_p99:.1f} ms ({len(during_viewer)} calls); memory after: "
        f"{_memory(attacked.process)}"
    )
    # Each bomb is inflated to 64 MiB (bounded) in a worker thread: decisions slow down on two
    # shared cores but never stall behind it (on the event loop, each read stalled every call).
    # (The sidecar before this fix: 2965 ms against a 116 ms baseline, 46 decisions in 6 s.)
    assert viewer_p99 < max(1500.0, 10 * baseline), (baseline, viewer_p99)
    # Unauthenticated uploads cost the sidecar only receiving them (gRPC's own threads): bounded,
    # but noisy on two shared cores.
    assert unauth_p99 < max(3000.0, 20 * baseline), (baseline, unauth_p99)
    answer = await attacked.decide.Decide(_decide_request(0), timeout=10)
    assert answer.decision_id


def _slow_yaml() -> bytes:
    """A bundle within every limit whose 4 MB YAML data file takes minutes to parse (~60 kB)."""
    body = "tenants:\n  acme:\n    blob:\n" + "      - item\n" * 330_000
    manifest = json.dumps({"revision": "slow", "roots": ["replication", "system"]}).encode()
    return _gzipped_tar({".manifest": manifest, "replication/data.yaml": body.encode()})


async def test_a_bundle_that_parses_for_minutes_is_cut_off_at_the_deadline(
    attacked: Attacked,
) -> None:
    slow = _slow_yaml()
    await _quiet(BURST / RATE)
    async with _decisions(attacked) as during:
        started = time.monotonic()
        code, details = await _status(
            attacked.admin.PublishBundle(
                pb.PublishBundleRequest(bundle=slow), metadata=VIEWER, timeout=120
            )
        )
        took = time.monotonic() - started
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert "policy.admin.parse_timeout_s" in details
    assert took < PARSE_TIMEOUT_S + 20
    print(
        f"\nviewer's 4 MB YAML bundle refused after {took:.1f} s; Decide p99 meanwhile "
        f"{_p99_ms(during):.1f} ms ({len(during)} calls)"
    )
    # The killed workers start again for the next bundle.
    report = await attacked.admin.ValidateBundle(
        pb.ValidateBundleRequest(bundle=_bomb()), metadata=ADMIN, timeout=60
    )
    assert any("policy.admin.max_unpacked_bytes" in p for p in report.problems)


def _suppressed(event: pb.AuditEvent) -> int:
    found = re.match(r"(\d+) more refused calls", event.detail)
    assert found, event.detail
    return int(found.group(1))


async def test_a_flood_of_unauthenticated_calls_is_rate_limited_with_bounded_audit_rows(
    attacked: Attacked,
) -> None:
    await _quiet(max(BURST / RATE, WINDOW_S) + 0.5)
    last_seq = max((e.seq for e in await _audit(attacked)), default=0)
    limited_before = _metric(
        attacked, "policy_sidecar_rate_limited_calls_total", surface="admin",
        caller="unauthenticated",
    )  # fmt: skip
    flood = 400
    codes: Counter[grpc.StatusCode] = Counter()

    async def one() -> None:
        code, _ = await _status(attacked.admin.ListRevisions(pb.ListRevisionsRequest(), timeout=10))
        codes[code] += 1

    async with _decisions(attacked) as during:
        started = time.monotonic()
        for _ in range(flood // 20):
            await asyncio.gather(*(one() for _ in range(20)))
        took = time.monotonic() - started
    assert sum(codes.values()) == flood
    allowed = BURST + RATE * took + 1
    assert codes[grpc.StatusCode.UNAUTHENTICATED] <= allowed, codes
    assert codes[grpc.StatusCode.RESOURCE_EXHAUSTED] >= flood - allowed, codes
    assert set(codes) <= {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    limited = _metric(
        attacked, "policy_sidecar_rate_limited_calls_total", surface="admin",
        caller="unauthenticated",
    )  # fmt: skip
    assert limited - limited_before == codes[grpc.StatusCode.RESOURCE_EXHAUSTED]

    # An authenticated admin has a bucket of its own: the flood from its address does not lock
    # it out, and Decide served throughout.
    listing = await attacked.admin.ListRevisions(pb.ListRevisionsRequest(), metadata=ADMIN)
    assert listing.revisions
    await attacked.decide.Decide(_decide_request(1), timeout=10)

    await asyncio.sleep(WINDOW_S + 1.5)  # the last window ends: its summary row is written
    rows = [e for e in await _audit(attacked) if e.seq > last_seq and e.action == "ListRevisions"]
    single = [e for e in rows if e.outcome in ("unauthenticated", "rate_limited")]
    summaries = [e for e in rows if e.outcome == "suppressed"]
    windows = int(took // WINDOW_S) + 2
    print(
        f"\nflood of {flood} unauthenticated ListRevisions in {took:.2f} s: {dict(codes)}; "
        f"{len(rows)} audit rows ({len(single)} single, {len(summaries)} summaries); "
        f"Decide p99 during the flood {_p99_ms(during):.1f} ms ({len(during)} calls)"
    )
    assert len(single) <= PER_WINDOW * windows, [e.detail for e in single]
    assert 1 <= len(summaries) <= windows
    assert all(e.actor == "peer:127.0.0.1" for e in summaries)
    # Every refusal is accounted for: written alone or counted in a summary.
    assert len(single) + sum(_suppressed(e) for e in summaries) == flood

    verified = await _audit_verify(attacked.config)
    assert verified["ok"], verified
    assert verified["records"] >= len(rows)
    await attacked.decide.Decide(_decide_request(2), timeout=10)
