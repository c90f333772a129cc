#!/usr/bin/env bash
# Install the Debian packages the replication tests run for real: CNCF Distribution (docker-registry),
# skopeo (a copy-benchmark peer), the PostgreSQL server, and faketime (libfaketime: scripts/test.sh
# runs the clock-sensitive tests again with the clock a year ahead), and the image build and run
# tools (mmdebstrap, buildah, podman, runc). Idempotent: a package already
# installed is skipped, so this is a no-op on a machine that has them. Needs root (or sudo) only
# when something is missing. The docker-registry package's own service is not used: tests write their own configs.
set -euo pipefail

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v faketime >/dev/null || need+=(faketime)
# The container image (scripts/build-image.sh, tests/e2e/test_container_image.py): a rootfs from
# Debian packages, committed without a base image, run by podman with runc.
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v buildah >/dev/null || need+=(buildah)
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || need+=(runc)
[ ${#need[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${need[*]} (first run only)" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# The index may be stale on a fresh machine; refresh it once before installing.
$sudo apt-get update -qq >&2 || true
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
