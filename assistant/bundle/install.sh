#!/bin/sh
# Install the offline assistant from this bundle: ./install.sh [PREFIX] (default: ./assistant next
# to this directory). Needs python3 of the version the bundle was made for; no network, no compiler.
# PYTHON=/path/to/python3 picks the interpreter.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
if ! command -v "$py" >/dev/null 2>&1; then
  echo "install.sh: $py not found; install Python 3 (the version in $here/README.txt) or set PYTHON=/path/to/python3" >&2
  exit 2
fi
exec "$py" "$here/install.py" "$@"
