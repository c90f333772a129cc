"""Fuzzed Pub/Sub pushes and ``gcr`` messages: an event or a 4xx naming the problem, never a crash.

``parse_push`` and ``gcr_event`` are pure, so they are fuzzed directly: arbitrary bodies, envelopes
with fuzzed fields, and well-formed envelopes whose base64 ``data`` is a fuzzed gcr message. Either
a RegistryEvent comes out whose repository, tag and digest obey the reference grammar (so nothing
odd reaches the inbox), or WebhookRejected with a 400/413 and a message.
"""

from __future__ import annotations

import base64
import json
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sidecar.config import RegistryConfig
from sidecar.errors import WebhookRejected
from sidecar.model.decision import RegistryFacts
from sidecar.webhooks import gcr_event, parse_push
from tests.support.fuzz import examples, json_values, nasty_text

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
