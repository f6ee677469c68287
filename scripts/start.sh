#!/usr/bin/env bash
# Starts the gateway on a fresh Debian machine with Node 20 and root: installs npm dependencies,
# brings up Docker Engine, builds the kernel image when missing, builds, then `npm start`.
# Configuration: the AIDO_* variables (README) or flags after the script name.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund
bash scripts/ensure-docker.sh
bash kernel-image/build.sh
if [ -z "${AIDO_KERNEL_IMAGE:-}" ]; then
  AIDO_KERNEL_IMAGE=$(bash kernel-image/build.sh --print-tag)
  export AIDO_KERNEL_IMAGE
fi
npm run build --silent
exec npm start --silent -- "$@"
