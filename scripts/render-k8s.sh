#!/usr/bin/env bash
# Render deploy/k8s/sidecar.yaml: the Helm chart's single-pod example as plain manifests, for
# `kubectl apply` without Helm. tests/integration/test_helm_chart.py checks it is current.
#
# Usage: scripts/render-k8s.sh
set -euo pipefail
cd "$(dirname "$0")/.."
helm=$(scripts/install-tools.sh helm)/helm
out=deploy/k8s/sidecar.yaml
{
  cat <<'HEADER'
# The policy sidecar as plain Kubernetes manifests: `helm template` of deploy/helm/policy-sidecar with
# deploy/helm/examples/single-pod-sqlite.yaml (release "policy-sidecar", namespace "policy"). One pod, the
# sidecar supervising its own OPA, SQLite on a PersistentVolume. Do not edit: change the chart or the
# example and run scripts/render-k8s.sh (tests/integration/test_helm_chart.py checks it is current).
# Needs the Secret policy-sidecar-webhook (key `secret`) in the namespace.
HEADER
  echo "---"
  "$helm" template policy-sidecar deploy/helm/policy-sidecar --namespace policy \
    --values deploy/helm/examples/single-pod-sqlite.yaml | sed '1{/^---$/d}'
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
