#!/usr/bin/env bash
# Trains the demo model's sentencepiece tokenizer with Debian's spm_train (package
# sentencepiece): BPE, 8,000 pieces, byte fallback (no <unk> on any input), digits split one by
# one (pass keys and numbers become one token a digit), and the ChatML markers as user-defined
# symbols so that <|im_start|> / <|im_end|> are single tokens.
#   ids: 0 <unk>, 1 <s>, 2 </s>, 3 <|im_start|>, 4 <|im_end|>, then the pieces
# Usage: tools/train/train_tokenizer.sh [OUT_DIR]   (reads OUT_DIR/corpus.txt.xz)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/out}"
command -v spm_train >/dev/null || {
  echo "train_tokenizer: spm_train not found (apt-get install sentencepiece)" >&2
  exit 1
}
[[ -f "$out/corpus.txt.xz" ]] || {
  echo "train_tokenizer: $out/corpus.txt.xz not found (run make_corpus.sh first)" >&2
  exit 1
}

# spm_train reads one sentence a line; a 12M-line sample of the corpus is plenty.
xz -dc "$out/corpus.txt.xz" | tr -d '\f' | awk 'length($0) > 0' > "$out/spm_input.txt"
spm_train \
  --input="$out/spm_input.txt" \
  --model_prefix="$out/tokenizer" \
  --model_type=bpe \
  --vocab_size=8000 \
  --character_coverage=1.0 \
  --byte_fallback=true \
  --split_digits=true \
  --allow_whitespace_only_pieces=true \
  --remove_extra_whitespaces=false \
  --normalization_rule_name=identity \
  --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 \
  --user_defined_symbols='<|im_start|>,<|im_end|>' \
  --input_sentence_size=3000000 --shuffle_input_sentence=true \
  --max_sentence_length=16384 \
  --num_threads="$(nproc)" \
  --seed_sentencepiece_size=1000000 \
  --train_extremely_large_corpus=false
rm -f "$out/spm_input.txt"
ls -l "$out/tokenizer.model" "$out/tokenizer.vocab"
