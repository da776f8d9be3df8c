#!/usr/bin/env bash
# The full test suite — the one command in the README, and what CI (.ci/run) runs.
#
#   1. installs missing test tools (redis-tools, chromium; npm packages for e2e)
#   2. formatting and lints (cargo fmt --check, clippy -D warnings)
#   3. every Rust test: unit, integration (real processes on 127.0.0.1), doctests
#   4. the web UI: type check and end-to-end tests in headless Chromium
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies"
scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (workspace)"
cargo test --workspace --locked

step "loom model checks of the sampler's atomics"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p keyviz --lib --locked loom

step "web UI: type check and browser end-to-end tests"
scripts/e2e.sh

step "all checks passed"
