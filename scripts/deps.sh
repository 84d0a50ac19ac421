#!/usr/bin/env bash
# Installs what the tests and the local mode need from Debian: PostgreSQL 15 with pg_cron,
# pg_partman and postgres_fdw (in the server package), and debootstrap for the PostgreSQL 17
# root, lua5.4 for the Argo CD health check test, prometheus (with promtool) for the
# prometheus_fdw tests, pgbackrest for backups and restores, patroni and etcd-server for stacks of
# more than one instance (local mode's lock store is etcd on loopback). Does nothing when all are present.
#
# PostgreSQL's packages (server, client, headers, pg_cron, pg_partman) are installed together,
# at one version, before any server starts: installing the headers later (the FDW build needs
# them) would upgrade the server's binaries under a running `local up` server.
set -euo pipefail
postgres_set=(postgresql-15 postgresql-client-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-partman)
packages=("${postgres_set[@]}" debootstrap lua5.4 prometheus pgbackrest python3-venv patroni etcd-server)
installed_version() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | sed -n 's/^install ok installed //p' || true; }
missing=()
for p in "${packages[@]}"; do
  [ -n "$(installed_version "$p")" ] || missing+=("$p")
done
# Server, client and headers at different versions: a partial upgrade happened; take them together.
versions=$(for p in postgresql-15 postgresql-client-15 postgresql-server-dev-15; do installed_version "$p"; done | sort -u | wc -l)
[ "$versions" -le 1 ] || missing+=("${postgres_set[@]}")
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
# One apt transaction for the whole PostgreSQL set, so every package lands at one version.
[[ " ${missing[*]} " == *" postgresql-"* ]] && missing+=("${postgres_set[@]}")
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "installing ${missing[*]} ..." >&2
# The tests and `local up` start their own servers; Debian's default cluster is not needed.
$sudo mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.d/pgwarehouse.conf >/dev/null
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
install_moto
