#!/usr/bin/env bash
# The whole test suite: installs missing system packages, then runs formatting, lint, unit,
# integration and end-to-end tests (SimpleSAMLphp from Debian, started by the tests on free
# loopback ports). Nothing is skipped: a missing tool fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
# Validators for tests/deploy_files.rs (kubernetes-validate + hadolint, pinned, venv in ~/.cache)
scripts/install-deploy-check.sh
# scim2-tester for tests/scim_conformance.rs (pinned, venv in ~/.cache)
scripts/install-scim-check.sh
# playwright-core for the real-browser test (tests/browser_login.rs); it downloads no browser
# (Debian's chromium comes from install-deps.sh). --prefer-offline: the npm cache is enough.
npm ci --prefix tests/browser --prefer-offline --no-audit --no-fund --loglevel=error
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The production build (no `dev-tools` feature: no dev-idp, demo, gen-cert) stays warning-free.
cargo clippy --no-default-features --all-targets --locked -- -D warnings
cargo test --locked --lib --bins --tests
