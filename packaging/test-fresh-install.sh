#!/usr/bin/env bash
# Installs a built resa-chat .deb into a fresh Debian 12 (bookworm) root with exactly the
# documented command (`apt-get install ./resa-chat_*.deb`), runs the installed programs there
# as a normal user (CLI answer from the bundled demo model, GUI screenshots on the offscreen
# platform), validates the desktop entry and AppStream metadata, and removes the package again.
#
# Usage (as root, on Debian 12 or any host with debootstrap):
#   packaging/test-fresh-install.sh build-deb/resa-chat_<version>_amd64.deb [ROOT] [SHOTS_DIR]
# ROOT (default /var/tmp/resa-fresh) is made with `debootstrap --variant=minbase bookworm`
# unless it already holds a bookworm root; SHOTS_DIR (default ROOT/../resa-fresh-shots)
# receives the screenshots. Prints PASS/FAIL per step; exits 1 if any step failed.
# Needs: debootstrap (apt-get install debootstrap) and network access to deb.debian.org.
set -uo pipefail

usage() { echo "usage: $0 DEB [ROOT] [SHOTS_DIR]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 3 ]] || usage
deb="$(readlink -f "$1")"
root="${2:-/var/tmp/resa-fresh}"
shots="${3:-$(dirname "$root")/resa-fresh-shots}"
mirror="${RESA_MIRROR:-http://deb.debian.org/debian}"
[[ -f "$deb" ]] || { echo "no such file: $1" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "$0 must run as root (debootstrap, chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "needs debootstrap: apt-get install debootstrap" >&2; exit 2; }

user=resa
home=/home/$user
failures=0
results=()

section() { printf '\n==== %s ====\n' "$*"; }
record() {  # record NAME RC
  if [[ $2 -eq 0 ]]; then echo "PASS: $1"; results+=("PASS  $1")
  else echo "FAIL: $1 (exit $2)"; results+=("FAIL  $1"); failures=$((failures + 1)); fi
}
step() {  # step NAME CMD...   runs CMD, shows it and its output, records PASS/FAIL
  local name="$1"; shift
  section "$name"
  echo "+ $*"
  "$@"
  record "$name" $?
}
in_root() { chroot "$root" "$@"; }
# As the normal user, with a clean environment (no host variables leak in).
as_user() {
  chroot --userspec="$user:$user" "$root" /usr/bin/env -i HOME="$home" USER="$user" \
    LOGNAME="$user" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 "$@"
}

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null; done
}
trap cleanup EXIT
mount_in_root() {  # mount_in_root TARGET MOUNT-ARGS...
  local target="$root/$1"; shift
  mountpoint -q "$target" && return 0
  mkdir -p "$target" && mount "$@" "$target" && mounted+=("$target")
}

echo "resa-chat fresh-install test: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "host: $(uname -srm), Debian $(cat /etc/debian_version 2>/dev/null)"
echo "package: $deb ($(stat -c %s "$deb") bytes)"
echo "root: $root"
dpkg-deb --field "$deb" Package Version Architecture Depends Recommends

# ---- 1. the fresh root ------------------------------------------------------------------------
if [[ -f "$root/etc/debian_version" && -x "$root/usr/bin/apt-get" ]]; then
  section "debootstrap"
  echo "reusing $root (Debian $(cat "$root/etc/debian_version"))"
  record "debootstrap (reused root)" 0
else
  step "debootstrap --variant=minbase bookworm" \
    nice -n 10 debootstrap --variant=minbase bookworm "$root" "$mirror"
  [[ -x "$root/usr/bin/apt-get" ]] || { echo "FAIL: no usable root; stopping"; exit 1; }
fi
# The root's own sources: bookworm, bookworm-updates and the security archive.
cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
mount_in_root proc -t proc proc
mount_in_root sys -t sysfs sysfs
mount_in_root dev --bind /dev
mount_in_root dev/pts --bind /dev/pts
mount_in_root tmp -t tmpfs tmpfs -o mode=1777

if in_root dpkg-query -W -f='${Status}' resa-chat 2>/dev/null | grep -q 'ok installed'; then
  echo "resa-chat is still installed in the reused root (an earlier run stopped early): purging it"
  in_root apt-get purge -y resa-chat && in_root apt-get autoremove -y --purge
fi
section "root before install"
echo "Debian $(cat "$root/etc/debian_version"); installed packages: $(in_root dpkg-query -W -f='${Status}\n' | grep -c 'ok installed')"
cat "$root/etc/apt/sources.list"

if ! in_root id "$user" >/dev/null 2>&1; then
  if [[ -x "$root/usr/sbin/adduser" ]]; then
    in_root adduser --disabled-password --gecos "" "$user" >/dev/null
  else  # minbase has useradd (passwd, Priority: required) but not adduser
    in_root useradd --create-home --shell /bin/bash "$user"
  fi
fi
echo "user: $(in_root id "$user")"

# ---- 2. the install, with the documented command -----------------------------------------------
debname="$(basename "$deb")"
cp "$deb" "$root/root/$debname"
step "apt-get update" in_root apt-get update
section "apt-get install -y ./$debname"
echo "+ cd /root && apt-get install -y ./$debname"
in_root sh -c "cd /root && DEBIAN_FRONTEND=noninteractive apt-get install -y ./$debname" \
  2>&1 | tee "$root/root/install.out"
rc=${PIPESTATUS[0]}
record "apt-get install -y ./$debname" "$rc"
grep -E '^[0-9]+ upgraded, [0-9]+ newly installed' "$root/root/install.out"
echo "installed packages now: $(in_root dpkg-query -W -f='${Status}\n' | grep -c 'ok installed')"
step "dpkg -s resa-chat (installed)" \
  sh -c "chroot '$root' dpkg -s resa-chat | grep -E '^(Package|Status|Version|Depends|Recommends):' && chroot '$root' dpkg -s resa-chat | grep -q 'Status: install ok installed'"
step "apt-get check (no broken dependencies)" in_root apt-get check
# Every library of every installed program resolves inside the root.
section "ldd of the installed programs"
missing=0
for prog in resa-chat resa-cli resa-bench resa-eval; do
  echo "+ ldd /usr/bin/$prog | grep 'not found'"
  if in_root ldd "/usr/bin/$prog" | grep 'not found'; then missing=1; fi
done
record "all shared libraries resolve (ldd)" "$missing"
section "installed files"
in_root dpkg -L resa-chat | sort | while read -r f; do
  [[ -f "$root$f" ]] && printf '%10d  %s\n' "$(stat -c %s "$root$f")" "$f"
done

if [[ $rc -ne 0 ]]; then
  echo; echo "the install failed: skipping the run checks"
  printf '%s\n' "${results[@]}"
  exit 1
fi

# ---- 3. the programs, as the normal user -------------------------------------------------------
for prog in resa-cli resa-chat resa-bench resa-eval; do
  extra=()
  [[ $prog == resa-chat ]] && extra=(QT_QPA_PLATFORM=offscreen)  # --help/--version need no display
  step "$prog --version" as_user "${extra[@]}" "$prog" --version
  step "$prog --help" as_user "${extra[@]}" "$prog" --help
done

as_user sh -c "cat > $home/doc.txt" <<'EOF'
The house at the end of the road has three doors. The red door leads to the kitchen, where
the family cooks dinner every evening. The green door opens onto a small garden full of
tomatoes and herbs. The code of the blue door is 7316. Behind the blue door is a quiet study
with a desk, a lamp and shelves of old books.
EOF
section "resa-cli answers from the bundled demo model (no --model)"
cmd=(resa-cli --prompt "What is the code of the blue door?" --file "$home/doc.txt"
     --max-new-tokens 16 --device cpu)
echo "document ($home/doc.txt):"; sed 's/^/  | /' "$root$home/doc.txt"
echo "+ ${cmd[*]}"
answer="$(as_user "${cmd[@]}" 2>"$root/tmp/cli.err")"
rc=$?
cat "$root/tmp/cli.err"
echo "answer: $answer"
record "resa-cli runs on the demo model (exit 0)" "$rc"
grep -q 7316 <<<"$answer"
record "the answer contains 7316" $?

section "resa-chat GUI on the offscreen platform"
as_user mkdir -p /tmp/shots
echo "+ QT_QPA_PLATFORM=offscreen resa-chat --screenshot /tmp/shots"
as_user QT_QPA_PLATFORM=offscreen timeout 600 resa-chat --screenshot /tmp/shots
rc=$?
ls -l "$root/tmp/shots"
[[ $rc -eq 0 && -s "$root/tmp/shots/main-window.png" && -s "$root/tmp/shots/first-run.png" ]]
record "resa-chat --screenshot (GUI starts on the demo model, writes PNGs)" $?
mkdir -p "$shots" && cp "$root"/tmp/shots/*.png "$shots"/ 2>/dev/null && echo "screenshots copied to $shots"

# ---- 4. the installed desktop entry and AppStream metadata -------------------------------------
desktop=/usr/share/applications/resa-chat.desktop
metainfo=/usr/share/metainfo/io.github.resa_chat.ResaChat.metainfo.xml
for tool in desktop-file-validate appstreamcli; do
  if [[ -x "$root/usr/bin/$tool" ]]; then run=(in_root "$tool"); where="in the root"
  elif command -v "$tool" >/dev/null; then run=("$tool"); where="host's tool, on the root's files"
  else echo "SKIP: $tool (not available)"; continue; fi
  if [[ $tool == desktop-file-validate ]]; then
    [[ ${run[0]} == in_root ]] && f=$desktop || f=$root$desktop
    step "desktop-file-validate $desktop ($where)" "${run[@]}" "$f"
  else
    [[ ${run[0]} == in_root ]] && f=$metainfo || f=$root$metainfo
    step "appstreamcli validate --no-net $metainfo ($where)" "${run[@]}" validate --no-net "$f"
  fi
done
step "icon installed" test -s "$root/usr/share/icons/hicolor/scalable/apps/resa-chat.svg"

# ---- 5. removal --------------------------------------------------------------------------------
step "apt-get remove -y resa-chat" in_root env DEBIAN_FRONTEND=noninteractive apt-get remove -y resa-chat
section "after removal"
left="$(in_root dpkg-query -W -f='${Status}' resa-chat 2>/dev/null)"
echo "dpkg status: ${left:-not installed (no record left)}"
leftover=0
for f in /usr/bin/resa-chat /usr/bin/resa-cli /usr/bin/resa-bench /usr/bin/resa-eval \
         /usr/share/resa-chat $desktop $metainfo; do
  [[ -e "$root$f" ]] && { echo "left behind: $f"; leftover=1; }
done
[[ $leftover -eq 0 && "$left" != *"ok installed"* ]]
record "resa-chat removed, no files left behind" $?
# Back to the bare root (drops the dependencies), so the next run starts fresh again.
in_root env DEBIAN_FRONTEND=noninteractive apt-get autoremove -y --purge >/dev/null
in_root apt-get purge -y resa-chat >/dev/null 2>&1
rm -f "$root/root/$debname" "$root/root/install.out"
echo "after autoremove --purge: installed packages: $(in_root dpkg-query -W -f='${Status}\n' | grep -c 'ok installed')"

section "summary"
printf '%s\n' "${results[@]}"
if [[ $failures -eq 0 ]]; then echo "ALL PASSED"; exit 0; fi
echo "$failures step(s) FAILED"; exit 1
