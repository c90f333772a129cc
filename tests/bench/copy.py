"""Copy benchmark: the sidecar's image copier against ``skopeo copy --all`` and ``crane copy``.

Run:  .venv/bin/python -m tests.bench.copy [--images 20] [--max-mb 200] [--seed 1] [--rounds 5]
                                           [--parallel 2] [--output report.json]
(figures and how to read them: docs/benchmarks.md, "Image copy")

One image set, generated once from ``--seed`` into a source docker-registry: ``--images`` images
whose blob sizes spread evenly from ``--min-mb`` to ``--max-mb`` MiB, in ``images / 4``
repositories (versions of one app share a dependency layer), all built on a few shared base layers
(an OS layer, a runtime layer, a small base for small images), and every eighth image (from the
third) a two-platform OCI index. Layers are gzip streams (stored) of random bytes: incompressible
like real layers, and recognised as compressed so that no tool recompresses them.

Each tool then copies every image by digest from the source to the same repository and tag of a
*fresh* destination registry: cold (the destination empty), then warm (everything already there).
All tools copy ``--parallel`` images at a time (default 2: the worker pool's default
``per_registry_concurrency``, so what the sidecar does against one destination); each peer runs as
one process per image. The sidecar is its engine, :class:`ImageCopier` (default
``blob_concurrency``), with new clients and copier for each phase: no connection or cache survives
from cold to warm. Both registries sit behind a counting proxy (its own process, streaming), so
requests and bytes are counted the same way for every tool; bytes moved are the request bodies the
destination received. After each cold copy every destination tag must resolve to the source digest.

``--rounds`` repeats the whole comparison (tool order rotated, fresh destinations): the table gives
the median wall time and CPU seconds, and the counts of the last round. The CPU seconds are the
copying tool's (this process for the sidecar, the finished children for the peers) and the two
registries'; the load average before and after goes in the report, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gzip
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

from sidecar.model.jobs import JobSpec
from sidecar.oci import OCI_INDEX, OCI_MANIFEST, RegistryClient, RegistryClients
from sidecar.replicate.copy import ImageCopier
from sidecar.telemetry import configure_logging
from sidecar.telemetry._logging import snapshot_logging
from sidecar.tools import find_tool
from tests.support.counting_proxy import CountingProxy, counting_proxy
from tests.support.images import (
    CONFIG,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    push_bytes,
    push_manifest,
    registry_config,
)
from tests.support.registry import RegistryServer, docker_registry_binary, registry_server

__all__ = ["BenchImage", "generate_images", "main", "run_benchmark"]

TOOLS = ("sidecar", "skopeo", "crane")
PHASES = ("cold", "warm")
_MIB = 1 << 20
_COLD_FACTOR = 1.2  # target: cold within 1.2x of the fastest peer
_PLATFORMS = ("linux/amd64", "linux/arm64")
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class BenchImage:
    """One image of the set: where it is, its digest and what it holds."""

    repository: str
    tag: str
    digest: str
    blob_bytes: int  # config + layers, every platform
    platforms: int  # 1 for an image manifest, 2 for an index


@dataclass(frozen=True)
class _Layer:
    name: str  # the content's identity: same name, same bytes
    size: int


def _content(seed: int, name: str, size: int) -> bytes:
    """A real gzip stream (stored, so about ``size`` bytes) of seeded random bytes.

    Real, because skopeo gzips layers it does not recognise as compressed, changing the digests.
    """
    raw = random.Random(f"{seed}/{name}").randbytes(size)  # noqa: S311 - reproducible test data
    return gzip.compress(raw, compresslevel=0, mtime=0)


def _layers(rng: random.Random, target: int, arch: str, repo: int, max_bytes: int) -> list[_Layer]:
    """Shared base layers when they fit in ``target``, then 1-3 unique layers filling the rest."""
    os_base, runtime, small = int(0.15 * max_bytes), int(0.2 * max_bytes), int(0.025 * max_bytes)
    deps = int(max_bytes * (0.05 + 0.015 * (repo % 5)))
    chosen: list[_Layer] = []
    if target >= 1.3 * os_base:
        chosen.append(_Layer(f"os-{arch}", os_base))
        if target - os_base >= 1.3 * runtime:
            chosen.append(_Layer(f"runtime-{arch}", runtime))
        if target - sum(x.size for x in chosen) >= 1.3 * deps:
            chosen.append(_Layer(f"deps-{repo}-{arch}", deps))
    elif target >= 1.5 * small:
        chosen.append(_Layer(f"small-{arch}", small))
    rest = max(1024, target - sum(x.size for x in chosen))
    parts = rng.randint(1, 3) if rest >= 64 << 10 else 1
    cuts = sorted(rng.sample(range(1, rest), parts - 1)) if parts > 1 else []
    bounds = [0, *cuts, rest]
    unique = f"u{rng.getrandbits(48):012x}"
    chosen += [_Layer(f"{unique}-{i}", b - a) for i, (a, b) in enumerate(pairwise(bounds))]
    return chosen


async def _push_image(
    client: RegistryClient,
    repo: str,
    layers: Sequence[_Layer],
    *,
    seed: int,
    identity: str,
    arch: str,
    docker: bool,
    tag: str,
    shared: dict[str, bytes],
) -> tuple[str, int, int]:
    """Push one single-platform image; return (manifest digest, manifest size, blob bytes)."""
    config_doc = {
        "architecture": arch,
        "os": "linux",
        "created": "2026-01-02T03:04:05Z",
        "config": {"Labels": {"bench.image": identity}},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    config = await push_bytes(
        client, repo, json.dumps(config_doc).encode(), DOCKER_CONFIG if docker else CONFIG
    )
    descriptors = []
    for layer in layers:
        if layer.name.startswith("u"):  # unique: generated, pushed, forgotten
            data = _content(seed, layer.name, layer.size)
        else:
            data = shared.setdefault(layer.name, _content(seed, layer.name, layer.size))
        descriptors.append(await push_bytes(client, repo, data, DOCKER_LAYER if docker else LAYER))
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": config,
        "layers": descriptors,
    }
    manifest = await push_manifest(client, repo, doc, tag)
    size = config["size"] + sum(d["size"] for d in descriptors)
    return manifest.digest, len(manifest.data), size


async def generate_images(
    client: RegistryClient, count: int, min_mb: float, max_mb: float, seed: int
) -> list[BenchImage]:
    """Push the deterministic image set of ``seed`` (see the module docstring); return it."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    max_bytes = int(max_mb * _MIB)
    step = (max_mb - min_mb) / (count - 1) if count > 1 else 0.0
    targets = [int((min_mb + step * i) * _MIB) for i in range(count)]
    rng.shuffle(targets)
    repos = max(1, count // 4)
    shared: dict[str, bytes] = {}
    images: list[BenchImage] = []
    for i, target in enumerate(targets):
        repo_no = i % repos
        repo, tag = f"bench/app-{repo_no}", f"v{i // repos + 1}"
        if i % 8 == 2:  # a two-platform index; its children split the size
            entries, blob_bytes = [], 0
            for platform_name in _PLATFORMS:
                arch = platform_name.split("/")[1]
                layers = _layers(rng, target // 2, arch, repo_no, max_bytes)
                digest, size, blobs = await _push_image(
                    client, repo, layers, seed=seed, identity=f"{i}-{arch}", arch=arch,
                    docker=False, tag="", shared=shared,
                )  # fmt: skip
                blob_bytes += blobs
                entries.append(
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": digest,
                        "size": size,
                        "platform": {"os": "linux", "architecture": arch},
                    }
                )
            doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
            index = await push_manifest(client, repo, doc, tag)
            images.append(BenchImage(repo, tag, index.digest, blob_bytes, len(entries)))
        else:
            layers = _layers(rng, target, "amd64", repo_no, max_bytes)
            digest, _, blob_bytes = await _push_image(
                client, repo, layers, seed=seed, identity=str(i), arch="amd64",
                docker=i % 3 == 1, tag=tag, shared=shared,
            )  # fmt: skip
            images.append(BenchImage(repo, tag, digest, blob_bytes, 1))
    return images


async def _set_facts(client: RegistryClient, images: Sequence[BenchImage]) -> dict[str, Any]:
    """Blob counts and bytes of the set: all, per repository (no mounts) and distinct digests."""
    per_repo: dict[tuple[str, str], int] = {}
    for image in images:
        top = await client.get_manifest(image.repository, image.digest)
        manifests = [top]
        for child in top.children():
            manifests.append(await client.get_manifest(image.repository, child.digest))
        for manifest in manifests:
            for blob in manifest.blobs():
                per_repo[(image.repository, blob.digest)] = blob.size
    distinct = {digest: size for (_, digest), size in per_repo.items()}
    return {
        "images": len(images),
        "indexes": sum(1 for i in images if i.platforms > 1),
        "repositories": len({i.repository for i in images}),
        "image_bytes": sum(i.blob_bytes for i in images),
        "repository_blob_bytes": sum(per_repo.values()),
        "distinct_blob_bytes": sum(distinct.values()),
        "distinct_blobs": len(distinct),
        "smallest_image_bytes": min(i.blob_bytes for i in images),
        "largest_image_bytes": max(i.blob_bytes for i in images),
    }


async def _bounded(jobs: Sequence[Callable[[], Awaitable[None]]], limit: int) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            await job()

    async with asyncio.TaskGroup() as group:
        for job in jobs:
            group.create_task(one(job))


async def _run_sidecar(
    images: Sequence[BenchImage], src: str, dst: str, parallel: int, blob_concurrency: int
) -> dict[str, int]:
    clients = RegistryClients([registry_config("src", src), registry_config("dst", dst)])
    copier = ImageCopier(clients, blob_concurrency=blob_concurrency)
    totals = {"bytes_moved": 0, "requests": 0, "blobs_copied": 0, "blobs_mounted": 0}

    async def copy(image: BenchImage) -> None:
        spec = JobSpec("src", image.repository, image.digest, "dst", image.repository, image.tag)
        result = await copier.copy(spec)
        totals["bytes_moved"] += result.bytes_moved
        totals["requests"] += result.requests
        totals["blobs_copied"] += result.blobs_copied
        totals["blobs_mounted"] += result.blobs_mounted

    try:
        await _bounded([partial(copy, image) for image in images], parallel)
    finally:
        await clients.close()
    return totals


def _host(url: str) -> str:
    return url.removeprefix("http://").removeprefix("https://")


def _peer_argv(tool: str, binary: str, image: BenchImage, src: str, dst: str) -> list[str]:
    source = f"{_host(src)}/{image.repository}@{image.digest}"
    target = f"{_host(dst)}/{image.repository}:{image.tag}"
    if tool == "skopeo":
        return [
            binary, "copy", "--all", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
            f"docker://{source}", f"docker://{target}",
        ]  # fmt: skip
    return [binary, "copy", "--insecure", source, target]


async def _run_peer(
    tool: str, binary: str, images: Sequence[BenchImage], src: str, dst: str, *, parallel: int
) -> dict[str, int]:
    async def copy(image: BenchImage) -> None:
        argv = _peer_argv(tool, binary, image, src, dst)
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}: {err.decode()}")

    await _bounded([partial(copy, image) for image in images], parallel)
    return {}


async def _verify(dst: str, images: Sequence[BenchImage], tool: str) -> None:
    """Every destination tag must resolve to the source digest (manifests are checked on push)."""
    client = RegistryClient(registry_config("check", dst))
    try:
        for image in images:
            head = await client.head_manifest(image.repository, image.tag)
            if head is None or head.digest != image.digest:
                found = head.digest if head else "nothing"
                raise RuntimeError(
                    f"{tool}: {image.repository}:{image.tag} is {found}, want {image.digest}"
                )
    finally:
        await client.close()


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) process ``pid`` used so far; 0 where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _CpuMeter:
    """CPU seconds of the copying tool, the registries and the proxies over one phase.

    The tool is this process for the sidecar (the copier runs in it) and the finished child
    processes for the peers (each copy is one child, waited for before the phase ends).
    """

    def __init__(self, tool: str, registries: Sequence[int | None], proxies: Sequence[int]):
        self._tool, self._registries, self._proxies = tool, registries, proxies
        self._start = self._now()

    def _own(self) -> float:
        if self._tool == "sidecar":
            return time.process_time()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def _now(self) -> tuple[float, float, float]:
        return (
            self._own(),
            sum(_cpu_s(pid) for pid in self._registries),
            sum(_cpu_s(pid) for pid in self._proxies),
        )

    def read(self) -> dict[str, float]:
        """CPU seconds since the meter was made: ``tool``, ``registries`` and ``proxies``."""
        now = self._now()
        return {
            name: round(now[i] - self._start[i], 3)
            for i, name in enumerate(("tool", "registries", "proxies"))
        }


@dataclass
class _Measure:
    tool: str
    phase: str
    round: int
    wall_s: float
    src: dict[str, Any]
    dst: dict[str, Any]
    copier: dict[str, int]
    cpu_s: dict[str, float]

    @property
    def bytes_moved(self) -> int:
        return sum(self.dst["bytes_in"].values()) if self.dst else 0

    @property
    def blob_bytes_moved(self) -> int:
        return int(self.dst["bytes_in"]["blob"]) if self.dst else 0

    @property
    def requests(self) -> int:
        return int(self.src["requests"] + self.dst["requests"]) if self.dst else 0


async def _measure_tool(
    tool: str,
    round_no: int,
    images: Sequence[BenchImage],
    *,
    source: tuple[RegistryServer, CountingProxy],
    work: Path,
    args: argparse.Namespace,
    binaries: dict[str, str],
) -> list[_Measure]:
    root = work / f"dst-{tool}-{round_no}"
    measures: list[_Measure] = []
    try:
        with registry_server(root) as dst_registry, counting_proxy(dst_registry.url) as dst_proxy:
            src_registry, src_proxy = source
            registries = [
                p.process.pid if p.process else None for p in (src_registry, dst_registry)
            ]
            proxies = [src_proxy.process.pid, dst_proxy.process.pid]
            for phase in PHASES:
                src_proxy.reset()
                dst_proxy.reset()
                meter = _CpuMeter(tool, registries, proxies)
                started = time.perf_counter()
                if tool == "sidecar":
                    copier = await _run_sidecar(
                        images, src_proxy.url, dst_proxy.url, args.parallel, args.blob_concurrency
                    )
                else:
                    copier = await _run_peer(
                        tool, binaries[tool], images, src_proxy.url, dst_proxy.url,
                        parallel=args.parallel,
                    )  # fmt: skip
                wall = time.perf_counter() - started
                cpu = meter.read()
                measure = _Measure(
                    tool, phase, round_no, wall, src_proxy.counts(), dst_proxy.counts(), copier,
                    cpu,
                )  # fmt: skip
                measures.append(measure)
                print(
                    f"  round {round_no} {tool:8} {phase}: {wall:7.2f} s  "
                    f"{measure.bytes_moved / _MIB:9.1f} MiB  {measure.requests:6d} requests  "
                    f"CPU s: {cpu}",
                    file=sys.stderr,
                    flush=True,
                )
                await _verify(dst_registry.url, images, tool)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return measures


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"unavailable: {exc}"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else ""
    )


def _binaries(tools: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    if "skopeo" in tools:
        skopeo = shutil.which("skopeo") or "/usr/bin/skopeo"
        if not os.access(skopeo, os.X_OK):
            raise RuntimeError("skopeo is not installed: run scripts/setup.sh (apt package)")
        found["skopeo"] = skopeo
    if "crane" in tools:
        found["crane"] = str(find_tool("crane"))
    return found


def _summary(measures: list[_Measure], tools: Sequence[str]) -> list[dict[str, Any]]:
    """One row per tool and phase: median wall time over rounds, counts of the last round."""
    rows: list[dict[str, Any]] = []
    for tool in tools:
        for phase in PHASES:
            mine = [m for m in measures if m.tool == tool and m.phase == phase]
            last = max(mine, key=lambda m: m.round)
            rows.append(
                {
                    "tool": tool,
                    "phase": phase,
                    "wall_s": statistics.median(m.wall_s for m in mine),
                    "wall_s_rounds": [round(m.wall_s, 4) for m in mine],
                    "bytes_moved": last.bytes_moved,
                    "blob_bytes_moved": last.blob_bytes_moved,
                    "bytes_read_from_source": sum(last.src["bytes_out"].values()),
                    "requests": last.requests,
                    "cpu_s": {
                        part: statistics.median(m.cpu_s[part] for m in mine)
                        for part in ("tool", "registries", "proxies")
                    },
                    "source_requests": last.src["requests"],
                    "destination_requests": last.dst["requests"],
                    "source": last.src,
                    "destination": last.dst,
                    **({"copier": last.copier} if last.copier else {}),
                }
            )
    return rows


def _targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios to the fastest peer per phase and whether the sidecar met its targets."""
    verdict: dict[str, Any] = {}
    for phase in PHASES:
        walls = {r["tool"]: r["wall_s"] for r in rows if r["phase"] == phase}
        peers = {tool: wall for tool, wall in walls.items() if tool != "sidecar"}
        if "sidecar" not in walls or not peers:
            continue
        fastest = min(peers, key=lambda tool: peers[tool])
        ratio = walls["sidecar"] / peers[fastest]
        met = ratio <= _COLD_FACTOR if phase == "cold" else walls["sidecar"] < min(peers.values())
        verdict[phase] = {
            "fastest_peer": fastest,
            "ratio": ratio,
            "target": f"<= {_COLD_FACTOR}x fastest peer" if phase == "cold" else "< every peer",
            "met": met,
        }
        for row in rows:
            if row["phase"] == phase:
                row["ratio_to_fastest_peer"] = row["wall_s"] / peers[fastest]
    return verdict


def _print_table(report: dict[str, Any]) -> None:
    facts = report["image_set"]
    print(
        f"\nCopy of {facts['images']} images ({facts['indexes']} two-platform indexes, "
        f"{facts['repositories']} repositories, "
        f"{facts['smallest_image_bytes'] / _MIB:.1f}-{facts['largest_image_bytes'] / _MIB:.1f} MiB"
        f" each; {facts['image_bytes'] / _MIB:.0f} MiB in all, "
        f"{facts['repository_blob_bytes'] / _MIB:.0f} MiB distinct per repository, "
        f"{facts['distinct_blob_bytes'] / _MIB:.0f} MiB distinct), "
        f"{report['parallel']} images at a time, median of {report['rounds']} round(s)"
    )
    load = report["machine"]["load_average_1_5_15_min"]
    print(f"load average before {load['before'][0]:.1f}, after {load['after'][0]:.1f}\n")
    print("| tool | phase | wall (s) | x fastest peer | bytes moved (MiB) | blob bytes (MiB) "
          "| read from source (MiB) | requests (src + dst) | CPU s: tool / registries |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in report["results"]:
        ratio = row.get("ratio_to_fastest_peer")
        print(
            f"| {row['tool']} | {row['phase']} | {row['wall_s']:.2f} "
            f"| {f'{ratio:.2f}' if ratio is not None else '-'} "
            f"| {row['bytes_moved'] / _MIB:.1f} | {row['blob_bytes_moved'] / _MIB:.1f} "
            f"| {row['bytes_read_from_source'] / _MIB:.1f} "
            f"| {row['requests']} ({row['source_requests']} + {row['destination_requests']}) "
            f"| {row['cpu_s']['tool']:.2f} / {row['cpu_s']['registries']:.2f} |"
        )
    for phase, verdict in report["targets"].items():
        print(
            f"{phase}: sidecar {verdict['ratio']:.2f}x the fastest peer ({verdict['fastest_peer']});"
            f" target {verdict['target']}: {'met' if verdict['met'] else 'MISSED'}"
        )


async def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the image set, measure every tool cold and warm, and return the report."""
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        raise SystemExit(f"unknown tools {unknown}; known: {', '.join(TOOLS)}")
    binaries = _binaries(tools)
    load_before = os.getloadavg()
    measures: list[_Measure] = []
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-copy-")))
        source = stack.enter_context(registry_server(work / "src"))
        generated = time.perf_counter()
        client = RegistryClient(registry_config("src", source.url))
        try:
            images = await generate_images(client, args.images, args.min_mb, args.max_mb, args.seed)
            facts = await _set_facts(client, images)
        finally:
            await client.close()
        print(
            f"generated {len(images)} images ({facts['image_bytes'] / _MIB:.0f} MiB) "
            f"in {time.perf_counter() - generated:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        src_proxy = stack.enter_context(counting_proxy(source.url))
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                measures += await _measure_tool(
                    tool, round_no, images, source=(source, src_proxy), work=work, args=args,
                    binaries=binaries,
                )  # fmt: skip
    rows = _summary(measures, tools)
    report: dict[str, Any] = {
        "benchmark": "image copy (issue 3)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": args.command,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            # Other work on the machine shows here: wall times are only comparable when low.
            "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        },
        "versions": {
            "docker-registry": _version([docker_registry_binary(), "--version"]),
            **{
                tool: _version([path, "--version" if tool == "skopeo" else "version"])
                for tool, path in binaries.items()
            },
        },
        "seed": args.seed,
        "parallel": args.parallel,
        "blob_concurrency": args.blob_concurrency,
        "rounds": args.rounds,
        "image_set": facts,
        "images": [asdict(image) for image in images],
        "results": rows,
        "measures": [
            {**asdict(m), "bytes_moved": m.bytes_moved, "requests": m.requests} for m in measures
        ],
    }
    report["targets"] = _targets(rows)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the benchmark, print the table and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=20, help="images in the set")
    parser.add_argument("--min-mb", type=float, default=1.0, help="smallest image (MiB)")
    parser.add_argument("--max-mb", type=float, default=200.0, help="largest image (MiB)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the image set")
    parser.add_argument("--rounds", type=int, default=1, help="repeat everything; median wall")
    parser.add_argument("--parallel", type=int, default=2, help="images copied at once, every tool")
    parser.add_argument("--blob-concurrency", type=int, default=4, help="the copier's blobs/image")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated tools")
    parser.add_argument("--output", type=Path, help="write the JSON report here")
    args = parser.parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)
    args.command = " ".join([".venv/bin/python", "-m", "tests.bench.copy", *given])
    if args.images < 1 or args.rounds < 1 or args.parallel < 1 or args.min_mb > args.max_mb:
        parser.error("need --images, --rounds, --parallel >= 1 and --min-mb <= --max-mb")
    saved = snapshot_logging()
    configure_logging("warning")  # the copier's line per image would bury the progress lines
    try:
        report = asyncio.run(run_benchmark(args))
    finally:
        saved.restore()
    _print_table(report)
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nreport written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
