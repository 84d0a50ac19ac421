#!/usr/bin/env bash
# Builds Citus from the vendored source (third_party/citus: the v13.2.2 release, its licence and
# our one patch) and installs citus and citus_columnar:
#   scripts/citus.sh        into the host's PostgreSQL 15;
#   scripts/citus.sh pg17   into the PostgreSQL 17 root, through the pg_config wrapper that
#                           scripts/extensions.sh pg17 writes.
# Incremental: nothing is rebuilt while the installed library is the one these sources made.
# Built --without-libcurl: Citus then never reports statistics home, and needs no libcurl.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
generation=${1:-pg15}
sudo=$([ "$(id -u)" = 0 ] || echo sudo)
version=13.2.2
tarball="$root/third_party/citus/citus-$version.tar.gz"
patches=("$root"/third_party/citus/*.patch)

copt=""
case "$generation" in
  pg15) pg_config=/usr/lib/postgresql/15/bin/pg_config ;;
  pg17)
    pg_config="$root/target/pg17-root-pg_config"
    [ -x "$pg_config" ] || { echo "no $pg_config: run make extensions-pg17 first" >&2; exit 1; }
    copt="-include $root/third_party/citus/strlcpy-declaration.h"
    ;;
  *) echo "usage: $0 [pg15|pg17]" >&2; exit 2 ;;
esac

build_deps=(liblz4-dev libzstd-dev libkrb5-dev make gcc patch)
missing=()
for p in "${build_deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

libdir=$("$pg_config" --pkglibdir)
stamp="$libdir/citus.pgwarehouse-build"
want=$(cat "$tarball" "${patches[@]}" "$root/third_party/citus/strlcpy-declaration.h" "$0" | sha256sum | cut -d' ' -f1)
if [ -f "$libdir/citus.so" ] && [ -f "$libdir/citus_columnar.so" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "citus $version already installed for $generation"
  exit 0
fi

work="$root/target/citus/$generation"
rm -rf "$work"
mkdir -p "$work"
tar -xzf "$tarball" -C "$work"
src="$work/citus-$version"
for p in "${patches[@]}"; do patch -s -d "$src" -p1 <"$p"; done
(
  cd "$src"
  ./configure -q PG_CONFIG="$pg_config" --without-libcurl >/dev/null
  # No LLVM bitcode for JIT: the PostgreSQL 17 root's PGXS would ask for a clang this host lacks.
  make -s -j"$(nproc)" with_llvm=no COPT="$copt" >/dev/null
  $sudo make -s install with_llvm=no COPT="$copt" >/dev/null
)
echo "$want" | $sudo tee "$stamp" >/dev/null
echo "citus $version installed for $generation ($libdir)"
