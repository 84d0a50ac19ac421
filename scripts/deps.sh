#!/usr/bin/env bash
# Installs what the tests and the local mode need from Debian: PostgreSQL 15 with pg_cron,
# pg_partman and postgres_fdw (in the server package), and debootstrap for the PostgreSQL 17
# root, lua5.4 for the Argo CD health check test, prometheus (with promtool) for the
# prometheus_fdw tests, pgbackrest for backups and restores. Does nothing when all are present.
set -euo pipefail
packages=(postgresql-15 postgresql-15-cron postgresql-15-partman debootstrap lua5.4 prometheus pgbackrest python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# moto[server], the S3-compatible server of the backup tests, from PyPI into .cache/moto.
install_moto() {
  [ -x .cache/moto/bin/moto_server ] && return 0
  echo "installing moto[server] into .cache/moto ..." >&2
  python3 -m venv .cache/moto
  .cache/moto/bin/pip install -q 'moto[server]==5.2.5' >&2
}
if [ ${#missing[@]} -eq 0 ]; then
  install_moto
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
echo "installing ${missing[*]} ..." >&2
# The tests and `local up` start their own servers; Debian's default cluster is not needed.
$sudo mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.d/pgwarehouse.conf >/dev/null
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
install_moto
