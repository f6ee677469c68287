#!/usr/bin/env bash
# Builds the sandboxed kernel image offline, from Debian's archive only (no container registry).
#
#   bash kernel-image/build.sh              build aido-kernel:<hash> unless it exists; prints the tag
#   bash kernel-image/build.sh --print-tag  print the tag the current inputs produce, build nothing
#   bash kernel-image/build.sh --force      build again even if the image exists
#
# <hash> is the first 12 hex digits of a sha256 over every input of the image: this script,
# Dockerfile.secure, provision-rootfs.sh, packages.txt, kernelspec/, files/ and the Debian suite.
# An image with that tag is never built twice. The tag also goes to aido-kernel:latest.
#
# Steps: debootstrap --variant=minbase bookworm from the mirror this machine's apt uses; in a chroot
# of it, apt-get install packages.txt and harden the root (provision-rootfs.sh); tar it into
# `docker import` as aido-kernel-base:<hash>; `docker build --network none` Dockerfile.secure on it.
#
# stdout carries only the tag; progress goes to stderr. Needs root (debootstrap, chroot, mount).
# Environment: AIDO_DEBIAN_MIRROR overrides the mirror read from /etc/apt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(dirname "$here")
suite=bookworm
image_repo=aido-kernel
base_repo=aido-kernel-base
hash_label=org.aido.kernel-image.hash
lock_file=/var/tmp/aido-kernel-image.lock
chroot_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '%s [kernel-image] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

# ---------------------------------------------------------------------------------------------
# Content hash: the image's identity.

hash_inputs() {
  (cd "$here" && LC_ALL=C find build.sh Dockerfile.secure provision-rootfs.sh packages.txt \
    kernelspec files -type f | LC_ALL=C sort)
}

content_hash() {
  {
    printf 'suite %s\n' "$suite"
    (cd "$here" && hash_inputs | xargs -d '\n' sha256sum)
  } | sha256sum | cut -c1-12
}

# ---------------------------------------------------------------------------------------------
# Phases: timestamps and durations in the log, the phase's own output in a file that is shown
# when the phase fails.

now_us() { echo "${EPOCHREALTIME/./}"; }
seconds_since() { awk -v a="$1" -v b="$(now_us)" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }

phase_name=""
phase_log=""
phase_t0=0
phase_begin() {
  phase_name=$1
  phase_log="$work/$1.log"
  phase_t0=$(now_us)
  log "phase $phase_name: started"
}
phase_end() {
  log "phase $phase_name: done in $(seconds_since "$phase_t0") s"
  phase_name=""
}

# ---------------------------------------------------------------------------------------------
# The Debian mirror, read from the host's apt configuration (never a hard-coded host).

# Prints the first "deb" URI in the host's apt sources that serves a suite matching the extended
# regular expression $1, or nothing. Reads deb822 *.sources files and one-line *.list files.
apt_uri_for_suite() {
  local pattern=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v pattern="$pattern" '
      function flush(   n, i, s, u) {
        if (!found && uris != "" && tolower(enabled) != "no" && types ~ /(^|[ \t])deb([ \t]|$)/) {
          n = split(suites, s, /[ \t]+/)
          for (i = 1; i <= n; i++) if (s[i] ~ pattern) { split(uris, u, /[ \t]+/); print u[1]; found = 1; break }
        }
        types = ""; suites = ""; uris = ""; enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      {
        i = index($0, ":"); if (i == 0) next
        key = tolower(substr($0, 1, i - 1)); val = substr($0, i + 1)
        gsub(/^[ \t]+|[ \t]+$/, "", val)
        if (key == "types") types = val; else if (key == "suites") suites = val
        else if (key == "uris") uris = val; else if (key == "enabled") enabled = val
      }
      END { flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v pattern="$pattern" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) ~ pattern) print $i
      }' "$f"
  done
}

first_http_uri() { grep -E '^(https?|file)://' | head -n 1 || true; }

# ---------------------------------------------------------------------------------------------
# Clean-up: unmount everything under the work directory, then remove it (never through a mount).

work=""
rootfs=""
cleanup() {
  local rc=$? mounts
  if [ "$rc" -ne 0 ] && [ -n "$phase_name" ]; then
    log "phase $phase_name: FAILED after $(seconds_since "$phase_t0") s"
    if [ -s "$phase_log" ]; then
      log "last lines of $phase_name's output:"
      tail -n 40 "$phase_log" >&2 || true
    fi
  fi
  if [ -n "$work" ] && [ -d "$work" ]; then
    mounts=$(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r)
    if [ -n "$mounts" ]; then
      while IFS= read -r m; do umount "$m" 2>/dev/null || umount -l "$m" || true; done <<<"$mounts"
    fi
    if awk -v w="$work/" 'index($2, w) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
      log "warning: something is still mounted under $work; leaving it in place"
    else
      rm -rf "$work"
    fi
  fi
  exit "$rc"
}

# ---------------------------------------------------------------------------------------------

ensure_debootstrap() {
  local missing=()
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

write_chroot_sources() {
  local mirror=$1 updates security suites=$suite
  updates=$(apt_uri_for_suite "^$suite-updates\$" | first_http_uri)
  security=$(apt_uri_for_suite "^$suite-security\$" | first_http_uri)
  [ -n "$updates" ] && suites="$suite $suite-updates"
  rm -f "$rootfs/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n' "$mirror" "$suites"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$security" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$security" "$suite"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    else
      log "warning: the host's apt has no $suite-security source; the image gets no security updates"
    fi
  } >"$rootfs/etc/apt/sources.list.d/debian.sources"
  log "chroot apt sources: $mirror ($suites)${security:+, $security ($suite-security)}"
}

in_chroot() {
  chroot "$rootfs" /usr/bin/env -i PATH="$chroot_path" HOME=/root TERM=dumb LC_ALL=C.UTF-8 "$@"
}

build_base() {
  local mirror
  ensure_debootstrap
  mirror=${AIDO_DEBIAN_MIRROR:-}
  if [ -z "$mirror" ]; then
    mirror=$(apt_uri_for_suite "^$suite\$" | first_http_uri)
    # A host on another release still names a Debian mirror for its own suite.
    [ -n "$mirror" ] || mirror=$(apt_uri_for_suite '^[a-z]+$' | first_http_uri)
  fi
  [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt; set AIDO_DEBIAN_MIRROR"
  rootfs="$work/rootfs"

  phase_begin debootstrap
  log "debootstrap --variant=minbase $suite from $mirror"
  debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$suite" "$rootfs" "$mirror" >"$phase_log" 2>&1
  phase_end

  phase_begin apt-install
  mount -t proc proc "$rootfs/proc"
  mkdir -p "$rootfs/dev/pts"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$rootfs/dev/pts"
  # The host's resolver, for apt only; removed again below.
  cp --dereference /etc/resolv.conf "$rootfs/etc/resolv.conf"
  # No package may start a service inside the chroot.
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
  write_chroot_sources "$mirror"
  mkdir -p "$rootfs/tmp/aido-build"
  cp "$here/provision-rootfs.sh" "$here/packages.txt" "$rootfs/tmp/aido-build/"
  in_chroot bash /tmp/aido-build/provision-rootfs.sh install /tmp/aido-build/packages.txt \
    >"$phase_log" 2>&1
  phase_end

  phase_begin cleanup
  in_chroot bash /tmp/aido-build/provision-rootfs.sh harden >"$phase_log" 2>&1
  umount "$rootfs/dev/pts"
  umount "$rootfs/proc"
  # Nothing of the build host stays in the image: resolver, host name, build files, logs.
  rm -f "$rootfs/etc/resolv.conf" "$rootfs/usr/sbin/policy-rc.d" "$rootfs/var/log/bootstrap.log"
  printf 'localhost\n' >"$rootfs/etc/hostname"
  rm -rf "$rootfs/tmp/aido-build" "$rootfs/root/.cache" "$rootfs/root/.config"
  find "$rootfs/tmp" "$rootfs/var/tmp" -mindepth 1 -delete
  log "root filesystem: $(du -sxh "$rootfs" | cut -f1)"
  phase_end

  phase_begin import
  # /dev, /proc and /sys are filled in by the container runtime; ship them empty.
  tar --numeric-owner -C "$rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf - . 2>"$phase_log" |
    docker import \
      --change "ENV PATH=$chroot_path" \
      --change "LABEL $hash_label=$hash" \
      --message "aido-kernel base: debootstrap $suite (minbase) + packages.txt, content hash $hash" \
      - "$base_tag" >>"$phase_log" 2>&1
  rm -rf "$rootfs"
  phase_end
}

build_image() {
  phase_begin build
  # Legacy builder or BuildKit, whichever this Docker CLI uses: both find the base image locally.
  docker build --network none \
    --build-arg "BASE=$base_tag" \
    --label "$hash_label=$hash" \
    --force-rm \
    -t "$tag" \
    -f "$here/Dockerfile.secure" \
    "$here" >"$phase_log" 2>&1
  docker tag "$tag" "$image_repo:latest"
  phase_end
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

report_up_to_date() {
  docker tag "$tag" "$image_repo:latest"
  log "$tag is up to date (content hash $hash)"
  printf '%s\n' "$tag"
}

main() {
  local mode=build force=0 arg
  for arg in "$@"; do
    case "$arg" in
      --print-tag) mode=print-tag ;;
      --force) force=1 ;;
      -h | --help)
        usage
        exit 0
        ;;
      *)
        usage
        die "unknown argument: $arg"
        ;;
    esac
  done

  hash=$(content_hash)
  tag="$image_repo:$hash"
  base_tag="$base_repo:$hash"
  if [ "$mode" = print-tag ]; then
    printf '%s\n' "$tag"
    return 0
  fi

  # The common case, and the start script's: the image exists. Answer it quickly.
  if [ "$force" -eq 0 ] && image_exists "$tag"; then
    report_up_to_date
    return 0
  fi
  if ! timeout 10 docker info >/dev/null 2>&1; then
    log "Docker does not answer; starting it with scripts/ensure-docker.sh"
    bash "$repo_root/scripts/ensure-docker.sh"
    if [ "$force" -eq 0 ] && image_exists "$tag"; then
      report_up_to_date
      return 0
    fi
  fi
  [ "$(id -u)" = 0 ] || die "building the image needs root (debootstrap, chroot, mount)"

  # One build at a time on this machine; a second caller waits, then finds the image built.
  exec 9>"$lock_file"
  if ! flock -n 9; then
    log "another build holds $lock_file; waiting for it"
    flock 9
    if [ "$force" -eq 0 ] && image_exists "$tag"; then
      report_up_to_date
      return 0
    fi
  fi

  local t0
  t0=$(now_us)
  work=$(mktemp -d /var/tmp/aido-kernel-image.XXXXXX)
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  log "building $tag in $work"

  if [ "$force" -eq 0 ] && image_exists "$base_tag"; then
    log "$base_tag exists; reusing it"
  else
    build_base
  fi
  build_image

  local size
  size=$(docker image inspect -f '{{.Size}}' "$tag")
  log "built $tag (also $image_repo:latest) in $(seconds_since "$t0") s;" \
    "image size $(awk -v b="$size" 'BEGIN { printf "%.0f MB", b / 1e6 }') ($size bytes)"
  printf '%s\n' "$tag"
}

main "$@"
