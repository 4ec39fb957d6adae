#!/usr/bin/env bash
# Creates (once) the virtual environment described by requirements.txt and prints its path.
# The environment lives in a cache folder keyed by the hash of requirements.txt, so clean clones
# (CI, new checkouts) reuse it instead of downloading the 800 MB MindSpore wheel again.
# .venv in the repository is a symbolic link to it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
req="$repo/requirements.txt"
key=$(sha256sum "$req" | cut -c1-16)
cache_root=${MASS_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mass-venv}
venv="$cache_root/$key"

pick_python() {
  for candidate in ${PYTHON:-} python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)'; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: MindSpore 2.10 needs CPython 3.10, 3.11 or 3.12; none found on PATH (set PYTHON=...)" >&2
  return 1
}

if [ ! -f "$venv/.complete" ]; then
  python=$(pick_python)
  echo "creating virtual environment $venv (first run only; MindSpore is an 800 MB download)" >&2
  # The marker file is written last, so an interrupted install is redone rather than reused.
  # (A venv cannot be built under a temporary name and moved: its scripts hold absolute paths.)
  rm -rf "$venv"
  mkdir -p "$cache_root"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -r "$req" >&2
  touch "$venv/.complete"
fi
ln -sfn "$venv" "$repo/.venv"
echo "$venv"
