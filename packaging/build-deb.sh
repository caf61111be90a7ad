#!/usr/bin/env bash
# Builds build/resa-chat_<version>_<arch>.deb: installs what is missing, configures, builds and
# runs CPack. Extra arguments go to CMake's configure step (e.g. -DRESA_CUDA=OFF).
# Install it with: sudo apt-get install ./build/resa-chat_*.deb
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
packaging/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j"$(nproc)" --target package
ls -l build/resa-chat_*.deb
