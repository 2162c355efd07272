#!/bin/sh
# A llama-cpp-python wheel that runs on any x86-64 CPU, for `assistant bundle --llama-wheel`.
#
# The wheel `./setup.sh` compiles is built for this CPU (-march=native) and can die with SIGILL on
# an older CPU at a site. This one is built with GGML_NATIVE=OFF and GGML_BACKEND_DL=ON +
# GGML_CPU_ALL_VARIANTS=ON: the CPU code is compiled once per x86-64 level (sse4.2 ... avx512)
# into libggml-cpu-<variant>.so, and the engine loads the best one for the CPU it runs on
# (engine/backend.py). Takes ~40 minutes on 2 cores (one build per variant); nothing is installed.
#
#   scripts/build_portable_llama.sh [OUT_DIR]     # default: dist/portable
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/dist/portable}
py=$root/.venv/bin/python
version=$("$py" -c 'from importlib.metadata import version; print(version("llama-cpp-python"))')
mkdir -p "$out"
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "building llama-cpp-python $version (portable: GGML_NATIVE=OFF, all CPU variants) into $out"
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
  "$py" -m pip wheel --no-deps --no-cache-dir -w "$tmp" "llama-cpp-python==$version"
mv "$tmp"/llama_cpp_python-*.whl "$out"/
ls "$out"/llama_cpp_python-*.whl
