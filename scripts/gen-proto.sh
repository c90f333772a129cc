#!/usr/bin/env bash
# Regenerate the Python gRPC code in sidecar/_proto from proto/. The generated files are committed;
# tests/unit/test_proto_current.py fails when they are stale. Usage: scripts/gen-proto.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-sidecar/_proto}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
# The -I mapping makes the generated modules import each other as sidecar._proto.*.
"$py" -m grpc_tools.protoc \
  -Isidecar/_proto=proto/freightliner/policy/v1 \
  --python_out="$out/../.." --pyi_out="$out/../.." --grpc_python_out="$out/../.." \
  proto/freightliner/policy/v1/policy.proto
