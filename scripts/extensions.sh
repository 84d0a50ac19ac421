#!/usr/bin/env bash
# Builds our Postgres extensions (extensions/) and installs them into the host's PostgreSQL 15:
# Debian's build packages, cargo-pgrx at the version extensions/Cargo.lock pins, pgrx pointed at
# Debian's pg_config (nothing is downloaded), then `cargo pgrx install --release`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
packages=(postgresql-server-dev-15 clang libclang-dev pkg-config)
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
pg_config=/usr/lib/postgresql/15/bin/pg_config
grep -qs "^pg15 = \"$pg_config\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" || cargo pgrx init --pg15="$pg_config" >&2
for extension in prometheus_fdw clerk_fdw; do
  (cd "$root/extensions/$extension" && cargo pgrx install --release --pg-config "$pg_config" ${sudo:+--sudo} >&2)
done
