#!/usr/bin/env bash
# One-time (idempotent) setup: Debian packages (docker-registry, skopeo, PostgreSQL), the pinned Go
# tools in the cache outside the checkout, and a Python virtual environment in .venv with the sidecar
# installed in editable mode plus its dev tools.
# Safe to run again: every step skips what is already present at the right version.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
command -v go >/dev/null || { echo "setup: Go is required to build OPA and the other pinned tools" >&2; exit 1; }

scripts/install-system.sh
scripts/install-tools.sh >/dev/null

stamp=.venv/.setup-stamp
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating .venv and installing the sidecar (pip install -e .[dev])" >&2
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e '.[dev]' >&2
  echo "$want" > "$stamp"
fi
