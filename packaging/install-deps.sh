#!/usr/bin/env bash
# Installs the Debian 12 packages ReSA Chat needs to build, test and run (only what is
# missing). The CUDA backend is built as well when nvcc is found (CUDA toolkit installed
# separately); everything builds and passes without it.
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build pkg-config
  qt6-base-dev qt6-charts-dev libqt6opengl6-dev libqt6svg6-dev qt6-pdf-dev libqt6sql6-sqlite
  libsqlite3-dev libsentencepiece-dev sentencepiece nlohmann-json3-dev libpcre2-dev libicu-dev
  fonts-dejavu-core
  appstream desktop-file-utils file
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
