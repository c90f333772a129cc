"""Runs a local OPA server on a signed bundle and keeps it running (restart on death, same port).

The bundle is a local file (``--bundle``), or OPA pulls it from a bundle store as its
``config_file`` says (pull mode: OPA verifies and activates each published revision itself).

OPA's output goes to a bounded tail quoted by errors and logs, never to our stdout. Decision logs
are off (no ``decision_logs`` config); ``--skip-version-check`` is OPA 1.x's spelling of "no
telemetry" (there is no ``--disable-telemetry`` flag), so OPA never calls out of the pod.

Sandboxed: OPA gets a scrubbed environment (``sidecar.tools.sandbox_env`` plus the ``env`` given,
e.g. S3 signing credentials in pull mode), its REST API answers only requests carrying
:attr:`ManagedOpa.token` (see ``_api_guard``), and a bundle is checked against the sandbox
capabilities before OPA is started on it (``opa run`` takes no capabilities of its own).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import aiohttp

from sidecar.errors import BundleError, PolicyUnavailable, SidecarError
from sidecar.policy._api_guard import api_args, auth_headers, new_api_token, write_api_bundle
from sidecar.policy.opa_observability import relay_decision_log
from sidecar.tools import OPA_CAPABILITIES, sandbox_env

__all__ = ["ManagedOpa"]

_HOST = "127.0.0.1"
_POLL_S = 0.05
_CHECK_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class _Child:
    process: asyncio.subprocess.Process
    reader: asyncio.Task[None]
    started_at: float


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        # Like Go's listener, ignore TIME_WAIT leftovers of an OPA we just stopped.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


class ManagedOpa:
    """A supervised ``opa run --server`` on loopback; an async context manager."""

    def __init__(
        self,
        opa_binary: Path,
        bundle_path: Path | None,
        *,
        verification_key: Path | None,
        config_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        port: int = 0,
        startup_timeout_s: float = 30.0,
        extra_args: Sequence[str] = (),
        log: logging.Logger | None = None,
        log_level: str = "error",
        stop_grace_s: float = 5.0,
        tail_lines: int = 200,
        backoff_s: tuple[float, float] = (0.2, 5.0),
        healthy_reset_s: float = 60.0,
        on_launch: Callable[[str], Awaitable[None]] | None = None,
        api_token: str | None = None,
        decision_logs: bool = False,
    ) -> None:
        self._binary = opa_binary
        if (bundle_path is None) == (config_file is None):
            raise ValueError("give a bundle_path or a config_file (pull mode), not both")
        self._bundle = bundle_path
        self._key = verification_key
        # Pull mode: OPA's config names the store and embeds the verification key.
        self._config_file = config_file
        # Never our own environment: policies must not read the sidecar's credentials.
        self._env = sandbox_env(env)
        # Per launch of the sidecar (kept across OPA restarts and reloads, so clients keep it).
        self._token = api_token or new_api_token()
        self._api_dir: tempfile.TemporaryDirectory[str] | None = None
        self._api_bundle: Path | None = None
        self._requested_port = port
        self._port = port
        self._startup_timeout_s = startup_timeout_s
        self._extra_args = tuple(extra_args)
        self._log = log or logging.getLogger(__name__)
        # OPA logs two lines per request at "info"; "error" keeps the pipe (and our CPU) quiet.
        self._log_level = log_level
        # OPA's console decision logs, read from its output and re-logged without input/result.
        self._decision_logs = decision_logs
        self._stop_grace_s = stop_grace_s
        self._tail: collections.deque[tuple[int, str]] = collections.deque(maxlen=tail_lines)
        self._backoff_min, self._backoff_max = backoff_s
        self._healthy_reset_s = healthy_reset_s
        # Runs against every OPA we start (first start, restart, reload and its probe) once it
        # serves the bundle and before it counts as ready: state OPA keeps only in memory
        # (Data API writes such as the sensitive data) is put back here.
        self._on_launch = on_launch
        self._lock = asyncio.Lock()
        self._child: _Child | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ready = False
        self._stopping = False
        self._restarts = 0

    @property
    def url(self) -> str:
        """Return the base URL engines use; stable across restarts and reloads."""
        if not self._port:
            raise PolicyUnavailable("managed OPA has not been started: no port chosen yet")
        return f"http://{_HOST}:{self._port}"

    @property
    def token(self) -> str:
        """Return the bearer token OPA's REST API requires (send it as ``Authorization``)."""
        return self._token

    @property
    def headers(self) -> dict[str, str]:
        """Return the ``Authorization`` header for requests to this OPA."""
        return auth_headers(self._token)

    @property
    def ready(self) -> bool:
        """Return whether OPA is up and serving the bundle (false while restarting or reloading)."""
        child = self._child
        return self._ready and child is not None and child.process.returncode is None

    @property
    def restarts(self) -> int:
        """Return how many times the supervisor restarted OPA after it died."""
        return self._restarts

    @property
    def pid(self) -> int | None:
        """Return the process id of the OPA now running, if any."""
        child = self._child
        return child.process.pid if child and child.process.returncode is None else None

    @property
    def bundle_path(self) -> Path | None:
        """Return the bundle OPA serves (the last one that started successfully); None: pull mode."""
        return self._bundle

    def output_tail(self, lines: int = 30) -> str:
        """Return the last ``lines`` lines OPA printed (all processes), oldest first."""
        return "\n".join(f"[opa {pid}] {text}" for pid, text in list(self._tail)[-lines:])

    async def start(self) -> None:
        """Start OPA and wait until it serves the bundle; else PolicyUnavailable quoting OPA."""
        async with self._lock:
            if self._child is not None:
                raise PolicyUnavailable(f"managed OPA already running at {self.url}")
            self._stopping = False
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=1.0), headers=self.headers
            )
            self._api_dir = tempfile.TemporaryDirectory(prefix="opa-api-")
            try:
                self._api_bundle = write_api_bundle(Path(self._api_dir.name), self._token)
                if self._bundle is not None:
                    await self._check_sandbox(self._bundle)
                port, child = await self._first_launch()
            except BaseException:
                await self._http.close()
                self._http = None
                self._api_dir.cleanup()
                self._api_dir = None
                raise
            self._port, self._child, self._ready = port, child, True
            self._supervisor = asyncio.create_task(self._supervise(), name=f"opa-supervisor-{port}")
        self._log.info(
            "managed OPA ready at %s (pid %d, bundle %s)",
            self.url,
            child.process.pid,
            self._bundle or f"pulled as {self._config_file} says",
        )

    async def reload(self, bundle_path: Path) -> None:
        """Serve ``bundle_path`` instead, on the same port, only once OPA has accepted it.

        The new bundle is first started on a spare port (signature, compilation, activation); if
        that fails, BundleError is raised and the current bundle keeps serving untouched.
        """
        if self._config_file is not None:
            raise BundleError(
                "the managed OPA pulls its bundles from a bundle store: publish the bundle there"
            )
        async with self._lock:
            current = self._child
            if current is None or self._stopping:
                raise PolicyUnavailable("managed OPA is not running")
            await self._check_sandbox(bundle_path)
            try:
                probe = await self._launch(bundle_path, _free_port())
            except PolicyUnavailable as exc:
                raise BundleError(
                    f"bundle {bundle_path} refused by OPA; still serving {self._bundle}",
                    (exc.message,),
                ) from exc
            await self._terminate(probe)
            self._ready = False
            await self._terminate(current)
            try:
                self._child = await self._launch(bundle_path, self._port)
                self._bundle = bundle_path
            except PolicyUnavailable:
                # Unlikely after the probe (port taken meanwhile?): put the old bundle back;
                # if even that fails, the supervisor keeps retrying it.
                self._child = await self._launch(self._bundle, self._port)
                raise
            finally:
                self._ready = True  # `ready` also requires the process to be alive
        self._log.info("managed OPA at %s now serves %s", self.url, bundle_path)

    async def stop(self) -> None:
        """Stop supervising, then SIGTERM OPA (SIGKILL after the grace period); safe to repeat."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.wait([self._supervisor])  # wait() does not re-raise its cancellation
            self._supervisor = None
        async with self._lock:
            self._ready = False
            if self._child is not None:
                await self._terminate(self._child)
                self._child = None
            if self._http is not None:
                await self._http.close()
                self._http = None
            if self._api_dir is not None:
                self._api_dir.cleanup()
                self._api_dir = None

    async def __aenter__(self) -> ManagedOpa:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _supervise(self) -> None:
        backoff = self._backoff_min
        while True:
            child = self._child
            if child is None:
                return
            await child.process.wait()
            async with self._lock:
                if self._child is not child:
                    continue  # replaced on purpose by reload()
                self._ready = False
                if time.monotonic() - child.started_at >= self._healthy_reset_s:
                    backoff = self._backoff_min
                await self._drain(child)
                self._log.warning(
                    "managed OPA (pid %d) exited with %s; restarting on port %d in %.1fs\n%s",
                    child.process.pid,
                    child.process.returncode,
                    self._port,
                    backoff,
                    self._tail_of(child.process.pid),
                )
            while True:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)
                async with self._lock:
                    if self._child is not child:
                        break  # reload() already started a replacement
                    try:
                        self._child = await self._launch(self._bundle, self._port)
                    except PolicyUnavailable as exc:
                        self._log.error("managed OPA restart failed: %s", exc.message)
                        continue
                    self._restarts += 1
                    self._ready = True
                    self._log.info(
                        "managed OPA restarted at %s (pid %d, restart #%d)",
                        self.url,
                        self._child.process.pid,
                        self._restarts,
                    )
                    break

    async def _first_launch(self) -> tuple[int, _Child]:
        # A port we picked can be taken between our probe and OPA's bind: pick again.
        attempts = 1 if self._requested_port else 3
        for attempt in range(1, attempts + 1):
            port = self._requested_port or _free_port()
            try:
                return port, await self._launch(self._bundle, port)
            except PolicyUnavailable as exc:
                if attempt == attempts or "already in use" not in exc.message:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _launch(self, bundle: Path | None, port: int) -> _Child:
        """Start OPA on ``bundle`` and ``port``; return once it is ready, or clean up and raise."""
        child = await self._spawn(bundle, port)
        try:
            problem = await self._wait_ready(child, port)
            if problem is None and self._on_launch is not None:
                try:
                    await self._on_launch(f"http://{_HOST}:{port}")
                except SidecarError as exc:
                    problem = f"started, but its launch hook failed: {exc.message}"
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()  # cancelled mid-start: never leave an orphan behind
            raise
        if problem is None:
            return child
        await self._terminate(child)
        if _port_taken(port):
            # OPA reports this as a JSON dump of the bind error ("Err": 98); say it plainly.
            problem += f": {_HOST}:{port} is already in use by another process"
        raise PolicyUnavailable(
            f"OPA on {_HOST}:{port} with "
            + (f"bundle {bundle}" if bundle else f"config {self._config_file} (pull mode)")
            + f" {problem}; its output:\n"
            + (self._tail_of(child.process.pid) or "(nothing)")
        )

    async def _spawn(self, bundle: Path | None, port: int) -> _Child:
        args = [
            str(self._binary),
            "run",
            "--server",
            "--addr",
            f"{_HOST}:{port}",
            "--skip-version-check",
            "--log-level",
            self._log_level,
            "--log-format",
            # JSON lines when decision logs are read from the output; text is easier to quote.
            "json" if self._decision_logs else "text",
        ]
        if self._decision_logs:
            args += ["--set", "decision_logs.console=true"]
        if self._config_file is not None:
            # The config's `keys` verify pulled bundles; --skip-verify covers only --bundle paths.
            args += ["--config-file", str(self._config_file)]
        elif self._key is not None:
            args += [
                "--verification-key",
                str(self._key),
                "--verification-key-id",
                "default",
                "--signing-alg",
                "RS256",
            ]
        else:
            args.append("--skip-verify")  # no key configured: dev mode, signatures not checked
        if self._api_bundle is not None:
            args += api_args(self._api_bundle)
        args += [*self._extra_args, *(("--bundle", str(bundle)) if bundle else ())]
        setpriv = shutil.which("setpriv")
        if setpriv:
            # If the sidecar dies without stop() (SIGKILL, OOM), the kernel kills OPA too
            # instead of leaving it holding the port; setpriv execs, so the pid stays OPA's.
            args = [setpriv, "--pdeathsig", "KILL", "--", *args]
        try:
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self._env,
            )
        except OSError as exc:
            raise PolicyUnavailable(f"cannot start {self._binary}: {exc}") from exc
        stdout = cast(asyncio.StreamReader, process.stdout)  # PIPE was requested: never None
        reader = asyncio.create_task(self._pump(stdout, process.pid))
        return _Child(process, reader, time.monotonic())

    async def _check_sandbox(self, bundle: Path) -> None:
        """Refuse a bundle that calls a sandboxed builtin (http.send, opa.runtime…): BundleError.

        Build and validation already refuse them; this keeps a bundle that reached us any
        other way (a hand-signed file) from ever being served.
        """
        args = [str(self._binary), "check", "--capabilities", str(OPA_CAPABILITIES), "-b",
                str(bundle)]  # fmt: skip
        try:
            done = await asyncio.to_thread(
                subprocess.run,
                args,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=_CHECK_TIMEOUT_S,
                check=False,
                env=self._env,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PolicyUnavailable(f"cannot check {bundle} with {self._binary}: {exc}") from exc
        if done.returncode != 0:
            lines = (done.stderr + done.stdout).strip().splitlines()
            raise BundleError(
                f"bundle {bundle} refused by OPA: it does not compile within the policy sandbox "
                f"(capabilities {OPA_CAPABILITIES.name}); "
                + (f"still serving {self._bundle}" if self._child else "not started"),
                tuple(lines[-20:]),
            )

    async def _pump(self, stream: asyncio.StreamReader, pid: int) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the stream limit: asyncio dropped it
                self._tail.append((pid, "<over-long output line dropped>"))
                continue
            if not line:
                return
            if self._decision_logs and relay_decision_log(line):
                continue
            self._tail.append((pid, line.decode(errors="replace").rstrip()[:2000]))

    async def _wait_ready(self, child: _Child, port: int) -> str | None:
        """Poll ``/health?bundles`` until 200; return None when ready, else what went wrong."""
        if self._http is None:
            return "was abandoned: the managed OPA is being stopped"
        url = f"http://{_HOST}:{port}/health?bundles"
        deadline = time.monotonic() + self._startup_timeout_s
        while True:
            if child.process.returncode is not None:
                return f"exited with code {child.process.returncode} during startup"
            if time.monotonic() >= deadline:
                return f"was not ready within {self._startup_timeout_s:g}s" + (
                    ": no bundle activated (is one published? can OPA reach the store?)"
                    if self._config_file
                    else ""
                )
            try:
                async with self._http.get(url) as response:
                    if response.status == 200 and child.process.returncode is None:
                        return None
            except (aiohttp.ClientError, TimeoutError):
                pass  # not listening yet
            await asyncio.sleep(_POLL_S)

    async def _terminate(self, child: _Child) -> None:
        process = child.process
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), self._stop_grace_s)
            except TimeoutError:
                process.kill()
                await process.wait()
        await self._drain(child)

    async def _drain(self, child: _Child) -> None:
        await asyncio.wait([child.reader], timeout=1.0)  # the exited process's last words
        child.reader.cancel()

    def _tail_of(self, pid: int, lines: int = 30) -> str:
        return "\n".join([text for owner, text in self._tail if owner == pid][-lines:])
