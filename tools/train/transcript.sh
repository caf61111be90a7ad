#!/usr/bin/env bash
# The transcript of tools/train/README.md: the demo model answers a question about a long
# document it never saw in training (the sed FAQ from Debian's sed package, cut to about 6,800
# tokens, with one sentence added at 40% depth), in the three decoding modes.
# Usage: tools/train/transcript.sh [RESA_CLI]   (default build/app/resa-cli)
set -euo pipefail
cli="${1:-build/app/resa-cli}"
doc="$(mktemp --suffix=.txt)"
err="$(mktemp)"
trap 'rm -f "$doc" "$err"' EXIT
zcat /usr/share/doc/sed/sedfaq.txt.gz | python3 -c '
import sys
lines = sys.stdin.read().split("\n")[200:]
out, words = [], 0
for line in lines:
    out.append(line)
    words += len(line.split())
    if words > 2500:
        break
out.insert(len(out) * 2 // 5, "The code of the blue door is 7316.")
sys.stdout.write("\n".join(out))' > "$doc"
echo "document: $(wc -w < "$doc") words, sed FAQ lines 201+, fact at 40% depth"
for mode in dense sparse resa; do
  echo "\$ resa-cli --file sedfaq-part.txt --prompt \"What is the code of the blue door?\" --mode $mode --device cpu"
  OMP_WAIT_POLICY=PASSIVE "$cli" --file "$doc" --prompt "What is the code of the blue door?" \
    --mode "$mode" --device cpu --max-new-tokens 24 2> "$err"
  # The statistics line (the progress bar and the CPU note left out).
  tr '\r' '\n' < "$err" | grep -v '^prefill\|^resa: note\|^$' || true
done
