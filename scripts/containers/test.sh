#!/usr/bin/env bash
# npm run test:containers: the image the Dockerfile builds, run with docker-compose.yml's
# etcd and gateway services on podman (test/containers/). Installs podman and its tools
# from Debian when missing; makes the base images from Debian's packages when the registry
# cannot be reached (scripts/containers/base-image.sh, cached under
# /var/cache/etcd-discovery-gateway). Needs root (podman with root storage, debootstrap).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || exec sudo --preserve-env bash "$0" "$@"

need=()
for tool in podman:podman buildah:buildah runc:runc debootstrap:debootstrap podman-compose:podman-compose; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${tool%%:*}" ] || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing container tools: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -d node_modules ] || npm ci --no-audit --no-fund

export CONTAINERS_CONF="$PWD/scripts/containers/containers.conf"
started=$SECONDS
# The registry's images when they can be pulled, else stand-ins made from Debian's packages.
node_image=docker.io/library/node:20-bookworm-slim
etcd_image=$(sed -n 's/^ *image: \(.*\/etcd:.*\)$/\1/p' docker-compose.yml | head -1)
pull() { podman image exists "$1" || timeout 120 podman pull --quiet "$1" >/dev/null 2>&1; }
if ! pull "$node_image" || ! pull "$etcd_image"; then
  read -r node_image etcd_image < <(scripts/containers/base-image.sh)
  echo "registry not reachable: $node_image and $etcd_image made from Debian's packages"
fi
export ETCD_IMAGE="$etcd_image"
export GATEWAY_IMAGE=localhost/etcd-discovery-gateway:local
# The Dockerfile as it is, but for the base image; host networking: no bridge needed.
podman build --quiet --format docker --network host --build-arg "NODE_IMAGE=$node_image" -t "$GATEWAY_IMAGE" . >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$GATEWAY_IMAGE")
echo "image $GATEWAY_IMAGE: $((size / 1000000)) MB, images ready in $((SECONDS - started)) s"

node --import tsx --test --test-concurrency=1 --test-timeout=300000 test/containers/*.test.ts
echo "test:containers took $((SECONDS - started)) s"
