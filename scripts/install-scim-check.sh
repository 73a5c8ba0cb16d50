#!/usr/bin/env bash
# Installs scim2-tester (the SCIM 2.0 conformance checker tests/scim_conformance.rs runs against
# the live gateway) into a Python venv outside the work tree, skipping the install when the
# pinned version is already there. Its Python dependencies are pinned too, so every machine
# checks with the same code.
#
# Usage: scripts/install-scim-check.sh
# Venv:  $SAMLGATE_SCIM_CHECK_VENV, default ~/.cache/samlgate/scim-check-venv
#        (the test looks in the same place).
set -euo pipefail

venv=${SAMLGATE_SCIM_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/samlgate/scim-check-venv}

pins=(
  scim2-tester==0.5.2
  scim2-client==0.13.2
  scim2-models==0.12.3
  httpx2==2.17.0
  httpcore2==2.17.0
  h11==0.16.0
  anyio==4.16.0
  truststore==0.10.5
  idna==3.21
  pydantic==2.14.4
  pydantic_core==2.50.5
  annotated-types==0.8.0
  typing-inspection==0.4.5
  typing_extensions==4.16.0
  email-validator==2.4.0
  dnspython==2.9.2
  lark==1.3.1
)

installed() {
  [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" - <<'PY' 2>/dev/null || return 1
from importlib.metadata import version
import httpx2, scim2_tester  # noqa: F401
assert version("scim2-tester") == "0.5.2"
PY
}

if installed; then
  echo "install-scim-check: scim2-tester 0.5.2 present in $venv"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
python=${PYTHON:-python3}
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  # Debian's python3 keeps venv/ensurepip in a separate package.
  echo "install-scim-check: installing python3-venv"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

echo "install-scim-check: creating $venv"
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-input "${pins[@]}"

installed || { echo "install-scim-check: scim2-tester did not install as expected in $venv" >&2; exit 1; }
echo "install-scim-check: scim2-tester 0.5.2 installed in $venv"
