#!/usr/bin/env bash
# Set everything up (idempotent) and run the whole test suite: lint, types, Rego toolchain, pytest.
# This is the README's test command and exactly what CI (.ci/run) runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$(scripts/install-tools.sh):$PATH"

echo "== ruff" >&2
ruff check sidecar tests
echo "== mypy --strict" >&2
mypy
echo "== policy-check (opa fmt/check --strict, regal lint, opa test --coverage, conftest)" >&2
make --no-print-directory policy-check
echo "== pytest" >&2
pytest "$@"
