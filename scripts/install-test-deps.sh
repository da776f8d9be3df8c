#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain, only when missing:
#   redis-tools (redis-cli, redis-benchmark) for the store's protocol tests,
#   chromium for the browser end-to-end tests (scripts/e2e.sh installs its npm side),
#   tmux for the full-screen `keyviz top` test (tests/it/top.rs skips it when tmux is missing),
#   prometheus (for promtool, and the server) for the alert-rule tests (tests/it/alerts.rs).
set -euo pipefail

missing=()
command -v redis-cli >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
  else
    SUDO=
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-test-deps: redis-cli $(redis-cli --version | awk '{print $2}'), $(/usr/bin/chromium --version 2>/dev/null | head -n1), $(tmux -V), $(promtool --version 2>/dev/null | head -n1)"
