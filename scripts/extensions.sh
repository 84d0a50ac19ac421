#!/usr/bin/env bash
# Builds our Postgres extensions (extensions/) with pgrx and installs them:
#   scripts/extensions.sh        into the host's PostgreSQL 15 (Debian's pg_config);
#   scripts/extensions.sh pg17   into the PostgreSQL 17 trixie root (scripts/pg17-root.sh), through
#                                a pg_config that runs inside the root and answers with host paths.
# Debian's build packages and cargo-pgrx at the version extensions/Cargo.lock pins are installed
# when missing; nothing else is downloaded (pgrx is pointed at the existing pg_config).
# pgrx's configuration lives in the clone (PGRX_HOME=target/pgrx), written here from what this
# machine has: a ~/.pgrx/config.toml naming another clone's (deleted) pg_config would otherwise
# break every pgrx build, since pgrx asks each configured pg_config for its version.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PGRX_HOME=${PGRX_HOME:-$root/target/pgrx}
generation=${1:-pg15}
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
# postgresql-server-dev-15 comes with the server, at its version (scripts/deps.sh).
packages=(clang libclang-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} ..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
fi
version=$(grep -A1 '^name = "pgrx"$' "$root/extensions/Cargo.lock" | sed -n 's/^version = "\(.*\)"$/\1/p')
if ! cargo pgrx --version 2>/dev/null | grep -qF "$version"; then
  echo "installing cargo-pgrx $version (a few minutes, once) ..." >&2
  cargo install cargo-pgrx --version "$version" --locked --quiet
fi

pg15_config=/usr/lib/postgresql/15/bin/pg_config
pg17_root=${PGW_PG17_ROOT:-/var/cache/pgwarehouse/trixie-pg17}
pg17_config="$root/target/pg17-root-pg_config"
case "$generation" in
  pg15)
    pg_config=$pg15_config
    features=(--features pg15)
    ;;
  pg17)
    [ -f "$pg17_root/.pgwarehouse-ready" ] || { echo "no PostgreSQL 17 root at $pg17_root: run make deps-pg17" >&2; exit 1; }
    [ -d "$pg17_root/usr/include/postgresql/17/server" ] || $sudo chroot "$pg17_root" /usr/bin/env \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-server-dev-17 >&2
    pg_config=$pg17_config
    mkdir -p "$(dirname "$pg_config")"
    cat >"$pg_config" <<WRAPPER
#!/bin/sh
# pg_config of the PostgreSQL 17 root, its paths seen from the host.
out=\$($sudo chroot "$pg17_root" /usr/lib/postgresql/17/bin/pg_config "\$@") || exit \$?
case "\$out" in /*) printf '%s%s\n' "$pg17_root" "\$out" ;; *) printf '%s\n' "\$out" ;; esac
WRAPPER
    chmod +x "$pg_config"
    features=(--no-default-features --features pg17)
    ;;
  *) echo "usage: $0 [pg15|pg17]" >&2; exit 2 ;;
esac
# Every generation this clone can build for, and nothing else; rewritten only when it changes.
config="[configs]"$'\n'"pg15 = \"$pg15_config\""$'\n'
if [ -x "$pg17_config" ] && [ -f "$pg17_root/.pgwarehouse-ready" ]; then
  config+="pg17 = \"$pg17_config\""$'\n'
fi
mkdir -p "$PGRX_HOME"
[ "$(cat "$PGRX_HOME/config.toml" 2>/dev/null)"$'\n' = "$config" ] || printf '%s' "$config" >"$PGRX_HOME/config.toml"
for extension in prometheus_fdw clerk_fdw; do
  (cd "$root/extensions/$extension" && cargo pgrx install --release --pg-config "$pg_config" "${features[@]}" ${sudo:+--sudo} >&2)
done
