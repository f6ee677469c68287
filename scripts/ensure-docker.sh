#!/usr/bin/env bash
# Makes sure a Docker Engine answers on /var/run/docker.sock. Idempotent.
#  - dockerd missing            -> install Debian's docker.io with apt-get
#  - daemon not answering       -> start it in the background (no bridge network), wait for `docker info`
#  - a daemon already answering -> used as it is (it may be the user's own)
# Environment: AIDO_STATE_DIR (default ./.state) holds the daemon log; AIDO_DOCKER_WAIT (s, default 60).
set -euo pipefail

state_dir=${AIDO_STATE_DIR:-$(pwd)/.state}
wait_s=${AIDO_DOCKER_WAIT:-60}
sock=/var/run/docker.sock
log() { printf '[ensure-docker] %s\n' "$*" >&2; }

daemon_answers() { timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { log "dockerd is missing and installing it needs root"; exit 1; }
  log "dockerd not found: installing Debian's docker.io (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi

if daemon_answers; then
  log "Docker Engine $(docker info --format '{{.ServerVersion}}') already answering; using it"
  exit 0
fi

[ "$(id -u)" = 0 ] || { log "no Docker daemon answers and starting one needs root"; exit 1; }
mkdir -p "$state_dir"
daemon_log="$state_dir/dockerd.log"

# A daemon killed earlier leaves its pid file and sockets behind; dockerd refuses to start over a
# pid file whose process is alive, and a stale socket makes clients hang instead of failing.
for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q -E 'dockerd|containerd' "/proc/$pid/comm" 2>/dev/null; then
      log "a daemon (pid $pid) is alive but not answering: stopping it"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  fi
done
rm -f "$sock" /var/run/docker/containerd/containerd.sock /var/run/docker/containerd/containerd-debug.sock

log "starting dockerd (--bridge=none --live-restore, log: $daemon_log)"
# --bridge=none: our sandboxes use network "none", so no docker0 (a private-range interface) is created.
# --live-restore: sandboxes keep running while the daemon restarts; kernels talk over ipc and do not
# need it, so a daemon fault only pauses starting and stopping kernels.
nohup dockerd --bridge=none --iptables=false --ip-masq=false --live-restore >>"$daemon_log" 2>&1 </dev/null &
disown || true

deadline=$((SECONDS + wait_s))
until daemon_answers; do
  if [ $SECONDS -ge $deadline ]; then
    log "dockerd did not answer within ${wait_s}s; last lines of $daemon_log:"
    tail -n 20 "$daemon_log" >&2 || true
    exit 1
  fi
  sleep 0.5
done
log "Docker Engine $(docker info --format '{{.ServerVersion}}') is up"
