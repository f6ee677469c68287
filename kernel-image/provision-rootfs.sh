#!/bin/bash
# Provisions the kernel image's root filesystem from inside it, as root. Two callers run the same
# steps, so the image is the same whichever way it was made:
#   - build.sh, in a chroot of the debootstrapped Debian root (offline path, the default here);
#   - Dockerfile.secure, in a RUN step (where the base may be plain debian:bookworm-slim).
# Every step is idempotent: on a root that build.sh already provisioned, a second run changes nothing.
#
# Usage: provision-rootfs.sh install PACKAGE_LIST   install the listed Debian packages if any is missing
#        provision-rootfs.sh harden                 sandbox user, strip privileges and network tools,
#                                                   drop docs and apt state, byte-compile Python
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

log() { printf '[provision-rootfs] %s\n' "$*" >&2; }

sandbox_uid=1000
sandbox_gid=1000

# Tools that open network connections or reconfigure interfaces. The sandbox runs with network
# "none", so they are useless there; they are removed so that code in a kernel cannot find them
# should a deployment ever attach a network. Debian package names first, then file names.
network_packages=(
  iputils-ping iputils-arping iputils-tracepath inetutils-ping inetutils-telnet inetutils-ftp
  inetutils-traceroute iproute2 net-tools netcat-openbsd netcat-traditional ncat wget curl
  openssh-client telnet ftp tnftp rsync socat dnsutils bind9-host bind9-dnsutils whois traceroute
  isc-dhcp-client
)
network_tools=(
  ping ping4 ping6 arping tracepath traceroute traceroute6 wget curl nc netcat nc.openbsd
  nc.traditional ncat ip ss bridge tc ifconfig route netstat arp telnet ssh scp sftp ssh-keyscan
  ftp tftp rsync socat dig nslookup host whois dhclient
)

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

# python3-ipykernel depends on python3-debugpy, which brings pydevd and gdb (about 30 MB) and costs
# every kernel start about 0.2 s at 0.5 CPU to import. The sandbox runs with the debugger off
# (kernelspec metadata "debugger": false), and ipykernel works without debugpy: its kernel_info
# reply then claims no debugger, consistent with the kernelspec. So a local, empty package
# that provides python3-debugpy is installed first (the equivs pattern, built with dpkg-deb): apt's
# state stays consistent, and an image built FROM this one can still install the real debugger.
install_debugger_stub() {
  local dir
  if is_installed aido-kernel-no-debugger || is_installed python3-debugpy; then return 0; fi
  dir=$(mktemp -d)
  mkdir -p "$dir/pkg/DEBIAN"
  cat >"$dir/pkg/DEBIAN/control" <<'CONTROL'
Package: aido-kernel-no-debugger
Version: 1.0
Architecture: all
Maintainer: aido-kernel-gateway <kernel-image@aido.invalid>
Provides: python3-debugpy
Conflicts: python3-debugpy
Section: python
Priority: optional
Description: keeps the debugger out of the sandboxed kernel image
 Satisfies python3-ipykernel's dependency on python3-debugpy without installing
 debugpy, pydevd or gdb. ipykernel runs without them and reports no debugger.
CONTROL
  dpkg-deb --root-owner-group --build "$dir/pkg" "$dir/aido-kernel-no-debugger.deb" >/dev/null
  dpkg -i "$dir/aido-kernel-no-debugger.deb"
  rm -rf "$dir"
}

install_packages() {
  local list=$1 pkg
  local -a wanted=() missing=()
  mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$')
  [ "${#wanted[@]}" -gt 0 ] || { log "no packages listed in $list"; exit 1; }

  # Keep documentation, manual pages and translations out of the image from the start (dpkg then
  # never unpacks them), but keep each package's copyright file.
  mkdir -p /etc/dpkg/dpkg.cfg.d
  cat >/etc/dpkg/dpkg.cfg.d/90-aido-kernel-nodoc <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
EOF

  install_debugger_stub
  for pkg in "${wanted[@]}"; do is_installed "$pkg" || missing+=("$pkg"); done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "all ${#wanted[@]} listed packages already installed"
  else
    log "installing ${missing[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  python3 -c 'import ipykernel, numpy, pandas, matplotlib' || {
    log "the Python stack does not import after installation"
    exit 1
  }
}

ensure_sandbox_user() {
  if ! getent group sandbox >/dev/null; then
    groupadd --gid "$sandbox_gid" sandbox
  fi
  if ! id sandbox >/dev/null 2>&1; then
    # No password, no login shell: the account exists so that uid 1000 has a name and a home.
    useradd --uid "$sandbox_uid" --gid "$sandbox_gid" --home-dir /home/sandbox --create-home \
      --shell /usr/sbin/nologin --comment 'kernel sandbox' sandbox
  fi
  if [ "$(id -u sandbox)" != "$sandbox_uid" ] || [ "$(id -g sandbox)" != "$sandbox_gid" ]; then
    log "user sandbox exists with the wrong ids: $(id sandbox)"
    exit 1
  fi
  mkdir -p /home/sandbox /workspace /run/kernel
  chown "$sandbox_uid:$sandbox_gid" /home/sandbox /workspace
  chmod 0750 /home/sandbox
  chmod 0700 /workspace
  # /run/kernel is a mount point for the per-kernel directory the gateway bind-mounts there.
  chmod 0755 /run/kernel
}

remove_network_tools() {
  local pkg name dir
  local -a present=()
  for pkg in "${network_packages[@]}"; do is_installed "$pkg" && present+=("$pkg"); done
  if [ "${#present[@]}" -gt 0 ]; then
    log "purging network packages: ${present[*]}"
    # dpkg, not apt-get: apt would also remove whatever depends on them, and the Python stack must
    # stay whole (checked at the end).
    dpkg --purge --force-depends "${present[@]}"
  fi
  for name in "${network_tools[@]}"; do
    for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
      if [ -e "$dir/$name" ] || [ -L "$dir/$name" ]; then
        log "removing $dir/$name"
        rm -f "$dir/$name"
      fi
    done
  done
}

strip_privileges() {
  # setuid/setgid bits on files (su, passwd, mount, ...): nothing in the sandbox may gain
  # privileges. no-new-privileges already neuters them at run time; removing them keeps that true
  # without it. Directories lose their setgid bit too (/var/mail, /var/local: group inheritance,
  # meaningless on a read-only root), so that `find / -xdev -perm /6000` finds nothing at all.
  local f
  while IFS= read -r -d '' f; do
    log "clearing setuid/setgid on $f"
    chmod ug-s "$f"
  done < <(find / -xdev \( -type f -o -type d \) -perm /6000 -print0)
  # File capabilities (security.capability xattrs) are the other way a binary gains privileges.
  python3 - <<'EOF'
import os
for root, dirs, files in os.walk("/", topdown=True):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for name in files:
        path = os.path.join(root, name)
        try:
            os.removexattr(path, "security.capability", follow_symlinks=False)
            print(f"[provision-rootfs] removed file capabilities from {path}", flush=True)
        except OSError:
            pass
EOF
}

remove_docs_and_caches() {
  apt-get clean
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
    /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/log/apt/* /var/log/dpkg.log \
    /var/log/alternatives.log /usr/share/man/* /usr/share/info/* /usr/share/lintian/* \
    /usr/share/locale/* /root/.cache
  # Documentation, except the copyright files (kept for licence compliance).
  find /usr/share/doc -mindepth 1 \( -type f -o -type l \) ! -name copyright -delete 2>/dev/null || true
  find /usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
}

byte_compile() {
  # The root filesystem is read-only at run time and PYTHONDONTWRITEBYTECODE is set, so any module
  # without a .pyc is compiled again on every import. Debian's packages compile theirs in postinst;
  # this catches the rest. Files that do not compile (test data written for Python 2) are skipped.
  local stdlib
  stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
  python3 -m compileall -q /usr/lib/python3/dist-packages "$stdlib" >/dev/null ||
    log "compileall reported files it could not compile (ignored)"
}

harden() {
  ensure_sandbox_user
  remove_network_tools
  remove_docs_and_caches
  byte_compile
  strip_privileges
  python3 -c 'import ipykernel, numpy, pandas, matplotlib'
  command -v tini >/dev/null
}

case "${1:-}" in
  install)
    [ $# -eq 2 ] || { log "usage: $0 install PACKAGE_LIST"; exit 2; }
    install_packages "$2"
    ;;
  harden) harden ;;
  *)
    log "usage: $0 install PACKAGE_LIST | harden"
    exit 2
    ;;
esac
