#!/usr/bin/env bash
# Run the test suite (sets up first if needed; extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --test
# The terminal UI's end-to-end test drives a real terminal through tmux: get it if we can.
if ! command -v tmux >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  echo "==> installing tmux (for tests/tui/test_e2e_tmux.py)"
  $sudo apt-get install -y -qq tmux >/dev/null 2>&1 \
    || { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq tmux >/dev/null 2>&1; } \
    || echo "test.sh: could not install tmux; the terminal end-to-end test will fail (apt-get install tmux)" >&2
fi
exec .venv/bin/python -m pytest "$@"
