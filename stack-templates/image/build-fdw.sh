#!/usr/bin/env bash
# Builds one pgrx foreign data wrapper at an upstream tag with the cargo-pgrx version its
# Cargo.lock pins, and stages its files under /out for the final image.
set -euo pipefail
repo=$1 ref=$2 pg_major=$3
name=$(basename "$repo")
git clone --depth 1 --branch "$ref" "https://github.com/$repo" "/src/$name"
cd "/src/$name"
pgrx=$(awk '/^name = "pgrx"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
cargo install --locked cargo-pgrx --version "$pgrx" --root "/opt/pgrx-$pgrx"
"/opt/pgrx-$pgrx/bin/cargo-pgrx" pgrx init "--pg$pg_major=/usr/lib/postgresql/$pg_major/bin/pg_config"
"/opt/pgrx-$pgrx/bin/cargo-pgrx" pgrx package --pg-config "/usr/lib/postgresql/$pg_major/bin/pg_config"
cp -r "target/release/$name-pg$pg_major/." /out/
