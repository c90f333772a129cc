"""A real ``python -m sidecar --config X serve`` process: start, SIGKILL, restart, find its OPA.

Its stderr (JSON log lines) is appended to one log file across restarts, so what every
incarnation did can be counted afterwards (:func:`succeeded_attempts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc

__all__ = [
    "CHANNEL_OPTIONS",
    "SidecarProcess",
    "child_pids",
    "running_process",
    "succeeded_attempts",
]

# Reconnect quickly after a restart: gRPC's default backoff grows to two minutes.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)


def child_pids(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc), children first."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop(0)
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                kids = [int(k) for k in task.read_text().split()]
                found.extend(kids)
                queue.extend(kids)
    return found


class SidecarProcess:
    """One sidecar serving ``config_path`` as a subprocess, restartable after a kill."""

    def __init__(self, config_path: Path, log_path: Path, grpc_address: str) -> None:
        """Nothing runs until :meth:`start`."""
        self.config_path, self.log_path, self.address = config_path, log_path, grpc_address
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        """Spawn the sidecar (its output is appended to the log)."""
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sidecar", "--config", str(self.config_path), "serve"],
                stdout=out,
                stderr=out,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.starts += 1

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the sidecar (its managed OPA dies with it: parent-death signal)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL after 30 s; idempotent."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the log (for failure messages)."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def opa_pid(self) -> int | None:
        """The pid of the managed OPA now running under the sidecar, if any."""
        if self.process is None:
            return None
        for pid in child_pids(self.process.pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "opa":
                    return pid
        return None

    async def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Wait until ListJobs answers; return how long it took. Fails if the process died."""
        started = time.monotonic()
        async with grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.PolicyServiceStub(channel)
            while True:
                assert self.alive, f"sidecar exited:\n{self.log_tail()}"
                try:
                    await stub.ListJobs(pb.ListJobsRequest(limit=1), timeout=2)
                    return time.monotonic() - started
                except grpc.aio.AioRpcError:
                    assert time.monotonic() - started < timeout_s, "sidecar never served"
                    await asyncio.sleep(0.05)


@contextlib.contextmanager
def running_process(config_path: Path, log_path: Path, address: str) -> Iterator[SidecarProcess]:
    """A started :class:`SidecarProcess`, stopped when the block exits."""
    proc = SidecarProcess(config_path, log_path, address)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def succeeded_attempts(log_path: Path) -> Counter[str]:
    """Attempts that ended ``succeeded``, per job id, over every incarnation in the log."""
    counts: Counter[str] = Counter()
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"job_attempt_finished"' not in line:
            continue
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("outcome") == "succeeded":
                counts[str(entry.get("job_id"))] += 1
    return counts
