"""A real kube-apiserver on a real etcd, envtest-style, for the chart's server-side dry runs.

Both binaries are built at pinned versions by scripts/install-tools.sh (etcd v3.7.3,
kube-apiserver v1.37.2; tools/etcd and tools/kube-apiserver). The session fixture ``kube_api``
starts etcd (loopback, free ports, data in a temp dir, no fsync: nothing here must survive) and
kube-apiserver (loopback only, a serving certificate from our own test CA, a static admin token in
``system:masters``, RBAC on, a service-account key pair generated here), waits for ``/readyz``,
creates the namespace the chart renders into, loads the ServiceMonitor CRD
(tests/fixtures/crds/, pinned) and waits until it is Established and served. No controller manager runs:
nothing is ever scheduled, the tests only ask the API server whether it would accept an object.

The API is spoken with the standard library's http.client over TLS verified against our own CA (the
kubernetes Python client would be a dependency for a dozen requests).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecar.tools import find_tool
from tests.support.admin import tls_material
from tests.support.ports import free_ports

__all__ = [
    "NAMESPACE",
    "SERVICEMONITOR_CRD",
    "KubeAPI",
    "KubeAnswer",
    "KubeStartError",
    "kube_api",
    "running_kube_api",
]

_HOST = "127.0.0.1"
_STARTUP_ATTEMPTS = (
    3  # a picked port can be taken by someone else before etcd/the API server binds it
)
_DRY_RUN = "dryRun=All&fieldManager=policy-sidecar-test&fieldValidation=Strict"
_MAX_BODY = 16 * 1024 * 1024  # no answer of a test API server is anywhere near this
SERVICEMONITOR_CRD = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "crds"
    / "monitoring.coreos.com_servicemonitors.yaml"
)
NAMESPACE = "policy"


class KubeStartError(RuntimeError):
    """etcd or kube-apiserver exited or did not become ready; the message carries the log tail."""


@dataclass(frozen=True, slots=True)
class KubeAnswer:
    """One API answer: HTTP status and the decoded JSON body (a Status object on refusal)."""

    status: int
    body: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        """The Status message of a refusal (empty for a success)."""
        return "" if self.ok else str(self.body.get("message", self.body))


@dataclass(frozen=True, slots=True)
class _Resource:
    plural: str
    namespaced: bool


@dataclass(slots=True)
class KubeAPI:
    """A running test API server: authenticated requests and kind -> resource via discovery."""

    host: str
    port: int
    token: str
    ca: Path
    log_paths: tuple[Path, ...]
    _context: ssl.SSLContext = field(init=False, repr=False)
    _resources: dict[tuple[str, str], _Resource] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._context = ssl.create_default_context(cafile=str(self.ca))

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
    ) -> KubeAnswer:
        """Send one request; return the status and JSON body whatever the status."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        conn = http.client.HTTPSConnection(self.host, self.port, context=self._context, timeout=30)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            status, raw = resp.status, resp.read(_MAX_BODY)
        finally:
            conn.close()
        try:
            decoded = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            decoded = {"message": raw.decode(errors="replace")}
        return KubeAnswer(status, decoded if isinstance(decoded, dict) else {"items": decoded})

    def discover(self) -> None:
        """(Re)read discovery: every served group version's kinds, plurals and scope."""
        versions = ["/api/v1"]
        groups = self.request("GET", "/apis").body.get("groups", [])
        versions += [f"/apis/{v['groupVersion']}" for g in groups for v in g["versions"]]
        resources: dict[tuple[str, str], _Resource] = {}
        for path in versions:
            answer = self.request("GET", path)
            if not answer.ok:
                continue
            group_version = str(answer.body["groupVersion"])
            for item in answer.body.get("resources", []):
                if "/" in item["name"]:  # a subresource (status, scale, ...)
                    continue
                key = (group_version, str(item["kind"]))
                resources[key] = _Resource(str(item["name"]), bool(item["namespaced"]))
        self._resources = resources

    def serves(self, api_version: str, kind: str) -> bool:
        """True if the last discovery listed ``kind`` in ``api_version``."""
        return (api_version, kind) in self._resources

    def collection_path(self, obj: Mapping[str, Any], namespace: str) -> str:
        """The REST path of the collection ``obj`` (apiVersion, kind) belongs to, via discovery."""
        api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
        if not self.serves(api_version, kind):
            self.discover()
        resource = self._resources.get((api_version, kind))
        if resource is None:
            raise AssertionError(f"the API server does not serve {kind} in {api_version}")
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        scope = f"/namespaces/{namespace}" if resource.namespaced else ""
        return f"{prefix}{scope}/{resource.plural}"

    def dry_run_apply(self, obj: Mapping[str, Any], namespace: str = NAMESPACE) -> KubeAnswer:
        """Server-side apply of ``obj`` (what Helm 4 and ``kubectl apply --server-side`` send),
        dry run, strict field validation."""
        path = f"{self.collection_path(obj, namespace)}/{obj['metadata']['name']}"
        return self.request(
            "PATCH",
            f"{path}?{_DRY_RUN}",
            obj,
            # JSON is YAML: the apply patch type takes either.
            content_type="application/apply-patch+yaml",
        )

    def dry_run_create(self, obj: Mapping[str, Any], namespace: str = NAMESPACE) -> KubeAnswer:
        """Create of ``obj`` (``kubectl create``), dry run, strict field validation."""
        return self.request("POST", f"{self.collection_path(obj, namespace)}?{_DRY_RUN}", obj)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _service_account_keys(directory: Path) -> tuple[Path, Path]:
    """An RSA key pair for signing and verifying service-account tokens (never used by a test)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = directory / "sa.key", directory / "sa.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _wait(
    proc: subprocess.Popen[bytes], log: Path, ready: Any, timeout_s: float, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        if proc.poll() is not None:
            raise KubeStartError(f"{what} exited with {proc.returncode}:\n{_log_tail(log)}")
        try:
            if ready():
                return
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as exc:
            last = repr(exc)
        if time.monotonic() >= deadline:
            raise KubeStartError(f"{what} not ready after {timeout_s}s ({last}):\n{_log_tail(log)}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _lost_port_race(*logs: Path) -> bool:
    return any("address already in use" in _log_tail(log, 400) for log in logs)


@contextlib.contextmanager
def _etcd(workdir: Path, timeout_s: float) -> Iterator[tuple[str, Path]]:
    """Start etcd on loopback; yield its client URL and log path."""
    binary = find_tool("etcd")
    for attempt in range(1, _STARTUP_ATTEMPTS + 1):
        client_port, peer_port = free_ports(2)
        client, peer = f"http://{_HOST}:{client_port}", f"http://{_HOST}:{peer_port}"
        log = workdir / f"etcd-{attempt}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    str(binary),
                    "--name=test",
                    f"--data-dir={workdir / f'etcd-data-{attempt}'}",
                    f"--listen-client-urls={client}",
                    f"--advertise-client-urls={client}",
                    f"--listen-peer-urls={peer}",
                    f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=test={peer}",
                    # A throwaway store: fsync would only slow every test write down.
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:

            def ready(port: int = client_port) -> bool:
                conn = http.client.HTTPConnection(_HOST, port, timeout=2)
                try:
                    conn.request("GET", "/health")
                    body = conn.getresponse().read(4096)
                finally:
                    conn.close()
                return bool(json.loads(body).get("health") == "true")

            try:
                _wait(proc, log, ready, timeout_s, "etcd")
            except KubeStartError:
                if _lost_port_race(log) and attempt < _STARTUP_ATTEMPTS:
                    continue
                raise
            yield client, log
            return
        finally:
            _stop(proc)
    raise AssertionError("unreachable: the last attempt either yields or raises")


@contextlib.contextmanager
def running_kube_api(workdir: Path, *, startup_timeout_s: float = 120.0) -> Iterator[KubeAPI]:
    """Start etcd and kube-apiserver in ``workdir``; yield the API when ready; always stop both."""
    binary = find_tool("kube-apiserver")
    workdir.mkdir(parents=True, exist_ok=True)
    pki = tls_material(workdir / "pki")
    sa_key, sa_pub = _service_account_keys(workdir)
    token = secrets.token_urlsafe(24)
    tokens = workdir / "tokens.csv"
    tokens.write_text(f'{token},admin,admin-uid,"system:masters"\n', encoding="utf-8")
    with _etcd(workdir, startup_timeout_s) as (etcd_url, etcd_log):
        for attempt in range(1, _STARTUP_ATTEMPTS + 1):
            (port,) = free_ports(1)
            log = workdir / f"kube-apiserver-{attempt}.log"
            api = KubeAPI(_HOST, port, token, pki.ca, (etcd_log, log))
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [
                        str(binary),
                        f"--etcd-servers={etcd_url}",
                        # Each attempt its own etcd prefix: a failed start leaves nothing behind.
                        f"--etcd-prefix=/registry-{attempt}",
                        f"--bind-address={_HOST}",
                        f"--advertise-address={_HOST}",
                        # The kubernetes Service's endpoints would need a non-loopback address;
                        # no pod ever calls this API server, so nothing reconciles them.
                        "--endpoint-reconciler-type=none",
                        f"--secure-port={port}",
                        f"--cert-dir={workdir / 'cert-dir'}",
                        f"--tls-cert-file={pki.server_cert}",
                        f"--tls-private-key-file={pki.server_key}",
                        f"--token-auth-file={tokens}",
                        "--authorization-mode=RBAC",
                        "--service-cluster-ip-range=10.96.0.0/24",
                        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                        f"--service-account-signing-key-file={sa_key}",
                        f"--service-account-key-file={sa_pub}",
                        # No controller manager runs here: the ServiceAccount admission plugin
                        # would wait for the token controller's default ServiceAccount.
                        "--disable-admission-plugins=ServiceAccount",
                        "--profiling=false",
                        "--v=0",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            try:
                try:
                    _wait(
                        proc,
                        log,
                        lambda a=api: a.request("GET", "/readyz").status == 200,
                        startup_timeout_s,
                        "kube-apiserver",
                    )
                except KubeStartError:
                    if _lost_port_race(log) and attempt < _STARTUP_ATTEMPTS:
                        continue
                    raise
                yield api
                return
            finally:
                _stop(proc)
    raise AssertionError("unreachable: the last attempt either yields or raises")


def _load_crd(api: KubeAPI, path: Path, timeout_s: float = 60.0) -> None:
    """Create the CRD in ``path`` and wait until it is Established and its kind is discovered."""
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    answer = api.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert answer.ok, f"the API server refused {path.name}: {answer.message}"
    name = crd["metadata"]["name"]
    group_version = f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}"
    kind = crd["spec"]["names"]["kind"]
    deadline = time.monotonic() + timeout_s
    while True:
        got = api.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = (got.body.get("status") or {}).get("conditions") or []
        established = any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
        if established:
            api.discover()
            if api.serves(group_version, kind):
                return
        if time.monotonic() >= deadline:
            raise KubeStartError(f"CRD {name} not Established and served after {timeout_s}s")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    """A kube-apiserver on etcd with namespace ``policy`` and the ServiceMonitor CRD loaded."""
    workdir = tmp_path_factory.mktemp("kube")
    with running_kube_api(workdir) as api:
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        answer = api.request("POST", "/api/v1/namespaces", namespace)
        assert answer.ok, answer.message
        _load_crd(api, SERVICEMONITOR_CRD)
        yield api
