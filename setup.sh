#!/usr/bin/env bash
# Set up everything and open the assistant:
#   virtualenv in .venv, the package and its dependencies (llama-cpp-python compiles
#   llama.cpp the first time: ~7-10 minutes on 2 cores), the default model into models/.
# Safe to re-run: finished steps are skipped.
#   ./setup.sh            set up, then open the assistant
#   ./setup.sh --no-open  set up only
#   ./setup.sh --test     set up with the test dependencies, do not open
set -euo pipefail
cd "$(dirname "$0")"

open=1
extras=""
for arg in "$@"; do
  case "$arg" in
    --no-open) open=0 ;;
    --test) extras="test"; open=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup.sh: $python not found; install Python 3.11 or newer" >&2; exit 2
fi
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "setup.sh: Python 3.11 or newer is needed, $python is $("$python" -V 2>&1)" >&2; exit 2
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$python" -m venv .venv
fi

# Reinstall only when pyproject.toml changed (or the extras asked for are missing).
hash="$(.venv/bin/python -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest()[:16])')"
stamp=".venv/.installed-$hash${extras:+-$extras}"
if [ ! -f "$stamp" ] && { [ -n "$extras" ] || [ ! -f ".venv/.installed-$hash-test" ]; }; then
  for tool in cc c++ cmake; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "setup.sh: '$tool' not found; llama-cpp-python needs a C/C++ compiler and cmake to build" >&2
      exit 2
    fi
  done
  echo "==> installing the assistant${extras:+ with [$extras]} (first time: llama.cpp compiles, ~7-10 min on 2 cores)"
  .venv/bin/python -m pip install --disable-pip-version-check --quiet --upgrade pip
  .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -e ".${extras:+[$extras]}"
  rm -f .venv/.installed-*"${extras:+-$extras}"
  touch "$stamp"
fi

echo "==> models"
.venv/bin/assistant setup

if [ "$open" = 1 ]; then
  if [ -t 0 ] && [ -t 1 ]; then
    echo "==> opening the assistant (next time: .venv/bin/assistant)"
    exec .venv/bin/assistant
  fi
  echo "Ready. Start it with: .venv/bin/assistant"
fi
