#!/usr/bin/env bash
# Prints the path of a local interpreter matching the functions' Lambda runtime (Globals/Runtime
# in template.yaml, e.g. python3.13): `sam build` needs one on PATH to build the functions and
# the layer, and the built-package test runs the artifacts with it.
set -euo pipefail
cd "$(dirname "$0")/.."
runtime=$(sed -n 's/^ *Runtime: *\(python3\.[0-9]*\) *$/\1/p' template.yaml | head -1)
[ -n "$runtime" ] || { echo "no pythonX.Y Runtime in template.yaml" >&2; exit 1; }
version=${runtime#python}
candidates=("$(command -v "$runtime" || true)")
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
for dir in "$pyenv_root"/versions/"$version".*/bin /usr/local/bin /usr/bin; do
  candidates+=("$dir/$runtime")
done
for candidate in "${candidates[@]}"; do
  # A pyenv shim exists even when that version is not selected: run it to be sure.
  if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$version')" 2>/dev/null; then
    echo "$candidate"
    exit 0
  fi
done
cat >&2 <<MSG
No $runtime interpreter found: sam build needs one for Runtime: $runtime.
Install it (pyenv install $version, or your distribution's python$version), put it on PATH,
or move the template to a runtime you have (README, "Runtime and architecture").
MSG
exit 1
