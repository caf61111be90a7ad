#!/usr/bin/env bash
# The README's CPU figure: decode tok/s at a 4K-token context, dense vs resa, for the tiny
# preset and TinyLlama-1.1B shapes (random weights), from `resa-cli --json`.
# Usage: tools/bench/cpu_figure.sh [build_dir] [out_dir]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build}"
out="${2:-$root/docs/benchmarks/cpu}"
mkdir -p "$out"
doc="$(mktemp)"
trap 'rm -f "$doc"' EXIT
# About 4,000 tokens for the byte-level tokenizer of the presets (one token per byte).
python3 - "$doc" <<'PY'
import sys
words = "the report describes how sparse attention reads only the blocks that matter".split()
text, i = [], 0
while sum(len(w) + 1 for w in text) < 3990:
    text.append(words[i % len(words)] + ("." if i % 13 == 12 else ""))
    i += 1
open(sys.argv[1], "w").write(" ".join(text))
PY
commit="$(git -C "$root" rev-parse --short HEAD)"
for preset in tiny tinyllama-1.1b; do
  for mode in dense resa; do
    f="$out/${preset}_${mode}_4k.json"
    "$build/app/resa-cli" --random-weights "$preset" --file "$doc" --prompt "Summarise." \
      --ctx 4608 --mode "$mode" --max-new-tokens 64 --prefill-chunk 512 --quiet --json \
      > "$f.tmp"
    python3 - "$f.tmp" "$f" "$preset" "$mode" "$commit" <<'PY'
import json, platform, subprocess, sys
r = json.load(open(sys.argv[1]))
r.pop("text", None)
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                     capture_output=True, text=True).stdout.strip()
r["provenance"] = {
    "command": f"resa-cli --random-weights {sys.argv[3]} --file <4K-token document> "
               f"--prompt Summarise. --ctx 4608 --mode {sys.argv[4]} --max-new-tokens 64 "
               "--prefill-chunk 512 --quiet --json",
    "commit": sys.argv[5], "machine": f"{cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores",
}
json.dump(r, open(sys.argv[2], "w"), indent=1)
print(f"{sys.argv[3]:16s} {sys.argv[4]:6s} prompt {r['prompt_tokens']} tok  prefill {r['prefill_tokens_per_s']:.1f} tok/s  "
      f"decode {r['decode_tokens_per_s']:.2f} tok/s  KV read {100*r['kv_read_fraction']:.1f}%  "
      f"rectifications {r['rectifications']}")
PY
    rm -f "$f.tmp"
  done
done
