"""The Helm chart (deploy/helm/policy-sidecar) renders what a platform team can apply.

Each values example is linted and rendered by the pinned Helm; the manifests pass our own
conftest policies (deploy/helm/policy: no root, read-only root filesystem, limits, probes, pinned
images, one SQLite writer); the sidecar config the chart renders loads with the sidecar's own
config loader and passes the inventory checks (rego/inventory); value combinations that cannot
work are refused by `helm template` with the value to change. The server-side dry run of every
rendered object against a real kube-apiserver is tests/integration/test_helm_apiserver.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.config import load_config
from sidecar.tools import find_tool
from tests.support.admin import tls_material

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "policy-sidecar"
EXAMPLES = ROOT / "deploy" / "helm" / "examples"
POLICY = ROOT / "deploy" / "helm" / "policy"
SINGLE = EXAMPLES / "single-pod-sqlite.yaml"
REPLICATED = EXAMPLES / "replicated-postgresql.yaml"
RENDERED_SINGLE = ROOT / "deploy" / "k8s" / "sidecar.yaml"
ADMIN_TLS_MOUNT = "/etc/policy-sidecar/admin-tls"
# What the Secrets of the examples hold, for loading the rendered sidecar config.
SECRET_ENV = {
    "POLICY_SIDECAR_STORE_DSN": "postgresql://sidecar:pw@postgres.db.svc:5432/sidecar",
    "POLICY_SIDECAR_WEBHOOK_SECRET": "webhook-secret",
    "POLICY_SIDECAR_BUNDLE_TOKEN": "upload-token",
}


@pytest.fixture(autouse=True)
def _helm_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Helm's cache and config in the test's temp dir: nothing of a developer's own Helm is read."""
    home = tmp_path_factory.getbasetemp() / "helm-home"
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        monkeypatch.setenv(var, str(home / var.lower()))


def _helm(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(find_tool("helm")), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert proc.returncode == 0, f"helm {args}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def render(*values: Path, sets: tuple[str, ...] = ()) -> str:
    """`helm template` of the chart as release `policy-sidecar` in namespace `policy`."""
    args: list[str | Path] = ["template", "policy-sidecar", CHART, "--namespace", "policy"]
    for path in values:
        args += ["--values", path]
    for item in sets:
        args += ["--set", item]
    return _helm(*args).stdout


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _conftest(policy: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_tool("conftest")), "test", "--no-color", "--policy", str(policy), str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _sidecar_config(
    docs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The rendered ConfigMap's sidecar.yaml, loaded by the sidecar with the Secrets' values."""
    (configmap,) = _by_kind(docs, "ConfigMap")
    # The admin TLS Secret's mount: a real certificate and key where the pod would have them.
    mount = tmp_path / "admin-tls"
    pki = tls_material(tmp_path / "pki")
    mount.mkdir()
    (mount / "tls.crt").write_bytes(pki.server_cert.read_bytes())
    (mount / "tls.key").write_bytes(pki.server_key.read_bytes())
    (mount / "ca.crt").write_bytes(pki.ca.read_bytes())
    text = configmap["data"]["sidecar.yaml"].replace(ADMIN_TLS_MOUNT, str(mount))
    path = tmp_path / "sidecar.yaml"
    path.write_text(text, encoding="utf-8")
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    assert _conftest(ROOT / "rego" / "inventory", path).returncode == 0
    return load_config(path)


def test_the_chart_and_every_example_lint() -> None:
    _helm("lint", "--strict", CHART)
    for example in (SINGLE, REPLICATED):
        _helm("lint", "--strict", CHART, "--values", example)


@pytest.mark.parametrize(
    "values", [(), (SINGLE,), (REPLICATED,)], ids=["defaults", "single", "replicated"]
)
def test_rendered_manifests_pass_our_conftest_policies(
    values: tuple[Path, ...], tmp_path: Path
) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(render(*values), encoding="utf-8")
    proc = _conftest(POLICY, rendered)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The policies do refuse: an image without a tag and a root container fail them.
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        render(*values, sets=("image.tag=latest", "securityContext.runAsNonRoot=false")),
        encoding="utf-8",
    )
    refused = _conftest(POLICY, bad)
    assert refused.returncode != 0
    assert "has no pinned tag" in refused.stdout and "may run as root" in refused.stdout


def test_single_pod_keeps_sqlite_state_on_a_volume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _docs(render(SINGLE))
    (deployment,) = _by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["policy-sidecar"]  # managed OPA inside
    (claim,) = _by_kind(docs, "PersistentVolumeClaim")
    state = next(v for v in pod["volumes"] if v["name"] == "state")
    assert state["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "state")
    config = _sidecar_config(docs, tmp_path, monkeypatch)
    assert config.policy.state_dir == mount["mountPath"]
    assert config.policy.replication.store == ""  # SQLite under state_dir
    assert config.policy.bundle.output.startswith(mount["mountPath"])
    assert config.policy.opa.address is None
    assert config.policy.replication.webhook.listen == "0.0.0.0:8080"
    assert not _by_kind(docs, "HorizontalPodAutoscaler")
    services = {
        s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in _by_kind(docs, "Service")
    }
    assert services == {
        "policy-sidecar-grpc": 50051,
        "policy-sidecar-metrics": 9464,
        "policy-sidecar-webhook": 8080,
    }


def test_replicated_fleet_shares_postgresql_and_runs_opa_beside_each_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _docs(render(REPLICATED))
    (deployment,) = _by_kind(docs, "Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    (hpa,) = _by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 3
    assert not _by_kind(docs, "PersistentVolumeClaim")
    pod = deployment["spec"]["template"]["spec"]
    sidecar, opa = pod["containers"]
    dsn = next(e for e in sidecar["env"] if e["name"] == "POLICY_SIDECAR_STORE_DSN")
    assert dsn["valueFrom"]["secretKeyRef"] == {"name": "policy-sidecar-store", "key": "dsn"}
    assert sidecar["startupProbe"]["grpc"]["port"] == 50051
    assert "--diagnostic-addr=0.0.0.0:8282" in opa["args"]
    assert opa["readinessProbe"]["httpGet"]["path"] == "/health?bundles"
    config = _sidecar_config(docs, tmp_path, monkeypatch)
    assert config.policy.replication.store == SECRET_ENV["POLICY_SIDECAR_STORE_DSN"]
    assert config.policy.opa.address == "http://127.0.0.1:8181"
    assert config.policy.admin.listen == "0.0.0.0:8443"
    assert config.policy.admin.tls.cert_file.endswith("admin-tls/tls.crt")
    (configmap,) = _by_kind(docs, "ConfigMap")
    opa_config = yaml.safe_load(configmap["data"]["opa.yaml"])
    assert opa_config["bundles"]["replication"]["signing"] == {"keyid": "replication"}
    (account,) = _by_kind(docs, "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
        ":role/policy-sidecar"
    )
    (monitor,) = _by_kind(docs, "ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics", "opa-metrics"]
    assert _by_kind(docs, "PodDisruptionBudget") and _by_kind(docs, "NetworkPolicy")
    services = {s["metadata"]["name"] for s in _by_kind(docs, "Service")}
    assert services == {
        f"policy-sidecar-{p}" for p in ("grpc", "metrics", "webhook", "admin", "opa-metrics")
    }


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("replicaCount=2",), "needs store.postgresql.enabled"),
        (("autoscaling.enabled=true",), "needs store.postgresql.enabled"),
        (("mode=sidecar",), "mode: sidecar needs opa.config"),
        (("store.postgresql.enabled=true",), "needs store.postgresql.existingSecret"),
        # values.schema.json: a misspelt or mistyped value is named.
        (("mode=sideways",), "value must be one of 'sidecar', 'standalone'"),
        (("replicaCont=2",), "additional properties 'replicaCont' not allowed"),
        (("ports.grpc=0",), "/ports/grpc"),
    ],
)
def test_values_that_cannot_work_are_refused(sets: tuple[str, ...], message: str) -> None:
    args: list[str | Path] = ["template", "policy-sidecar", CHART]
    for item in sets:
        args += ["--set", item]
    proc = _helm(*args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_deploy_k8s_manifest_is_the_rendered_single_pod_example() -> None:
    header, _, body = RENDERED_SINGLE.read_text(encoding="utf-8").partition("\n---\n")
    assert "scripts/render-k8s.sh" in header
    assert body.strip() == render(SINGLE).strip().removeprefix("---").strip()
