#!/usr/bin/env bash
# Builds build-deb/resa-chat_<version>_<arch>.deb: installs what is missing, configures a
# portable CPU build and runs CPack. Extra arguments go to CMake's configure step.
#   -DRESA_NATIVE=OFF: no -march=native (the package must run on any x86-64 CPU);
#   -DRESA_CUDA=OFF:   Debian 12 ships no CUDA 13 runtime (libcudart, libcublas) to depend on,
#                      so the package is the CPU build; on an NVIDIA machine with the CUDA
#                      toolkit, build from source (README, "Two commands") for the GPU backend.
# Install it with: sudo apt-get install ./build-deb/resa-chat_*.deb
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
packaging/install-deps.sh
cmake -S . -B build-deb -G Ninja -DCMAKE_BUILD_TYPE=Release -DRESA_NATIVE=OFF -DRESA_CUDA=OFF \
  -DRESA_BUILD_TESTS=OFF "$@"
cmake --build build-deb -j"$(nproc)" --target package
ls -l build-deb/resa-chat_*.deb
