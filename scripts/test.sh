#!/usr/bin/env bash
# npm test: installs what the tests need when it is missing (etcd, Chromium,
# Prometheus, dig, HAProxy from Debian's packages; node modules), then runs every test file.
# In CI (CI=true) nothing is skipped: a missing tool fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v "${ETCD_BIN:-etcd}" >/dev/null 2>&1 || need+=(etcd-server)
command -v "${ETCDCTL_BIN:-etcdctl}" >/dev/null 2>&1 || need+=(etcd-client)
[ -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ] || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test dependencies: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -d node_modules ] || npm ci --no-audit --no-fund

# Two files at a time, on two cores: most of a file's time is waiting (for a TTL
# to run out, a member to be elected, a process to start), and every test waits
# for conditions with a deadline rather than for a fixed time, so a busy core only
# slows it. One at a time, the suite takes about 60% longer.
exec node --import tsx --test --test-concurrency=2 --test-timeout=180000 test/*.test.ts test/issues/*.test.ts
