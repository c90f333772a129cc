"""``policy-sidecar bundle sign|publish`` as a user runs them (real process, real bundle server)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from sidecar.bundles.build import verify_bundle
from sidecar.bundles.keys import generate_keypair
from sidecar.bundles.server import BundleServer
from sidecar.errors import BundleError
from tests.support.opa import SigningKeys, build_test_bundle, rewrite_bundle, write_source_tree

pytestmark = pytest.mark.integration

TOKEN = "cli-upload-token"
ROOT = Path(__file__).resolve().parents[2]


async def cli(*args: str, token: str | None = TOKEN) -> tuple[int, str, str]:
    """Run ``python -m sidecar ARGS`` without blocking the loop the bundle server runs on."""
    env = {**os.environ, "POLICY_SIDECAR_BUNDLE_TOKEN": token or ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_sign_resigns_a_bundle_with_a_new_key_keeping_its_revision(
    tmp_path: Path, opa_keys: SigningKeys
) -> None:
    source = write_source_tree(tmp_path / "src")
    original = build_test_bundle(source, opa_keys, tmp_path / "a.tar.gz", revision="r-7")
    new_private, new_public = generate_keypair(tmp_path / "new-keys")
    signed = tmp_path / "signed.tar.gz"

    code, out, err = await cli(
        "bundle", "sign", str(original.path), "-o", str(signed), "--signing-key", str(new_private)
    )
    assert code == 0, err
    assert json.loads(out)["revision"] == "r-7"
    assert verify_bundle(signed, new_public).revision == "r-7"
    with pytest.raises(BundleError):
        verify_bundle(signed, opa_keys.public)  # the old key no longer vouches for it


async def test_publish_uploads_a_verified_bundle_and_refuses_a_tampered_one(
    tmp_path: Path, opa_keys: SigningKeys
) -> None:
    # The checkout's own policies: publish validates in full (opa test, schema) before uploading.
    good = build_test_bundle(ROOT, opa_keys, tmp_path / "g.tar.gz")
    tampered = rewrite_bundle(
        good.path, tmp_path / "t.tar.gz", lambda files: files.update({"data.json": b"{}"})
    )
    server = BundleServer(tmp_path / "state", token=TOKEN)
    await server.start()
    try:
        url = f"{server.url}/bundles/replication"
        key = ("--verification-key", str(opa_keys.public))
        code, out, err = await cli(
            "bundle", "publish", "--to", url, "--bundle", str(good.path), *key
        )
        assert code == 0, err
        report = json.loads(out)
        assert (report["store"], report["digest"]) == ("http", good.digest)
        assert server.etag("replication") == f'"{good.digest}"'

        code, _, err = await cli("bundle", "publish", "--to", url, "--bundle", str(tampered), *key)
        assert code == 1 and "signature" in err and "does not verify" in err
        assert server.etag("replication") == f'"{good.digest}"'  # never uploaded

        code, _, err = await cli(
            "bundle", "publish", "--to", url, "--bundle", str(good.path), *key, token=None
        )
        assert code == 2 and "token" in err
    finally:
        await server.stop()
