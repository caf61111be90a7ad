// Byte-level BPE tokenizers read from Hugging Face's tokenizer.json (Qwen2, DeepSeek-R1-Distill,
// Llama 3, GPT-2 style): normalizer, pre-tokenizer split pattern, byte-to-unicode alphabet,
// merges, added tokens.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer.h"

namespace resa {

class BpeTokenizer : public Tokenizer {
 public:
  // Parses tokenizer.json text; `source` names the file in error messages. Throws resa::Error:
  // kCorruptFile for malformed JSON, vocabularies and merges; kUnsupported (naming what) when
  // the file is valid but not a byte-level BPE we run (a sentencepiece-style Metaspace or
  // Unigram tokenizer, a normalizer or pre-tokenizer type we do not implement).
  static std::unique_ptr<BpeTokenizer> from_json(std::string_view json_text,
                                                 const std::string& source);
  static std::unique_ptr<BpeTokenizer> from_file(const std::filesystem::path& path);
  ~BpeTokenizer() override;

  // Text to ids as tokenizers' encode(text, add_special_tokens=False) with
  // encode_special_tokens=True: added tokens that are not special (DeepSeek's <think>) are
  // matched, special ones are text. Invalid UTF-8 is tokenized byte-exactly: invalid bytes
  // become pieces of their own, which the byte alphabet encodes, so token_bytes() gives the
  // input back.
  std::vector<int> encode(std::string_view text) const override;
  // Raw bytes (may be part of a UTF-8 character); "" for special added tokens.
  std::string token_bytes(int id) const override;
  int vocab_size() const override;

  // The id of a vocabulary entry (spelled in the byte-level alphabet, "Ġthe") or of an added
  // token ("<think>"); -1 when there is none.
  int token_id(std::string_view text) const;
  // Whether the file's normalizer includes Unicode NFC (Qwen2's does, Llama 3's has none).
  bool normalizes_nfc() const;

 private:
  struct Impl;
  BpeTokenizer();
  std::unique_ptr<Impl> impl_;
};

}  // namespace resa
