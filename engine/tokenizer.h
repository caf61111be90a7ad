// Tokenizers: sentencepiece (tokenizer.model), byte-level BPE (tokenizer.json, bpe_tokenizer.h)
// and a byte-level fallback for synthetic models.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace resa {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Plain text to ids: no BOS, special-token text is not recognised.
  virtual std::vector<int> encode(std::string_view text) const = 0;
  // The bytes a token stands for when streaming an answer (sentencepiece's "▁" is a space and
  // <0xAB> byte-fallback pieces are that byte). Control tokens give "".
  virtual std::string token_bytes(int id) const = 0;
  virtual int vocab_size() const = 0;

  // Text that may contain special-token strings ("<s>", "<|im_start|>", ...): those become
  // their ids, the text between them is encoded with encode().
  std::vector<int> encode_with_specials(std::string_view text) const;
  // Ids back to text (UTF-8; control tokens dropped). A leading space that sentencepiece adds
  // as its dummy prefix is removed when `strip_leading_space`.
  std::string decode(const std::vector<int>& ids, bool strip_leading_space = false) const;

  int bos_id() const { return bos_id_; }
  int eos_id() const { return eos_id_; }
  // Every id that ends an answer (eos, <|eot_id|>, <|im_end|>, generation_config's list).
  const std::vector<int>& stop_ids() const { return stop_ids_; }
  // Special-token text -> id (includes bos/eos and tokenizer_config's added tokens).
  const std::map<std::string, int>& special_tokens() const { return specials_; }
  std::string special_text(int id) const;  // "" when not a special token
  bool adds_dummy_prefix() const { return dummy_prefix_; }

  void set_bos(int id) { bos_id_ = id; }
  void set_eos(int id) { eos_id_ = id; }
  void add_stop_id(int id);
  void add_special(const std::string& text, int id);

 protected:
  int bos_id_ = -1;
  int eos_id_ = -1;
  bool dummy_prefix_ = false;
  std::vector<int> stop_ids_;
  std::map<std::string, int> specials_;
};

// tokenizer.model from `model_dir`, with the special tokens of tokenizer_config.json
// (added_tokens_decoder, bos_token, eos_token) and generation_config.json (eos_token_id, a
// number or a list). `config_bos` / `config_eos` come from config.json (-1 when absent).
// Without tokenizer.model, a byte-level BPE tokenizer.json (Qwen2, Llama 3) is read instead.
// Throws resa::Error naming the folder and what to do when neither is there.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& model_dir, int config_bos,
                                          const std::vector<int>& config_eos);

// tokenizer_config.json's chat_template of `model_dir` (a string, or the "default" entry of a
// list of {name, template}), else the chat_template.jinja file; "" when the model has none.
std::string read_chat_template(const std::filesystem::path& model_dir);

// Byte-level tokenizer for models without a tokenizer of their own: ids 0..2 are <unk>, <s>,
// </s>; 3..258 are the bytes 0x00..0xff; then the chat specials of every ChatFormat so that
// templates work. Requires vocab_size >= 512.
std::unique_ptr<Tokenizer> make_byte_tokenizer(int vocab_size);

// Turns a stream of token bytes into whole UTF-8 characters: push() returns what is complete,
// flush() the rest (invalid sequences as U+FFFD).
class Utf8Stream {
 public:
  std::string push(std::string_view bytes);
  std::string flush();

 private:
  std::string pending_;
};

}  // namespace resa
