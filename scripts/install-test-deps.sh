#!/usr/bin/env bash
# Debian packages the test tiers use as real peers: jupyter_client (signing cross-checks, a Python
# client) and jupyter-server (gateway mode in front of us); chromium for the security console's
# browser tests (driven by playwright-core, never a downloaded browser); gcc and python3-dev build
# the compiled wheel the egress test serves from its loopback mirror; apparmor brings apparmor_parser,
# which compiles the AppArmor profile in the unit tests. Installed only when missing.
set -euo pipefail
need=()
for pkg in python3-jupyter-client python3-jupyter-server python3-ipykernel chromium gcc python3-dev \
  apparmor; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "[test-deps] installing ${need[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
/usr/bin/python3 -c 'import jupyter_client, jupyter_server' || { echo "[test-deps] jupyter_client/jupyter_server not importable by /usr/bin/python3" >&2; exit 1; }
[ -x /usr/bin/chromium ] || { echo "[test-deps] /usr/bin/chromium missing after install" >&2; exit 1; }
echo "[test-deps] ok" >&2
