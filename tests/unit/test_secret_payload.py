"""Issue 15 item 8: which secret payloads give a registry its credentials, and how others are refused.

A refusal names the payload's shape (keys, hosts, sizes), never a value it holds.
"""

from __future__ import annotations

import base64
import json

import pytest

from sidecar.secrets import MAX_SECRET_BYTES, PayloadOwner, credentials_from

VALUE = "pa55-Wr0ng-Val"
HARBOR = PayloadOwner(name="harbor", host="harbor.example:8443")


def _docker(host: str, user: str, password: str) -> bytes:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": auth}}}).encode()


@pytest.mark.parametrize(
    ("payload", "owner", "expected"),
    [
        (b'{"username": "bot", "password": "pw"}', HARBOR, ("bot", "pw")),
        (b'{"token": "tok"}', HARBOR, ("oauth2", "tok")),
        (b'{"token": "tok", "username": "ci"}', HARBOR, ("ci", "tok")),
        (b'{"password": "pw"}', PayloadOwner("harbor", "h", username="cfg"), ("cfg", "pw")),
        (_docker("https://harbor.example:8443/v2/", "bot", "p:w"), HARBOR, ("bot", "p:w")),
        (
            json.dumps({"auths": {"harbor.example:8443": {"username": "u", "password": "p"}}}),
            HARBOR,
            ("u", "p"),
        ),
        (
            _docker("https://index.docker.io/v1/", "hubuser", "hubpw"),
            PayloadOwner("hub", "registry-1.docker.io"),
            ("hubuser", "hubpw"),
        ),
        (  # one secret for several registries, keyed by registry name
            json.dumps({"harbor": {"username": "a", "password": "b"}, "other": {"token": "t"}}),
            HARBOR,
            ("a", "b"),
        ),
        (b"  plain-pw\n", PayloadOwner("harbor", "h", username="bot"), ("bot", "plain-pw")),
        (b"ghp_tok", PayloadOwner("gh", "ghcr.io", token_type=True), ("oauth2", "ghp_tok")),
    ],
    ids=[
        "user-password",
        "token",
        "token-user",
        "password-config-user",
        "docker-auth",
        "docker-user-password",
        "docker-hub",
        "by-registry",
        "plain",
        "plain-token",
    ],
)
def test_accepted_payloads(
    payload: bytes | str, owner: PayloadOwner, expected: tuple[str, str]
) -> None:
    raw = payload.encode() if isinstance(payload, str) else payload
    assert credentials_from(raw, owner) == expected


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", "is empty"),
        (b"\xff\xfe" + VALUE.encode(), "not UTF-8"),
        (b'{"username": "u", "password": "' + VALUE.encode() + b'"', "not valid JSON (line 1"),
        (b'["' + VALUE.encode() + b'"]', "no auth.username"),  # not an object: plain text
        (json.dumps({"user": "u", "pass": VALUE}).encode(), 'no "username"/"password"'),
        (json.dumps({"username": "u", "password": ""}).encode(), '"password" must be'),
        (_docker("elsewhere.example", "u", VALUE), "no entry for harbor.example:8443"),
        (json.dumps({"auths": {"harbor.example:8443": {"auth": VALUE}}}).encode(), "not base64"),
        (VALUE.encode(), "no auth.username"),
        (f"{VALUE}\nsecond".encode(), "several lines"),
        (b"x" * (MAX_SECRET_BYTES + 1), "more than the 65536 allowed"),
    ],
    ids=[
        "empty",
        "binary",
        "truncated-json",
        "json-array",
        "wrong-keys",
        "empty-password",
        "docker-other-host",
        "docker-bad-auth",
        "plain-without-user",
        "multi-line",
        "too-large",
    ],
)
def test_unusable_payloads_are_refused_without_quoting_them(payload: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=r".") as caught:
        credentials_from(payload, HARBOR)
    message = str(caught.value)
    assert problem in message
    assert VALUE not in message


def test_only_a_json_object_is_read_as_json() -> None:
    # Only an object is JSON here: an array is one line of text, a password, for auth.username.
    owner = PayloadOwner("harbor", "h", username="bot")
    assert credentials_from(b'["a"]', owner) == ("bot", '["a"]')
