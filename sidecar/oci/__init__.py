"""Async OCI distribution client: one kept-alive session per registry, auth, TLS and rate limits.

Public API: :class:`RegistryClient` (one registry), :class:`RegistryClients` (the inventory),
the records :class:`Manifest` and :class:`Descriptor`, the media-type constants, and
:func:`count_requests` (the requests of one task and its subtasks, e.g. one copy).
"""

from __future__ import annotations

from sidecar.oci._auth import aws_session, parse_challenge
from sidecar.oci._client import COSIGN_TAG_TYPES, REF_NAME, RegistryClient
from sidecar.oci._http import count_requests
from sidecar.oci._media import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    digest_of,
    fallback_tag,
)
from sidecar.oci._pool import RegistryClients

__all__ = [
    "COSIGN_TAG_TYPES",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "REF_NAME",
    "Descriptor",
    "Manifest",
    "RegistryClient",
    "RegistryClients",
    "aws_session",
    "count_requests",
    "digest_of",
    "fallback_tag",
    "parse_challenge",
]
