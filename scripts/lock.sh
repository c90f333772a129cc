#!/usr/bin/env bash
# Refresh requirements.lock: every Python dependency of the sidecar and its dev tools, resolved to
# exact versions with hashes, from the ranges in pyproject.toml. scripts/setup.sh installs from the
# lock only (pip --require-hashes), so nothing upstream changes the environment until this is run
# and the new lock is committed. Extra arguments go to `uv pip compile`, e.g.
#   scripts/lock.sh --upgrade-package aiohttp
# uv itself is pinned and installed once into the tool cache outside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

uv_version=0.13.9
cache=${POLICY_SIDECAR_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/policy-sidecar/tools}
uv_home="$cache/uv-$uv_version"
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if [ ! -x "$uv_home/bin/uv" ]; then
  echo "lock: installing uv $uv_version into $uv_home (first run only)" >&2
  "$python" -m venv "$uv_home"
  "$uv_home/bin/python" -m pip install -q "uv==$uv_version"
fi
# --universal: one lock for every platform (markers kept), so a developer on another OS installs
# the same versions; the hashes cover every published file of each pinned version.
exec "$uv_home/bin/uv" pip compile pyproject.toml --extra dev --universal --generate-hashes \
  --python-version 3.11 --custom-compile-command scripts/lock.sh -o requirements.lock "$@"
