#!/usr/bin/env bash
# Builds (once) a Debian trixie root holding PostgreSQL 17 + pg_cron 1.6 + pg_partman 5.x and
# pgBackRest and Patroni 4 (python3-etcd for its etcd3 lock store), so the real-Postgres suite can run on the newer generation beside the host's
# bookworm PostgreSQL 15. Prints the root's path. Reused when already complete.
set -euo pipefail
root=${PGW_PG17_ROOT:-/var/cache/pgwarehouse/trixie-pg17}
mirror=${PGW_DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=(postgresql-17 postgresql-17-cron postgresql-17-partman pgbackrest patroni python3-etcd)
# Patroni, run inside the root, tells whether its postmaster runs from /proc (psutil) and takes
# its locks in /dev/shm (Python's multiprocessing): the root gets the host's /proc and a /dev/shm.
mount_kernel_files() {
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  mountpoint -q "$root/dev/shm" || mount -t tmpfs -o mode=1777,size=64m shm "$root/dev/shm"
}
if [ -f "$root/.pgwarehouse-ready" ]; then
  # A root built before a package joined the list gets it now.
  missing=()
  for p in "${packages[@]}"; do
    chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    chroot "$root" apt-get update -qq >&2
    chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >&2
    chroot "$root" apt-get clean >&2
  fi
  mount_kernel_files
  echo "$root"
  exit 0
fi
if ! command -v debootstrap >/dev/null; then
  apt-get install -y -qq debootstrap >&2
fi
work="$root.partial"
rm -rf "$work"
mkdir -p "$(dirname "$root")"
echo "building the PostgreSQL 17 (trixie) root in $root ..." >&2
debootstrap --variant=minbase trixie "$work" "$mirror" >&2
# No service may start inside the root while packages install.
printf '#!/bin/sh\nexit 101\n' >"$work/usr/sbin/policy-rc.d"
chmod +x "$work/usr/sbin/policy-rc.d"
mkdir -p "$work/etc/postgresql-common/createcluster.d"
echo "create_main_cluster = false" >"$work/etc/postgresql-common/createcluster.d/no-main.conf"
chroot "$work" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${packages[@]}" >&2
chroot "$work" apt-get clean >&2
touch "$work/.pgwarehouse-ready"
rm -rf "$root"
mv "$work" "$root"
mount_kernel_files
echo "$root"
