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

# Most files run two at a time, on two cores: most of a file's time is waiting (a
# TTL running out, a member being elected, a process starting), and tests wait for
# conditions with deadlines generous enough for a busy core (one at a time, the
# suite takes about 60% longer). These run alone, after the rest: three build or
# pack dist/ (npm pack deletes it first), which a neighbour may be running from;
# the others drive load whose timing is the assertion (the soak, 2,000 instances
# heartbeating at TTL/3 through an election, three-member clusters with frozen
# members, the 20,000-instance dashboard) and need the machine's CPU to themselves.
alone=(
  test/package-install.test.ts
  test/npm-start-signals.test.ts
  test/client-package.test.ts
  test/soak-smoke.test.ts
  test/cluster-partition.test.ts
  test/cluster.test.ts
  test/dashboard-scale.browser.test.ts
)
shared=()
for f in test/*.test.ts test/issues/*.test.ts; do
  [[ " ${alone[*]} " == *" $f "* ]] || shared+=("$f")
done
run() { node --import tsx --test --test-timeout=180000 "$@"; }
status=0
run --test-concurrency=2 "${shared[@]}" || status=$?
run --test-concurrency=1 "${alone[@]}" || status=$?
exit "$status"
