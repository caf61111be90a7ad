#!/usr/bin/env bash
# Builds the training corpus of the demo model from Debian packages: English prose (the Debian
# handbook and reference, the King James Bible, the Python 3.11 documentation, manual pages, the
# Linux kernel's Documentation/) and some code (Python's standard library, part of the kernel's
# C sources), cleaned to plain text with the Python standard library only, and packed as
#   tools/train/out/corpus.txt.xz   (documents separated by a line holding only a form feed)
# Needs root for apt-get (or the packages already installed; SKIP_APT=1 skips the install).
# Usage: tools/train/make_corpus.sh [OUT_DIR]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/out}"
mkdir -p "$out"

packages=(debian-handbook debian-reference-en bible-kjv-text bible-kjv python3-doc manpages
          manpages-dev linux-source-6.1 xz-utils python3)
if [[ "${SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "make_corpus: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# The Bible as the bible-kjv program prints it (its data file is compressed in its own format).
bible "Gen1:1-Rev22:21" > "$out/bible.txt"

# Manual pages of a fixed list of packages (those installed among them): the corpus must not
# depend on whatever else this machine has.
man_packages=(manpages manpages-dev coreutils util-linux bash grep sed findutils tar gzip
              xz-utils bzip2 diffutils less man-db apt dpkg procps iproute2 iputils-ping
              openssh-client git make binutils gcc-12 cpp-12 gdb rsync curl wget systemd
              sudo cron e2fsprogs mount login passwd adduser python3.11)
installed=()
for p in "${man_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && installed+=("$p")
done
dpkg -L "${installed[@]}" | grep '^/usr/share/man/man[1-8]/' | sort -u > "$out/man-files.txt"

python3 "$here/clean_corpus.py" --bible "$out/bible.txt" --man-list "$out/man-files.txt" \
  --out "$out/corpus.txt"
rm -f "$out/bible.txt" "$out/man-files.txt"
xz -T0 -9e -f "$out/corpus.txt"
ls -l "$out/corpus.txt.xz"
size=$(stat -c %s "$out/corpus.txt.xz")
if ((size > 40 * 1024 * 1024)); then
  echo "make_corpus: corpus.txt.xz is $size bytes, over the 40 MB budget" >&2
  exit 1
fi
sha256sum "$out/corpus.txt.xz" | tee "$out/corpus.txt.xz.sha256"
