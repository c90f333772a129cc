#!/usr/bin/env bash
# Build the pinned Go tools the sidecar and its tests run (OPA, conftest, Regal, Jaeger, promtool, buf, Helm,
# etcd, kube-apiserver) into a cache
# outside the checkout, so a fresh clone reuses them. Idempotent: a tool already built at its pinned
# version is skipped. Prints the bin directory on the last line.
#
# Usage: scripts/install-tools.sh [tool ...]     (default: every tool)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${POLICY_SIDECAR_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/policy-sidecar/tools}
bin="$cache/bin"
mkdir -p "$bin"

# name  version  install-route  package  [build tags, comma-separated, or - for none]  [linker flags]
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
  "pstest-server v2.9.0 module ."
  # The Go client (clients/go): buf lints, checks breaking changes and runs the two Go plugins.
  "buf       v1.75.0  install github.com/bufbuild/buf/cmd/buf"
  "protoc-gen-go      v1.36.12 install google.golang.org/protobuf/cmd/protoc-gen-go"
  "protoc-gen-go-grpc v1.6.2   install google.golang.org/grpc/cmd/protoc-gen-go-grpc"
  # promtool checks and unit-tests deploy/prometheus/alerts.yaml. Prometheus 3.x's module versions
  # are v0.3XX.Y (v0.316.0 = Prometheus 3.16.0). remove_all_sd leaves out the cloud service-discovery
  # plugins (AWS, Azure, GCE, ...; kubernetes and file SD stay, promtool imports them itself):
  # measured cold on 2 busy cores, 258 CPU-s / 1.1 GB peak RSS / 77 MB binary instead of 513 CPU-s /
  # 3.4 GB / 123 MB for the full build (docs/benchmarks.md, "promtool build").
  "promtool  v0.316.0 install github.com/prometheus/prometheus/cmd/promtool remove_all_sd"
  "helm      v4.3.2   install helm.sh/helm/v4/cmd/helm"
  # The chart test (tests/integration/test_helm_apiserver.py) applies every rendered manifest with a
  # server-side dry run to a real kube-apiserver on etcd (tests/support/kube.py). Both are "module"
  # builds: etcd's server module replaces its sibling modules with ../<dir>; k8s.io/kubernetes replaces
  # every k8s.io staging module with ./staging/src/k8s.io/<name>. tools/kube-apiserver/go.mod pins
  # k8s.io/kubernetes and replaces each staging module with its published v0.Y.Z release (the list
  # comes from kubernetes' own go.mod: go mod download -json k8s.io/kubernetes@v1.37.2, then its
  # "./staging" replace lines). Cold cost: docs/benchmarks.md, "kube-apiserver and etcd build".
  "etcd      v3.7.3   module  go.etcd.io/etcd/server/v3"
  # -X: the version its /version and --version report (kubernetes' own build stamps it the same way,
  # hack/lib/version.sh); -s -w: no symbol table or DWARF (170 MB -> about 120 MB, a lighter link).
  "kube-apiserver v1.37.2 module k8s.io/kubernetes/cmd/kube-apiserver - -s -w -X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
)

want=("$@")
selected() {
  [ ${#want[@]} -eq 0 ] && return 0
  local w; for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1
}

for row in "${TOOLS[@]}"; do
  read -r name version route pkg tags ldflags <<<"$row"
  [ "$tags" = - ] && tags=""
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
      GOBIN="$tmp" CGO_ENABLED=0 go install ${tags:+-tags "$tags"} ${ldflags:+-ldflags "$ldflags"} "$pkg@$version" >&2
      mv "$tmp/$(basename "$pkg")" "$dest/$name" ;;
    module)
      (cd "$here/tools/$name" && CGO_ENABLED=0 go build ${tags:+-tags "$tags"} ${ldflags:+-ldflags "$ldflags"} \
        -o "$tmp/$name" "$pkg") >&2
      mv "$tmp/$name" "$dest/$name" ;;
  esac
  rm -rf "$tmp"
  ln -sfn "$dest/$name" "$bin/$name"
done
echo "$bin"
