#!/usr/bin/env bash
# Makes the local stand-ins for registry images from Debian's packages, when the registry
# cannot be reached: a Node.js base image (the Dockerfile's NODE_IMAGE) and an etcd image.
# Prints the base image's name. The root file system is cached under CACHE_DIR, keyed by
# this file's content: a changed recipe makes a new one, the same recipe reuses it.
#   usage: base-image.sh            (needs root, debootstrap, podman)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE_DIR="${CONTAINERS_CACHE_DIR:-/var/cache/etcd-discovery-gateway}"
SUITE=trixie # trixie's nodejs is 20.19, what package.json's engines asks for
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
key="$(cat "$0" "$here/etcd.Containerfile" | sha256sum | cut -c1-12)"
base="localhost/node:20-${SUITE}-${key}"
etcd="localhost/etcd:debian-${SUITE}-${key}"

log() { echo "base-image: $*" >&2; }

if ! podman image exists "$base"; then
  tarball="$CACHE_DIR/node-20-${SUITE}-${key}.tar"
  if [ ! -s "$tarball" ]; then
    log "making $base with debootstrap (once per recipe: cached in $tarball)"
    mkdir -p "$CACHE_DIR"
    root="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase --include=nodejs,tini,ca-certificates "$SUITE" "$root" "$MIRROR" >&2
    # This machine's CA bundle, so that `npm ci` inside a build trusts the same proxies it does.
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    chroot "$root" sh -ec '
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
      useradd --uid 1000 --user-group --create-home --shell /bin/sh node
      apt-get clean
      rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc /usr/share/man /usr/share/locale
    ' >&2
    tar -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
  fi
  podman import --quiet --change 'CMD ["node"]' "$tarball" "$base" >/dev/null
fi

if ! podman image exists "$etcd"; then
  log "making $etcd from Debian's etcd-server"
  podman build --quiet --network host --build-arg "BASE=$base" -t "$etcd" -f "$here/etcd.Containerfile" "$here" >/dev/null
fi

echo "$base $etcd"
