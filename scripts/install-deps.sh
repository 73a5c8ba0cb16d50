#!/usr/bin/env bash
# Installs what building and testing samlgate needs on Debian 12, skipping what is present.
# Usage: scripts/install-deps.sh [build|test|bench]   (default: test)
set -euo pipefail
want=${1:-test}

build_pkgs=(pkg-config libxml2-dev libxmlsec1-dev libssl-dev libclang-dev openssl ca-certificates)
# chromium: the real-browser test (tests/browser_login.rs drives it with playwright-core).
# nginx-light: the forward-auth tests (tests/forward_auth_nginx.rs) and the load benchmark run
# /usr/sbin/nginx themselves from temp dirs; the system service is not used (see below).
# slapd ldap-utils: the password sign-in tests (tests/support/slapd.rs) run /usr/sbin/slapd
# themselves from temp dirs with a generated config; the system service is not used.
# redis-server: the shared state tests (tests/support/redis.rs) run their own, no persistence;
# the same binary runs the Sentinels (`--sentinel`), and redis-tools' redis-cli creates the
# test Cluster (tests/state_redis_topologies.rs).
test_pkgs=(simplesamlphp php-cli php-xml php-mbstring php-curl php-sqlite3 chromium nginx-light slapd ldap-utils redis-server redis-tools)
# Node.js for that test's driver script: Debian's only when no `node` is on PATH (a newer one,
# e.g. NodeSource's, is left alone). playwright-core 1.64 wants node >= 20; Debian 12's is 18.
if ! command -v node >/dev/null 2>&1; then
  test_pkgs+=(nodejs npm)
fi
bench_pkgs=(wrk)

pkgs=("${build_pkgs[@]}")
case "$want" in
  build) ;;
  test) pkgs+=("${test_pkgs[@]}") ;;
  bench) pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac

missing_pkgs() {
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
}
missing_pkgs
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# No system service may start during this install: nginx's and apache2's (simplesamlphp
# depends on `apache2 | httpd`) postinst would start a web server on port 80, and where that
# start fails (a container without an init, port 80 taken) nginx's postinst fails and leaves
# the package half-configured. The tests start their own processes on free loopback ports and
# never use port 80. A policy-rc.d answering 101 ("action forbidden") makes invoke-rc.d skip
# the starts; one that is already there (Debian container images ship it) is left alone, ours
# is removed again on exit. (On a systemd host the units stay enabled for the next boot.)
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# install-deps.sh: no service starts during the install\nexit 101\n' |
    $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  trap '$SUDO rm -f "$policy"' EXIT
fi

echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# apt-get's exit status is not the whole story (a failed postinst leaves "half-configured").
missing_pkgs
if [ ${#missing[@]} -ne 0 ]; then
  echo "install-deps: not fully installed after apt-get: ${missing[*]} (see dpkg -s)" >&2
  exit 1
fi
