#!/usr/bin/env bash
# End-to-end check of the KeyViz web UI:
#   1. installs what is missing (Debian chromium, the pinned npm packages in tests/e2e),
#   2. type-checks the UI (tsc -p crates/keyviz-admin/ui/tsconfig.json; must pass),
#   3. builds the real test servers: cargo build -p keyviz-admin --example ui_fixture (three admin
#      routers with real samplers, a crafted peer, a stop control) and the keyviz binary
#      (`keyviz demo`, the real store),
#   4. runs the unit and browser tests (node --test in tests/e2e) in headless Chromium.
# Options: --no-browser (steps 1-2 plus the unit tests of the pure UI modules; no Chromium, no
# cargo), --perf (also measure render times and print them; docs/perf-ui.md records them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
E2E="$ROOT/tests/e2e"
MODE="${1:-}"

log() { printf '\n== %s\n' "$*"; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "e2e: node and npm are required (Node 20+)." >&2
  exit 1
fi

if [ ! -x /usr/bin/chromium ] && [ "$MODE" != "--no-browser" ]; then
  log "installing chromium (apt-get)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
fi

log "npm ci (tests/e2e)"
if [ ! -d "$E2E/node_modules/playwright-core" ] || [ ! -d "$E2E/node_modules/typescript" ]; then
  (cd "$E2E" && npm ci --no-audit --no-fund)
fi

log "type check: tsc -p crates/keyviz-admin/ui/tsconfig.json"
"$E2E/node_modules/.bin/tsc" -p "$ROOT/crates/keyviz-admin/ui/tsconfig.json"
echo "type check passed"

if [ "$MODE" = "--no-browser" ]; then
  log "unit tests of the pure UI modules: node --test unit.test.mjs diff-unit.test.mjs structure.test.mjs leaders-unit.test.mjs"
  (cd "$E2E" && node --test unit.test.mjs diff-unit.test.mjs structure.test.mjs leaders-unit.test.mjs)
  exit 0
fi

log "building the test server: cargo build -p keyviz-admin --example ui_fixture"
(cd "$ROOT" && cargo build -p keyviz-admin --example ui_fixture)

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export KEYVIZ_UI_FIXTURE="$TARGET_DIR/debug/examples/ui_fixture"

log "building the store binary for the demo smoke test: cargo build -p keyviz-cli --bin keyviz"
(cd "$ROOT" && cargo build -p keyviz-cli --bin keyviz)
export KEYVIZ_BIN="$TARGET_DIR/debug/keyviz"

log "unit + browser tests: node --test (headless chromium)"
(cd "$E2E" && node --test --test-concurrency=1 ./*.test.mjs)

if [ "$MODE" = "--perf" ]; then
  log "render timings (headless chromium)"
  (cd "$E2E" && node perf.mjs)
fi
