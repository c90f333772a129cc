"""Pub/Sub push bench: what a push costs on ``/v1/registry/events/pubsub`` (OIDC and token mode).

Run:  .venv/bin/python -m tests.bench.pubsub_push [--pushes 500] [--concurrency 8]

Starts a real sidecar (managed OPA, SQLite inbox) with the push endpoint, an OIDC issuer serving
its JWKS on loopback, and posts ``--pushes`` genuine pushes (distinct message ids, recorded), the
same number of redeliveries (duplicates) and of forged tokens (refused), ``--concurrency`` at a
time. Prints, per kind, the answers seen, throughput and latency p50/p99 as the client saw them.
The registry the events name is unreachable, so processing fails and retries in the background
while the bench runs: that load is part of the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.pubsub import gcr_data, oidc_issuer, push_envelope
from tests.support.security import CLOSED, attacked_sidecar, sidecar_config
from tests.support.webhooks import free_port

PUSHER = "bench@test-project.iam.gserviceaccount.com"
HOST = CLOSED.removeprefix("http://")
DIGEST = "sha256:" + "be" * 32


async def _run(kind: str, url: str, bodies: list[tuple[bytes, str]], concurrency: int) -> None:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    examples: dict[int, str] = {}
    queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body, token = queue.get_nowait()
            started = time.perf_counter()
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(url, data=body, headers=headers) as answer:
                text = await answer.text()
                statuses[answer.status] += 1
                if answer.status != 200:
                    examples.setdefault(answer.status, text[:160])
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{kind:<10} {dict(statuses)!s:<12} {len(bodies) / elapsed:8.0f}/s "
        f"p50 {cuts[49] * 1000:6.1f} ms  p99 {cuts[98] * 1000:6.1f} ms"
    )
    for status, text in sorted(examples.items()):
        print(f"{'':<10} {status}: {text}")


async def main(pushes: int, concurrency: int) -> None:
    """Run the three kinds of push against one sidecar and print a line each."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/registry/events/pubsub"
    async with oidc_issuer() as issuer:
        pubsub = {
            "push": True,
            "oidc": {"audience": url, "jwks_url": issuer.jwks_url, "service_account": PUSHER},
        }
        doc = sidecar_config(
            replication={
                "webhook": {"listen": f"127.0.0.1:{port}", "secret": "bench", "pubsub": pubsub}
            }
        )
        with tempfile.TemporaryDirectory() as work:
            async with attacked_sidecar(doc, Path(work)):
                token = issuer.token(url, email=PUSHER)
                stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                forged = issuer.token(url, email=PUSHER, key=stranger)
                genuine = [
                    push_envelope(
                        gcr_data("INSERT", f"{HOST}/bench/app", digest=DIGEST, tag=f"dev-{n}"),
                        message_id=str(10**15 + n),
                    )
                    for n in range(pushes)
                ]
                print(f"{pushes} pushes of each kind, {concurrency} at a time")
                await _run("recorded", url, [(b, token) for b in genuine], concurrency)
                await _run("duplicate", url, [(b, token) for b in genuine], concurrency)
                await _run("forged", url, [(b, forged) for b in genuine], concurrency)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.pushes, args.concurrency))
