#!/usr/bin/env bash
# One-time (idempotent) setup: Debian packages (docker-registry, skopeo, PostgreSQL), the pinned Go
# tools in the cache outside the checkout, and a Python virtual environment in .venv with the sidecar
# installed in editable mode plus its dev tools, all at the versions of requirements.lock.
# Safe to run again: every step skips what is already present at the right version.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
command -v go >/dev/null || { echo "setup: Go is required to build OPA and the other pinned tools" >&2; exit 1; }

scripts/install-system.sh
scripts/install-tools.sh >/dev/null

# The environment is exactly requirements.lock (pinned versions, verified hashes) plus the sidecar
# itself in editable mode, built without build isolation so its build backend is the locked one too.
# When the lock or pyproject.toml changes the venv is made anew, so no stale package survives.
stamp=.venv/.setup-stamp
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating .venv from requirements.lock (pip --require-hashes)" >&2
  rm -rf .venv
  "$python" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
    -r requirements.lock >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
    -e . >&2
  .venv/bin/python -m pip check >&2
  echo "$want" > "$stamp"
fi
