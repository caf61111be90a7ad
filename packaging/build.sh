#!/usr/bin/env bash
# Fresh Debian 12 to a built tree: installs what is missing, configures and builds in build/.
# Extra arguments go to CMake's configure step (e.g. -DRESA_CUDA=OFF).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
packaging/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j"$(nproc)"
