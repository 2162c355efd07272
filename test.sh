#!/usr/bin/env bash
# Run the test suite (sets up first if needed; extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --test
exec .venv/bin/python -m pytest "$@"
