#!/usr/bin/env bash
# Set everything up (idempotent) and run the sidecar with its embedded defaults: a supervised local
# OPA on loopback serving the freshly built, signed bundle. Extra arguments go to `serve`'s global
# options, e.g. scripts/run.sh --log-level debug. Config: $POLICY_SIDECAR_CONFIG or the demo config.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
config=${POLICY_SIDECAR_CONFIG:-deploy/config/example.yaml}
exec .venv/bin/policy-sidecar --config "$config" "$@" serve
