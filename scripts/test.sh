#!/usr/bin/env bash
# The whole test suite: installs missing system packages, then runs formatting, lint, unit,
# integration and end-to-end tests (SimpleSAMLphp from Debian, started by the tests on free
# loopback ports). Nothing is skipped: a missing tool fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
