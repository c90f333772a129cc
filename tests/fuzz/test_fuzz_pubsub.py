"""Fuzzed Pub/Sub pushes and ``gcr`` messages: an event or a 4xx naming the problem, never a crash.

``parse_push`` and ``gcr_event`` are pure, so they are fuzzed directly: arbitrary bodies, envelopes
with fuzzed fields, and well-formed envelopes whose base64 ``data`` is a fuzzed gcr message. Either
a RegistryEvent comes out whose repository, tag and digest obey the reference grammar (so nothing
odd reaches the inbox), or WebhookRejected with a 400/413 and a message. Then the real push
endpoint of a real sidecar gets the same bodies and fuzzed tokens: 200, 400, 401 or 413 with an
error, never a 500, and a genuine push is still recorded after each.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sidecar.config import PubSubSettings, RegistryConfig, WebhookSettings, load_config
from sidecar.errors import WebhookRejected
from sidecar.model.decision import RegistryFacts
from sidecar.webhooks import gcr_event, parse_push
from tests.support.fuzz import CASES_CONFIG, examples, json_values, nasty_text
from tests.support.pubsub import gcr_data, push_envelope
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar

# Only the endpoint tests are async; they share the module's sidecar and event loop.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

SECRET = "fuzz-secret"
TOKEN = "fuzz-push-token"
CASES_HOST = "127.0.0.1:1"  # every registry of the cases inventory is configured at this endpoint

HOST = "us-east1-docker.pkg.dev"
DIGEST = "sha256:" + "9a" * 32
REGISTRIES = (
    RegistryConfig(name="ar", facts=RegistryFacts("ar", "us-east1", "ci"), endpoint=f"https://{HOST}"),
)  # fmt: skip
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")

_field = st.one_of(nasty_text, json_values)
_reference = st.one_of(
    st.just(f"{HOST}/proj/repo/app"),
    st.builds(lambda t: f"{HOST}/{t}", nasty_text),
    nasty_text,
)
_data = st.fixed_dictionaries(
    {},
    optional={
        "action": st.one_of(st.sampled_from(["INSERT", "DELETE"]), _field),
        "digest": st.one_of(
            st.builds(lambda r: f"{r}@{DIGEST}", _reference),
            st.builds(lambda r, d: f"{r}@{d}", _reference, nasty_text),
            _field,
        ),
        "tag": st.one_of(
            st.builds(lambda r: f"{r}:v1", _reference),
            st.builds(lambda r, t: f"{r}:{t}", _reference, nasty_text),
            _field,
        ),
    },
)
_data_bytes = st.one_of(
    _data.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
)


def _envelope(data: object, message_id: object, attributes: object) -> bytes:
    message = {"data": data, "messageId": message_id, "attributes": attributes}
    return json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"}).encode()


_bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(_envelope, _field, _field, _field),
    st.builds(
        _envelope,
        _data_bytes.map(lambda raw: base64.b64encode(raw).decode()),
        st.one_of(st.just("123456"), _field),
        st.one_of(st.just({}), _field),
    ),
    st.just(b'{"message": ' * 3000 + b"}" * 3000),
)


@settings(max_examples=examples(500))
@given(body=_bodies)
@example(body=_envelope(base64.b64encode(b'{"action":"INSERT","tag":"x/y:z"}').decode(), "1", {}))
@example(body=_envelope("@@@", "1", {}))
def test_a_push_becomes_a_clean_event_or_a_4xx(body: bytes) -> None:
    try:
        registry, event = gcr_event(parse_push(body), REGISTRIES)
    except WebhookRejected as exc:
        assert exc.status in (400, 413) and exc.message, exc
        return
    assert registry.name == "ar"
    assert event.id.startswith("pubsub:") and event.action in ("push", "delete")
    assert _REPOSITORY.match(event.repository), event
    assert event.tag or event.digest
    assert not event.digest or event.digest == DIGEST
    assert not event.tag or re.fullmatch(r"[\w][\w.-]{0,127}", event.tag), event


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    """A real sidecar serving the Pub/Sub push endpoint (token mode) on a free loopback port."""
    config = isolated_config(load_config(CASES_CONFIG), tmp_path_factory.mktemp("fuzz-pubsub"))
    webhook = WebhookSettings(
        listen="127.0.0.1:0", secret=SECRET, pubsub=PubSubSettings(push=True, token=TOKEN)
    )
    replication = dataclasses.replace(config.policy.replication, webhook=webhook)
    config = dataclasses.replace(
        config, policy=dataclasses.replace(config.policy, replication=replication)
    )
    async with running_sidecar(config) as running:
        yield running


async def _post(running: RunningSidecar, body: bytes, token: str | None) -> tuple[int, Any]:
    assert running.sidecar.webhooks is not None
    url = f"http://127.0.0.1:{running.sidecar.webhooks.port}/v1/registry/events/pubsub"
    params = {"token": token} if token is not None else None
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, params=params) as answer,
    ):
        return answer.status, await answer.json(content_type=None)


_tokens = st.one_of(
    st.just(TOKEN), st.none(), st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E))
)


@in_module_loop
@settings(max_examples=examples(40))
@given(body=_bodies, token=_tokens)
async def test_endpoint_answers_4xx_naming_the_problem_never_500(
    sidecar: RunningSidecar, body: bytes, token: str | None
) -> None:
    status, answer = await _post(sidecar, body, token)
    assert status in (200, 400, 401, 413), (status, answer)
    if status != 200:
        assert isinstance(answer, dict) and answer.get("error"), answer
    genuine = push_envelope(
        gcr_data("INSERT", f"{CASES_HOST}/team/app", digest=DIGEST, tag="dev-1"),
        message_id=str(uuid.uuid4().int)[:18],
    )
    assert await _post(sidecar, genuine, TOKEN) == (200, {"recorded": 1})
