#!/usr/bin/env bash
# Build the policy-sidecar container image from Debian packages, without pulling a base image:
# mmdebstrap makes a bookworm rootfs (python3.11, CA certificates), the wheel and its locked runtime
# dependencies go to /opt/policy-sidecar, the pinned OPA to /usr/local/bin, and buildah commits the
# tree as an image from scratch. Non-root (65532), state in /var/lib/policy-sidecar, made to run
# with a read-only root filesystem (the chart mounts /var/lib/policy-sidecar and /tmp).
#
# Usage: scripts/build-image.sh [TAG]        (default: policy-sidecar:<version>; root needed)
#   writes build/image/policy-sidecar.oci.tar (an OCI archive) and the local buildah image.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
tag=${1:-policy-sidecar:$version}
uv=.venv/bin/uv
opa=$(scripts/install-tools.sh opa)/opa
for tool in mmdebstrap buildah; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is missing (apt-get install mmdebstrap buildah)" >&2; exit 1; }
done
[ -x "$uv" ] || { echo "build-image: run scripts/setup.sh first (.venv/bin/uv)" >&2; exit 1; }

work=build/image
rm -rf "$work" && mkdir -p "$work/dist"
"$uv" build --no-build-isolation --python .venv/bin/python --wheel --out-dir "$work/dist" . >&2

# The rootfs: Debian bookworm, minimal, with the Python the wheel runs on. Mirrors as the host's apt.
mmdebstrap --variant=minbase --include=python3.11,ca-certificates bookworm "$work/rootfs" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian-security bookworm-security main" >&2
root=$work/rootfs
# Wheels for the rootfs's interpreter (CPython 3.11, glibc 2.36), versions from the lock.
"$uv" pip install --target "$root/opt/policy-sidecar/lib" --python-version 3.11 \
  --python-platform x86_64-manylinux_2_36 --no-compile -c requirements.lock "$work"/dist/*.whl >&2
install -m 0755 "$opa" "$root/usr/local/bin/opa"
echo 'policy-sidecar:x:65532:65532:policy-sidecar:/var/lib/policy-sidecar:/usr/sbin/nologin' >> "$root/etc/passwd"
echo 'policy-sidecar:x:65532:' >> "$root/etc/group"
install -d -o 65532 -g 65532 -m 0750 "$root/var/lib/policy-sidecar"
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man

ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah copy "$ctr" "$root" / >/dev/null
buildah config \
  --user 65532:65532 \
  --workingdir /var/lib/policy-sidecar \
  --env PATH=/usr/local/bin:/usr/bin:/bin \
  --env PYTHONPATH=/opt/policy-sidecar/lib \
  --env PYTHONDONTWRITEBYTECODE=1 \
  --env XDG_STATE_HOME=/var/lib \
  --env HOME=/tmp \
  --entrypoint '["/usr/bin/python3.11", "-m", "sidecar"]' \
  --cmd '["serve"]' \
  --volume /var/lib/policy-sidecar \
  --port 50051 --port 9464 \
  --label org.opencontainers.image.title=policy-sidecar \
  --label "org.opencontainers.image.version=$version" \
  "$ctr"
buildah commit --quiet "$ctr" "$tag" >&2
buildah push --quiet "$tag" "oci-archive:$work/policy-sidecar.oci.tar:$tag" >&2
rm -rf "$root"  # the archive and the local image hold it now
echo "$tag"
