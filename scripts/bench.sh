#!/usr/bin/env bash
# Benchmarks: installs what they need (nginx-light, wrk, the build and test packages), then
# runs the pre-filter, ACS and SLO micro-benchmarks (criterion) and the proxy load test (wrk
# against nginx and samlgate on loopback, about two minutes). Extra arguments go to every
# benchmark binary (e.g. a criterion filter). The load-test table is also written to
# target/bench-proxy-load.txt; the refusal-flood table to target/bench-refusal-flood.txt; the
# idle-connection memory table (RSS per idle keep-alive
# connection, samlgate and nginx) to target/bench-idle-connections.txt; the state-backend table
# (redis against memory: proxy throughput, sign-ins, Redis memory per session) to
# target/bench-state-backend.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh bench
cargo bench --locked --bench prefilter --bench acs --bench slo --bench proxy_load --bench idle_connections --bench refusal_flood --bench state_backend -- "$@"
