#!/usr/bin/env bash
# Regenerate the code generated from proto/: the Python gRPC code in sidecar/_proto and, when no
# OUT_DIR is given, the Go stubs in clients/go/v1 (`buf generate` with buf.gen.yaml and the pinned
# buf, protoc-gen-go and protoc-gen-go-grpc of scripts/install-tools.sh). Both are committed;
# tests/unit/test_proto_current.py and tests/unit/test_proto_buf.py fail when either is stale.
# Usage: scripts/gen-proto.sh [OUT_DIR]      (OUT_DIR: Python only, into that directory)
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
if [ $# -eq 0 ]; then
  tools=$(scripts/install-tools.sh buf protoc-gen-go protoc-gen-go-grpc)
  PATH="$tools:$PATH" buf generate
fi
