#!/usr/bin/env bash
# Build the pinned Go tools the sidecar and its tests run (OPA, conftest, Regal, Jaeger, Helm) into a cache
# outside the checkout, so a fresh clone reuses them. Idempotent: a tool already built at its pinned
# version is skipped. Prints the bin directory on the last line.
#
# Usage: scripts/install-tools.sh [tool ...]     (default: every tool)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${POLICY_SIDECAR_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/policy-sidecar/tools}
bin="$cache/bin"
mkdir -p "$bin"

# name  version  install-route  package
# Routes: "install" = go install PKG@VERSION; "module" = build from our own pinned module in tools/<name>
# (needed when the tool's go.mod carries replace directives — Jaeger — or when the proxy refuses to
# list the module's versions, which `go install` asks for — Regal; see tools/<name>/go.mod).
TOOLS=(
  "opa       v1.22.3  install github.com/open-policy-agent/opa"
  "conftest  v0.69.0  install github.com/open-policy-agent/conftest"
  "regal     v0.39.0  module  github.com/open-policy-agent/regal"
  "jaeger    v1.76.0  module  github.com/jaegertracing/jaeger/cmd/jaeger"
  "grpcurl   v1.9.3   install github.com/fullstorydev/grpcurl/cmd/grpcurl"
  "fake-gcs-server v1.55.1 install github.com/fsouza/fake-gcs-server"
  "crane     v0.22.1  install github.com/google/go-containerregistry/cmd/crane"
  "regctl    v0.11.5  install github.com/regclient/regclient/cmd/regctl"
  "helm      v4.3.2   install helm.sh/helm/v4/cmd/helm"
)

want=("$@")
selected() {
  [ ${#want[@]} -eq 0 ] && return 0
  local w; for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1
}

for row in "${TOOLS[@]}"; do
  read -r name version route pkg <<<"$row"
  selected "$name" || continue
  dest="$cache/$name-$version"
  if [ -x "$dest/$name" ]; then
    ln -sfn "$dest/$name" "$bin/$name"
    continue
  fi
  echo "building $name $version (first run only; cached in $dest)" >&2
  mkdir -p "$dest"
  tmp=$(mktemp -d)
  case "$route" in
    install)
      GOBIN="$tmp" CGO_ENABLED=0 go install "$pkg@$version" >&2
      mv "$tmp/$(basename "$pkg")" "$dest/$name" ;;
    module)
      (cd "$here/tools/$name" && CGO_ENABLED=0 go build -o "$tmp/$name" "$pkg") >&2
      mv "$tmp/$name" "$dest/$name" ;;
  esac
  rm -rf "$tmp"
  ln -sfn "$dest/$name" "$bin/$name"
done
echo "$bin"
