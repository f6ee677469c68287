#!/usr/bin/env bash
# The one test command (README, CI): brings up everything the tests need on a fresh Debian machine
# with Node 20 and root — npm dependencies, Debian test peers, Docker Engine, the kernel image —
# then runs lint, the type check and every test tier (unit, integration, real Docker).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s [%s]\n' "$*" "$(date +%H:%M:%S)"; }

step "npm ci"
npm ci --no-audit --no-fund
step "Debian test peers"
bash scripts/install-test-deps.sh
step "Docker Engine"
bash scripts/ensure-docker.sh
step "kernel image"
bash kernel-image/build.sh
AIDO_KERNEL_IMAGE=$(bash kernel-image/build.sh --print-tag)
export AIDO_KERNEL_IMAGE
step "lint and type check"
npm run lint
npm run typecheck
step "build"
npm run build
step "tests (unit, integration, docker, browser)"
npx mocha --config .mocharc.json --reporter ./test/summary-reporter.cjs \
  'test/unit/**/*.test.ts' 'test/integration/**/*.test.ts' 'test/docker/**/*.test.ts' \
  'test/browser/**/*.test.ts'
