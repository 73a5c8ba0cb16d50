#!/usr/bin/env bash
# Installs what building and testing samlgate needs on Debian 12, skipping what is present.
# Usage: scripts/install-deps.sh [build|test|bench]   (default: test)
set -euo pipefail
want=${1:-test}

build_pkgs=(pkg-config libxml2-dev libxmlsec1-dev libssl-dev libclang-dev openssl ca-certificates)
# chromium: the real-browser test (tests/browser_login.rs drives it with playwright-core).
test_pkgs=(simplesamlphp php-cli php-xml php-mbstring php-curl php-sqlite3 chromium)
# Node.js for that test's driver script: Debian's only when no `node` is on PATH (a newer one,
# e.g. NodeSource's, is left alone). playwright-core 1.64 wants node >= 20; Debian 12's is 18.
if ! command -v node >/dev/null 2>&1; then
  test_pkgs+=(nodejs npm)
fi
bench_pkgs=(nginx-light wrk)

pkgs=("${build_pkgs[@]}")
case "$want" in
  build) ;;
  test) pkgs+=("${test_pkgs[@]}") ;;
  bench) pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
