"""Issue 14: forged and malformed events on every registry-format endpoint of a real sidecar.

Each attack goes through the real HTTP endpoint (Harbor, Docker Hub, Quay, GitHub, and the
Distribution endpoint GitLab uses): a missing or wrong secret, a GitHub signature of another
body, an oversized body, fields of the wrong type, too many images in one request, an image
attributed to a registry outside the inventory. Each must get a clear 4xx naming the problem,
nothing may be recorded in the inbox, and afterwards a genuine event is still recorded and an
ordinary Decide is still answered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port
from tests.support.security import (
    CLOSED,
    assert_serving,
    attacked_sidecar,
    inventory,
    metric_value,
    registry_entry,
    sidecar_config,
)
from tests.support.sidecar import RunningSidecar
from tests.support.webhook_formats import (
    github_package,
    gitlab_envelope,
    harbor_event,
    hub_push,
    post_format,
    quay_push,
)

pytestmark = pytest.mark.integration

SECRET = "formats-shared-secret"
HOST = CLOSED.removeprefix("http://")  # the ``ci`` registry's host in the inventory
DIGEST = "sha256:" + "ab" * 32
RECEIVED = "policy_sidecar_webhook_events_received_total"


def _harbor(**changes: Any) -> dict[str, Any]:
    event = harbor_event("PUSH_ARTIFACT", HOST, "team/app", digest=DIGEST, tag="dev-1")
    event.update(changes)
    return event


def _harbor_resources(resources: Any) -> dict[str, Any]:
    event = _harbor()
    event["event_data"]["resources"] = resources
    return event


def _signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


_GITHUB = github_package(HOST, "team/app", "dev-1", DIGEST)
_GITHUB_BODY = json.dumps(_GITHUB).encode()

#: (name, source, secret used, payload, query, headers, status wanted, words the error names)
ATTACKS: list[tuple[str, str, str, Any, dict[str, str] | None, dict[str, str] | None, int, str]] = [
    ("harbor no auth", "harbor", SECRET, _harbor(), None, {"Authorization": ""}, 401, "missing"),
    ("harbor wrong secret", "harbor", "guess", _harbor(), None, None, 401, "wrong shared secret"),
    ("harbor bearer wrong", "harbor", SECRET, _harbor(), None,
     {"Authorization": "Bearer guess"}, 401, "wrong shared secret"),
    ("hub no token", "hub", SECRET, hub_push("team/app", "dev-1"), {"token": ""}, None, 401,
     "missing token"),
    ("quay wrong token", "quay", "guess", quay_push(HOST, "team/app", ["dev-1"]), None, None,
     401, "wrong shared secret"),
    ("github unsigned", "github", SECRET, _GITHUB, None, {"X-Hub-Signature-256": ""}, 401,
     "missing X-Hub-Signature-256"),
    ("github signature of another body", "github", SECRET, _GITHUB, None,
     {"X-Hub-Signature-256": _signed(b"{}")}, 401, "does not match"),
    ("github wrong secret", "github", "guess", _GITHUB, None, None, 401, "does not match"),
    ("gitlab wrong secret", "gitlab", "guess", gitlab_envelope(HOST, "team/app", "dev-1", DIGEST),
     None, None, 401, "wrong shared secret"),
    ("harbor type not a string", "harbor", SECRET, _harbor(type=7), None, None, 400,
     "type must be a string"),
    ("harbor resources not a list", "harbor", SECRET, _harbor_resources({"digest": DIGEST}), None,
     None, 400, "must be a list"),
    ("harbor resource not an object", "harbor", SECRET, _harbor_resources(["x"]), None, None, 400,
     "must be an object"),
    ("harbor digest not a digest", "harbor", SECRET,
     _harbor_resources([{"digest": "../../etc/passwd", "tag": "dev-1"}]), None, None, 400,
     "not a digest"),
    ("harbor too many resources", "harbor", SECRET,
     _harbor_resources([{"digest": DIGEST, "tag": f"dev-{i}"} for i in range(101)]), None, None,
     400, "at most 100"),
    ("harbor occur_at not a time", "harbor", SECRET, _harbor(occur_at="yesterday"), None, None,
     400, "Unix time"),
    ("harbor host outside the inventory", "harbor", SECRET,
     harbor_event("PUSH_ARTIFACT", "evil.example:5000", "team/app", digest=DIGEST, tag="dev-1"),
     None, None, 400, "unknown registry"),
    ("harbor ?registry outside the inventory", "harbor", SECRET, _harbor(), {"registry": "evil"},
     None, 400, "not in the inventory"),
    ("hub push_data not an object", "hub", SECRET,
     {"push_data": "latest", "repository": {"repo_name": "team/app"}}, None, None, 400,
     "push_data must be an object"),
    ("quay tags of the wrong type", "quay", SECRET,
     {"repository": "team/app", "docker_url": f"{HOST}/team/app", "updated_tags": [1]}, None,
     None, 400, "updated_tags[0]"),
    ("github version not an object", "github", SECRET,
     {"action": "published", "package": {"package_type": "CONTAINER", "package_version": "v1"}},
     None, None, 400, "package_version must be an object"),
    ("not JSON", "harbor", SECRET, b"\xff\xfe{{{", None, None, 400, "not JSON"),
    ("a JSON list", "quay", SECRET, b"[1, 2]", None, None, 400, "JSON object"),
]  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> tuple[dict[str, Any], str]:
    """A sidecar config with the webhook on; the ``ci`` registry is at HOST; and its URL."""
    port = free_port()
    registries = inventory()
    registries[0] = registry_entry("ci", CLOSED, environment="ci")
    doc = sidecar_config(
        registries,
        replication={"webhook": {"listen": f"127.0.0.1:{port}", "secret": SECRET}},
    )
    return doc, f"http://127.0.0.1:{port}/v1/registry/events"


async def _nothing_recorded(running: RunningSidecar) -> None:
    assert running.sidecar.parts is not None
    counts = await running.sidecar.parts.store.inbox_counts()
    assert sum(counts.values()) == 0, counts
    assert await metric_value(running, RECEIVED, {"outcome": "recorded"}) == 0


async def test_forged_and_malformed_events_get_a_clear_4xx_and_queue_nothing(
    config: tuple[dict[str, Any], str], tmp_path: Path
) -> None:
    doc, url = config
    async with attacked_sidecar(doc, tmp_path) as running:
        for name, source, secret, payload, query, headers, want, words in ATTACKS:
            status, answer = await post_format(
                url, source, secret, payload, query=query, headers=headers
            )
            assert status == want, (name, status, answer)
            assert words in answer.get("error", ""), (name, answer)
            assert SECRET not in json.dumps(answer), name  # the secret is never echoed
        await _nothing_recorded(running)
        rejected = await metric_value(running, RECEIVED, {"outcome": "unauthorized"})
        assert rejected == sum(1 for a in ATTACKS if a[6] == 401)

        # A genuine Harbor event is still recorded, and decisions are still answered.
        status, answer = await post_format(url, "harbor", SECRET, _harbor())
        assert (status, answer) == (200, {"recorded": 1})
        await assert_serving(running)


async def test_oversized_bodies_are_refused_on_every_endpoint(
    config: tuple[dict[str, Any], str], tmp_path: Path
) -> None:
    doc, url = config
    # Valid JSON, larger than the 4 MiB every endpoint accepts.
    huge = json.dumps({"padding": "x" * (5 * 1024 * 1024)}).encode()
    async with attacked_sidecar(doc, tmp_path) as running:
        for source in ("distribution", "harbor", "hub", "quay", "github"):
            status, _ = await post_format(url, source, SECRET, huge)
            assert status == 413, source
        await _nothing_recorded(running)
        await assert_serving(running)


async def test_event_types_the_sidecar_does_not_act_on_are_acknowledged_not_queued(
    config: tuple[dict[str, Any], str], tmp_path: Path
) -> None:
    """Harbor sends every event type a policy selects, GitHub a ping first: 200, nothing kept."""
    doc, url = config
    async with attacked_sidecar(doc, tmp_path) as running:
        quota = _harbor(type="QUOTA_EXCEED")
        assert await post_format(url, "harbor", SECRET, quota) == (200, {"recorded": 0})
        ping = {"zen": "Keep it logically awesome.", "hook_id": 1}
        status, answer = await post_format(
            url,
            "github",
            SECRET,
            ping,
            headers={"X-GitHub-Event": "ping"}
            | {"X-Hub-Signature-256": _signed(json.dumps(ping).encode())},
        )
        assert (status, answer) == (200, {"recorded": 0})
        await _nothing_recorded(running)
        await assert_serving(running)


async def test_a_url_token_of_its_own_opens_only_its_own_endpoint(
    config: tuple[dict[str, Any], str], tmp_path: Path
) -> None:
    """Docker Hub's token travels in the URL (proxy logs): with ``source_secrets`` a leaked one
    opens no other endpoint, and the shared secret no longer opens Hub's."""
    doc, url = config
    doc["policy"]["replication"]["webhook"]["source_secrets"] = {"hub": "hub-only-token"}
    async with attacked_sidecar(doc, tmp_path) as running:
        hub = hub_push("team/app", "dev-1")
        query = {"registry": "ci"}
        assert (await post_format(url, "hub", SECRET, hub, query=query))[0] == 401
        assert (await post_format(url, "harbor", "hub-only-token", _harbor()))[0] == 401
        await _nothing_recorded(running)
        status, answer = await post_format(url, "hub", "hub-only-token", hub, query=query)
        assert (status, answer) == (200, {"recorded": 1})
        assert (await post_format(url, "harbor", SECRET, _harbor()))[0] == 200
        await assert_serving(running)
