"""Every object the Helm chart renders is accepted by a real kube-apiserver (server-side dry run).

`helm template` runs for the chart's defaults, every values example in deploy/helm/examples, and
the switches no example turns on; each rendered object is sent as a server-side apply (what Helm 4
installs with) and as a create, both with ``dryRun=All`` and ``fieldValidation=Strict``, to the
kube-apiserver of tests/support/kube.py (kube-apiserver v1.37.2 on etcd v3.7.3, the ServiceMonitor
CRD of prometheus-operator v0.95.2 loaded). The API server runs its own decoding, defaulting,
validation and admission on each object, so a misspelt field, a bad quantity, an invalid port or
label, or a ServiceMonitor that the CRD's schema refuses fails here, not at `helm install` time. The
broken manifests below prove the check can fail.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.tools import find_tool
from tests.support.kube import NAMESPACE, KubeAPI

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "policy-sidecar"
EXAMPLES = sorted((ROOT / "deploy" / "helm" / "examples").glob("*.yaml"))
# The switches no example turns on (the bundle server, client certificates on the admin listener,
# restricted egress, a NodePort Service...), on top of an example of each shape.
_SWITCHES = (
    "bundleServer.enabled=true",
    "bundleServer.existingSecret=policy-sidecar-bundles",
    "bundleServer.readToken=true",
    "networkPolicy.restrictEgress=true",
    "service.type=NodePort",
)
# What is rendered and dry-run: name -> (values file or None for the defaults, --set items).
RENDERS: dict[str, tuple[Path | None, tuple[str, ...]]] = {
    "defaults": (None, ()),
    **{example.stem: (example, ()) for example in EXAMPLES},
    "single-every-switch": (
        ROOT / "deploy" / "helm" / "examples" / "single-pod-sqlite.yaml",
        (*_SWITCHES, "persistence.storageClassName=standard"),
    ),
    "replicated-every-switch": (
        ROOT / "deploy" / "helm" / "examples" / "replicated-postgresql.yaml",
        (*_SWITCHES, "admin.clientCA=true"),
    ),
}
_SOURCE = re.compile(r"^# Source: policy-sidecar/templates/(\S+)$", re.MULTILINE)


def _helm_env(home: Path) -> dict[str, str]:
    """Helm's cache and config in the test's temp dir: nothing of a developer's own Helm is read."""
    env = dict(os.environ)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(home / var.lower())
    return env


def _render(values: Path | None, sets: tuple[str, ...], helm_home: Path) -> str:
    """`helm template` of the chart as release `policy-sidecar` in namespace `policy`."""
    args = [str(find_tool("helm")), "template", "policy-sidecar", str(CHART)]
    args += ["--namespace", NAMESPACE]
    if values is not None:
        args += ["--values", str(values)]
    for item in sets:
        args += ["--set", item]
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=120, check=False, env=_helm_env(helm_home)
    )
    assert proc.returncode == 0, f"helm template {values} {sets}:\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The rendered manifests of each entry of RENDERS, by name."""
    home = tmp_path_factory.mktemp("helm-home")
    return {name: _render(values, sets, home) for name, (values, sets) in RENDERS.items()}


def _objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _object(rendered: dict[str, str], example: str, kind: str) -> dict[str, Any]:
    found = [o for o in _objects(rendered[example]) if o["kind"] == kind]
    assert found, f"{example} renders no {kind}"
    return copy.deepcopy(found[0])


@pytest.mark.parametrize("name", RENDERS)
def test_every_rendered_object_is_accepted_by_the_api_server(
    name: str, rendered: dict[str, str], kube_api: KubeAPI
) -> None:
    objects = _objects(rendered[name])
    assert objects
    refused = []
    for obj in objects:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        for how, answer in (
            ("server-side apply", kube_api.dry_run_apply(obj)),
            ("create", kube_api.dry_run_create(obj)),
        ):
            if not answer.ok:
                refused.append(f"{what} ({how}): HTTP {answer.status}: {answer.message}")
                continue
            # A dry run answers with the object as it would be stored (defaults filled in).
            assert answer.body["kind"] == obj["kind"]
            assert answer.body["metadata"]["name"] == obj["metadata"]["name"]
    assert not refused, "\n".join(refused)


def test_the_examples_render_every_template(rendered: dict[str, str]) -> None:
    """The dry runs above cover every template: each is rendered by at least one example."""
    templates = {p.name for p in (CHART / "templates").iterdir() if p.suffix == ".yaml"}
    sources = {name for text in rendered.values() for name in _SOURCE.findall(text)}
    assert templates - sources == set(), "templates no example renders"


@dataclass(frozen=True, slots=True)
class Broken:
    """One deliberate mistake: ``value`` at dotted ``path`` of the first rendered ``kind``."""

    kind: str
    path: str
    value: Any
    message: str  # what the API server's refusal names


BROKEN = {
    # Strict field validation: a misspelt field is an error, not silently dropped.
    "unknown-field": Broken(
        "Deployment",
        "spec.template.spec.containers.0.resourcez",
        {"limits": {"memory": "1Gi"}},
        "resourcez",
    ),
    "bad-quantity": Broken(
        "Deployment",
        "spec.template.spec.containers.0.resources.limits.memory",
        "lots",
        "quantities must match the regular expression",
    ),
    "bad-port": Broken("Service", "spec.ports.0.port", 70000, "must be between 1 and 65535"),
    "bad-label": Broken(
        "PodDisruptionBudget",
        "spec.selector.matchLabels",
        {"app.kubernetes.io/name": "-not a label-"},
        "a valid label must be",
    ),
    # The CRD's OpenAPI schema is enforced: a ServiceMonitor is not stored as free-form JSON.
    "crd-unknown-field": Broken(
        "ServiceMonitor",
        "spec.endpoints.0.portt",
        "metrics",
        "portt",
    ),
    "crd-enum": Broken(
        "ServiceMonitor", "spec.endpoints.0.scheme", "gopher", "spec.endpoints[0].scheme"
    ),
}


def _set(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set ``value`` at a dotted path (integers index lists) and return ``obj``."""
    *parents, last = path.split(".")
    node: Any = obj
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    return obj


@pytest.mark.parametrize("case", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_manifest_is_refused_and_the_server_keeps_serving(
    case: Broken, rendered: dict[str, str], kube_api: KubeAPI
) -> None:
    example = "replicated-postgresql"  # renders every kind above, ServiceMonitor included
    good = _object(rendered, example, case.kind)
    broken = _set(copy.deepcopy(good), case.path, case.value)
    created = kube_api.dry_run_create(broken)
    assert created.status in {400, 422}, created.body
    assert case.message in created.message
    # Server-side apply refuses it too, though with HTTP 500: it fails to convert the apply
    # configuration to the typed object ("failed to create typed patch object ... field not
    # declared in schema") before validation would answer 4xx.
    applied = kube_api.dry_run_apply(broken)
    assert not applied.ok, applied.body
    assert case.message in applied.message
    # The refusal is about that object only: the unbroken one is still accepted.
    assert kube_api.dry_run_apply(good).ok
    assert kube_api.dry_run_create(good).ok


@pytest.mark.parametrize(
    ("item", "message"),
    [
        # "GB" is not a Kubernetes quantity suffix (G or Gi are).
        ("resources.limits.memory=1GB", "quantities must match the regular expression"),
        ("podLabels.team=-platform-", "a valid label must be"),
    ],
)
def test_a_value_that_lint_schema_and_conftest_let_through_is_refused(
    item: str, message: str, tmp_path: Path, kube_api: KubeAPI
) -> None:
    """Why the dry run exists: these values pass `helm lint --strict`, values.schema.json and our
    conftest policies, and only the API server says no."""
    home = tmp_path / "helm-home"
    lint = [str(find_tool("helm")), "lint", "--strict", str(CHART), "--set", item]
    linted = subprocess.run(
        lint, capture_output=True, text=True, timeout=120, check=False, env=_helm_env(home)
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
    text = _render(None, (item,), home)
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(text, encoding="utf-8")
    policy = ROOT / "deploy" / "helm" / "policy"
    conftest = [str(find_tool("conftest")), "test", "--no-color", "--policy", str(policy)]
    passed = subprocess.run(
        [*conftest, str(manifest)], capture_output=True, text=True, timeout=120, check=False
    )
    assert passed.returncode == 0, passed.stdout
    answers = [kube_api.dry_run_apply(obj) for obj in _objects(text)]
    refused = [a.message for a in answers if not a.ok]
    assert len(refused) == 1 and message in refused[0], refused
