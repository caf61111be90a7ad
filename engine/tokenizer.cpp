// Sentencepiece and byte-level tokenizers, special tokens from the HF json files, and a UTF-8
// stream for token-by-token output.
#include "engine/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "engine/bpe_tokenizer.h"
#include "engine/error.h"

namespace resa {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581, sentencepiece's space
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Specials that end an answer in the families of chat_format.h.
constexpr std::string_view kStopTokenTexts[] = {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>",
                                                "<|endoftext|>"};

// Chat specials the byte tokenizer reserves (ids 259..) and that a sentencepiece vocabulary may
// carry as user-defined symbols; in both cases they are special tokens, not text.
constexpr std::string_view kChatSpecials[] = {
    "<|im_start|>",      "<|im_end|>",      "<|begin_of_text|>", "<|start_header_id|>",
    "<|end_header_id|>", "<|eot_id|>",      "<|user|>",          "<|assistant|>",
    "<|system|>",        "<|end_of_text|>", "<|endoftext|>"};
constexpr int kByteChatSpecials = 9;  // the first nine are the byte tokenizer's

// ---- UTF-8 -----------------------------------------------------------------------------------

// Length of the sequence that `lead` starts, 0 when it cannot start one (continuation bytes,
// C0/C1 overlong leads, F5..FF beyond U+10FFFF).
int utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Whether `b` may follow `lead` as the second byte: the ranges of Unicode's table 3-7 that
// exclude overlongs (E0, F0), surrogates (ED) and values above U+10FFFF (F4).
bool valid_second(unsigned char lead, unsigned char b) {
  switch (lead) {
    case 0xE0:
      return b >= 0xA0 && b <= 0xBF;
    case 0xED:
      return b >= 0x80 && b <= 0x9F;
    case 0xF0:
      return b >= 0x90 && b <= 0xBF;
    case 0xF4:
      return b >= 0x80 && b <= 0x8F;
    default:
      return b >= 0x80 && b <= 0xBF;
  }
}

// Appends the valid characters of `in` to `out`, each maximal invalid subpart as one U+FFFD
// (Unicode's recommended substitution, what Python's and ICU's decoders do). Returns how many
// bytes were consumed: an incomplete sequence at the end stays unconsumed unless `final`.
size_t decode_utf8(std::string_view in, bool final, std::string& out) {
  size_t i = 0;
  while (i < in.size()) {
    const auto lead = static_cast<unsigned char>(in[i]);
    const int n = utf8_length(lead);
    if (n == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    size_t j = i + 1;
    bool bad = false;
    for (; j < i + size_t(n); ++j) {
      if (j == in.size()) break;
      const auto b = static_cast<unsigned char>(in[j]);
      if (!(j == i + 1 ? valid_second(lead, b) : (b >= 0x80 && b <= 0xBF))) {
        bad = true;
        break;
      }
    }
    if (bad) {
      out += kReplacement;
      i = j;
    } else if (j < i + size_t(n)) {  // ran out of bytes in the middle of a valid prefix
      if (!final) return i;
      out += kReplacement;
      i = j;
    } else {
      out.append(in.substr(i, size_t(n)));
      i = j;
    }
  }
  return i;
}

// ---- files -----------------------------------------------------------------------------------

std::optional<json> read_json(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(ErrorKind::kFileNotFound,
                "cannot open " + path.string() + " (check the file's permissions)");
  }
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(ErrorKind::kCorruptFile, path.string() + " is not valid JSON (" + e.what() +
                                             "); restore the file from the model's repository");
  }
}

// bos_token / eos_token are a string, an AddedToken object {"content": ...} or null.
std::string token_text(const json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return "";
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return "";
}

// generation_config.json's eos_token_id: a number or a list of numbers.
std::vector<int> id_list(const json& config, const char* key) {
  std::vector<int> ids;
  if (!config.is_object() || !config.contains(key)) return ids;
  const json& v = config[key];
  if (v.is_number_integer()) ids.push_back(v.get<int>());
  if (v.is_array()) {
    for (const json& x : v) {
      if (x.is_number_integer()) ids.push_back(x.get<int>());
    }
  }
  return ids;
}

struct AddedToken {
  int id;
  std::string content;
  bool special;
};

std::vector<AddedToken> added_tokens(const json& config, const fs::path& path) {
  std::vector<AddedToken> tokens;
  if (!config.is_object() || !config.contains("added_tokens_decoder")) return tokens;
  const json& decoder = config["added_tokens_decoder"];
  if (!decoder.is_object()) return tokens;
  for (const auto& [key, value] : decoder.items()) {
    int id = -1;
    try {
      size_t used = 0;
      id = std::stoi(key, &used);
      if (used != key.size()) id = -1;
    } catch (const std::exception&) {
      id = -1;
    }
    // The bound keeps a corrupt id from sizing the token table; real vocabularies are < 2^18.
    if (id < 0 || id >= (1 << 24) || !value.is_object() || !value.contains("content") ||
        !value["content"].is_string()) {
      throw Error(ErrorKind::kCorruptFile,
                  path.string() + ": added_tokens_decoder entry \"" + key +
                      "\" is not {\"<id>\": {\"content\": ...}}; restore the file from the "
                      "model's repository");
    }
    const bool special =
        value.contains("special") && value["special"].is_boolean() && value["special"].get<bool>();
    tokens.push_back({id, value["content"].get<std::string>(), special});
  }
  return tokens;
}

// ---- sentencepiece ---------------------------------------------------------------------------

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const fs::path& model_path) {
    const auto status = sp_.Load(model_path.string());
    if (!status.ok()) {
      throw Error(ErrorKind::kCorruptFile,
                  model_path.string() + " is not a sentencepiece model (" + status.ToString() +
                      "); restore tokenizer.model from the model's repository");
    }
    // The normalizer spec's add_dummy_prefix lives in the model proto, whose class needs
    // protobuf headers that Debian's libsentencepiece-dev does not ship; the effect is visible
    // instead: with the prefix, "a" encodes to a first piece that starts with U+2581.
    std::vector<std::string> pieces;
    dummy_prefix_ = sp_.Encode("a", &pieces).ok() && !pieces.empty() &&
                    std::string_view(pieces[0]).substr(0, kSpaceMarker.size()) == kSpaceMarker;
  }

  const sentencepiece::SentencePieceProcessor& processor() const { return sp_; }

  // A piece of the vocabulary whose text is exactly `text`, or -1.
  int piece_id(std::string_view text) const {
    const int id = sp_.PieceToId(text);
    if (id < 0 || id >= sp_.GetPieceSize() || sp_.IsUnknown(id)) return -1;
    return sp_.IdToPiece(id) == text ? id : -1;
  }

  // Added tokens beyond the sentencepiece vocabulary (tokenizer_config.json) and which ids
  // stream as "" because they are special; called once the specials are known.
  void finish(const std::vector<AddedToken>& added) {
    int size = sp_.GetPieceSize();
    for (const auto& t : added) size = std::max(size, t.id + 1);
    bytes_.assign(size_t(size), std::string());
    for (int id = 0; id < sp_.GetPieceSize(); ++id) bytes_[size_t(id)] = piece_bytes(id);
    for (const auto& t : added) {
      if (t.id >= sp_.GetPieceSize()) bytes_[size_t(t.id)] = t.special ? "" : t.content;
    }
    // A special token is a marker, not text (HF decodes with skip_special_tokens=True); unk
    // and added tokens marked "special": false stay visible, they stand for text.
    std::set<int> text_ids;
    for (const auto& t : added) {
      if (!t.special) text_ids.insert(t.id);
    }
    for (const auto& [text, id] : specials_) {
      if (id >= 0 && id < size && !text_ids.count(id) &&
          !(id < sp_.GetPieceSize() && sp_.IsUnknown(id))) {
        bytes_[size_t(id)].clear();
      }
    }
  }

  std::vector<int> encode(std::string_view text) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    if (!status.ok()) {
      throw Error(ErrorKind::kInternal, "sentencepiece could not encode the text (" +
                                            status.ToString() + "); please report this");
    }
    return ids;
  }

  std::string token_bytes(int id) const override {
    if (id < 0 || size_t(id) >= bytes_.size()) return "";
    return bytes_[size_t(id)];
  }

  int vocab_size() const override { return int(bytes_.size()); }

 private:
  std::string piece_bytes(int id) const {
    if (sp_.IsControl(id) || sp_.IsUnused(id)) return "";
    const std::string& piece = sp_.IdToPiece(id);
    if (sp_.IsUnknown(id)) return piece;
    if (sp_.IsByte(id)) {
      // Byte-fallback pieces are spelled "<0xAB>".
      if (piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece[5] == '>') {
        return std::string(1, char(std::stoi(piece.substr(3, 2), nullptr, 16)));
      }
      return "";
    }
    std::string out;
    out.reserve(piece.size());
    for (size_t i = 0; i < piece.size();) {
      if (std::string_view(piece).substr(i, kSpaceMarker.size()) == kSpaceMarker) {
        out += ' ';
        i += kSpaceMarker.size();
      } else {
        out += piece[i++];
      }
    }
    return out;
  }

  sentencepiece::SentencePieceProcessor sp_;
  std::vector<std::string> bytes_;  // token_bytes() of every id
};

// ---- bytes -----------------------------------------------------------------------------------

class ByteTokenizer : public Tokenizer {
 public:
  static constexpr int kFirstByte = 3;
  static constexpr int kFirstSpecial = kFirstByte + 256;

  explicit ByteTokenizer(int vocab_size) : vocab_size_(vocab_size) {
    bos_id_ = 1;
    eos_id_ = 2;
    add_special("<s>", 1);
    add_special("</s>", 2);
    for (int i = 0; i < kByteChatSpecials; ++i) {
      add_special(std::string(kChatSpecials[i]), kFirstSpecial + i);
    }
    add_stop_id(2);
    add_stop_id(specials_.at("<|im_end|>"));
    add_stop_id(specials_.at("<|eot_id|>"));
  }

  std::vector<int> encode(std::string_view text) const override {
    std::vector<int> ids;
    ids.reserve(text.size());
    for (char c : text) ids.push_back(kFirstByte + static_cast<unsigned char>(c));
    return ids;
  }

  std::string token_bytes(int id) const override {
    if (id == 0) return "<unk>";  // as the sentencepiece tokenizer shows unk
    if (id >= kFirstByte && id < kFirstSpecial) return std::string(1, char(id - kFirstByte));
    return "";  // control, chat specials and the unused rest of the vocabulary
  }

  int vocab_size() const override { return vocab_size_; }

 private:
  int vocab_size_;
};

}  // namespace

// ---- Tokenizer -------------------------------------------------------------------------------

std::vector<int> Tokenizer::encode_with_specials(std::string_view text) const {
  // Longest match at each position, as HF's added-token trie does. Each stretch of text
  // between specials is encoded on its own, so with sentencepiece it gets its own dummy-prefix
  // space ("<s>[INST]" -> <s> "▁[INST]"): the behaviour of HF's slow LlamaTokenizer with
  // legacy=true, which Llama 2 and Mistral were trained with.
  bool starts[256] = {};
  for (const auto& [s, id] : specials_) {
    if (!s.empty()) starts[static_cast<unsigned char>(s[0])] = true;
  }
  std::vector<int> ids;
  size_t segment = 0;
  auto flush_text = [&](size_t end) {
    if (end > segment) {
      const auto part = encode(text.substr(segment, end - segment));
      ids.insert(ids.end(), part.begin(), part.end());
    }
  };
  for (size_t i = 0; i < text.size();) {
    if (!starts[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    const std::string* best = nullptr;
    int best_id = -1;
    for (const auto& [s, id] : specials_) {
      if (!s.empty() && text.substr(i, s.size()) == s && (!best || s.size() > best->size())) {
        best = &s;
        best_id = id;
      }
    }
    if (!best) {
      ++i;
      continue;
    }
    flush_text(i);
    ids.push_back(best_id);
    i += best->size();
    segment = i;
  }
  flush_text(text.size());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int>& ids, bool strip_leading_space) const {
  std::string bytes;
  for (int id : ids) bytes += token_bytes(id);
  // Only the space that the tokenizer itself adds; a byte tokenizer's leading space is text.
  if (strip_leading_space && dummy_prefix_ && !bytes.empty() && bytes[0] == ' ') {
    bytes.erase(0, 1);
  }
  std::string out;
  decode_utf8(bytes, /*final=*/true, out);
  return out;
}

std::string Tokenizer::special_text(int id) const {
  for (const auto& [text, special_id] : specials_) {
    if (special_id == id) return text;
  }
  return "";
}

void Tokenizer::add_stop_id(int id) {
  if (id >= 0 && std::find(stop_ids_.begin(), stop_ids_.end(), id) == stop_ids_.end()) {
    stop_ids_.push_back(id);
  }
}

void Tokenizer::add_special(const std::string& text, int id) {
  if (!text.empty() && id >= 0) specials_[text] = id;
}

// ---- loading ---------------------------------------------------------------------------------

namespace {

// tokenizer.json (Qwen2, DeepSeek-R1-Distill, Llama 3): the file's added tokens, then
// tokenizer_config.json's, bos/eos from tokenizer_config (Qwen's bos_token is null, so
// config.json's bos_token_id fills in), stops as for sentencepiece.
std::unique_ptr<Tokenizer> load_bpe_tokenizer(const fs::path& model_dir, int config_bos,
                                              const std::vector<int>& config_eos) {
  const fs::path json_path = model_dir / "tokenizer.json";
  std::unique_ptr<BpeTokenizer> tok;
  try {
    tok = BpeTokenizer::from_file(json_path);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kUnsupported) throw;
    // Not a byte-level BPE (e.g. a sentencepiece model's tokenizer.json): its tokenizer.model
    // is what we read.
    throw Error(ErrorKind::kFileNotFound,
                "tokenizer.model not found in " + model_dir.string() +
                    " (a Llama-family model needs sentencepiece's tokenizer.model; this folder's "
                    "tokenizer.json is not a byte-level BPE tokenizer we read: " +
                    e.what() + "; download tokenizer.model from the model's repository)");
  }
  const fs::path tc_path = model_dir / "tokenizer_config.json";
  const json tc = read_json(tc_path).value_or(json::object());
  for (const auto& t : added_tokens(tc, tc_path)) {
    if (t.special && t.id < tok->vocab_size()) tok->add_special(t.content, t.id);
  }
  auto resolve = [&](const std::string& text) {
    if (text.empty()) return -1;
    if (auto it = tok->special_tokens().find(text); it != tok->special_tokens().end()) {
      return it->second;
    }
    return tok->token_id(text);
  };
  const json gc = read_json(model_dir / "generation_config.json").value_or(json::object());
  const std::vector<int> gen_eos = id_list(gc, "eos_token_id");
  int bos = resolve(token_text(tc, "bos_token"));
  if (bos < 0) bos = config_bos;
  int eos = resolve(token_text(tc, "eos_token"));
  if (eos < 0 && !config_eos.empty()) eos = config_eos[0];
  if (eos < 0 && !gen_eos.empty()) eos = gen_eos[0];
  tok->set_bos(bos);
  tok->set_eos(eos);
  tok->add_stop_id(eos);
  for (int id : gen_eos) tok->add_stop_id(id);
  for (int id : config_eos) tok->add_stop_id(id);
  for (std::string_view s : kStopTokenTexts) {
    if (auto it = tok->special_tokens().find(std::string(s)); it != tok->special_tokens().end()) {
      tok->add_stop_id(it->second);
    }
  }
  return tok;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& model_dir, int config_bos,
                                          const std::vector<int>& config_eos) {
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) {
    throw Error(ErrorKind::kFileNotFound, "model folder " + model_dir.string() +
                                              " does not exist (choose the folder that "
                                              "holds config.json and tokenizer.model or "
                                              "tokenizer.json)");
  }
  const fs::path model_path = model_dir / "tokenizer.model";
  if (!fs::is_regular_file(model_path, ec)) {
    if (fs::is_regular_file(model_dir / "tokenizer.json", ec)) {
      return load_bpe_tokenizer(model_dir, config_bos, config_eos);
    }
    throw Error(ErrorKind::kFileNotFound,
                "tokenizer.model not found in " + model_dir.string() +
                    " (a Llama-family model needs sentencepiece's tokenizer.model; Qwen2 and "
                    "Llama 3 models need tokenizer.json; download it from the model's "
                    "repository)");
  }
  auto tok = std::make_unique<SentencePieceTokenizer>(model_path);
  const auto& sp = tok->processor();

  // Specials: sentencepiece's control pieces (<s>, </s>), the chat markers the vocabulary has
  // as user-defined symbols, then tokenizer_config.json's added tokens (which win, as in HF).
  // <unk> is left out so that typing "<unk>" stays text.
  for (int id = 0; id < sp.GetPieceSize(); ++id) {
    if (sp.IsControl(id)) tok->add_special(sp.IdToPiece(id), id);
  }
  for (std::string_view s : kChatSpecials) tok->add_special(std::string(s), tok->piece_id(s));

  const fs::path tc_path = model_dir / "tokenizer_config.json";
  const json tc = read_json(tc_path).value_or(json::object());
  const auto added = added_tokens(tc, tc_path);
  for (const auto& t : added) tok->add_special(t.content, t.id);

  auto resolve = [&](const std::string& text) {
    if (text.empty()) return -1;
    if (auto it = tok->special_tokens().find(text); it != tok->special_tokens().end()) {
      return it->second;
    }
    return tok->piece_id(text);
  };

  // tokenizer_config names the text the chat template writes; config.json and the model's own
  // ids fill in what it leaves out (Qwen's bos_token is null).
  const json gc = read_json(model_dir / "generation_config.json").value_or(json::object());
  const std::vector<int> gen_eos = id_list(gc, "eos_token_id");
  int bos = resolve(token_text(tc, "bos_token"));
  if (bos < 0) bos = config_bos;
  if (bos < 0) bos = sp.bos_id();
  int eos = resolve(token_text(tc, "eos_token"));
  if (eos < 0 && !config_eos.empty()) eos = config_eos[0];
  if (eos < 0 && !gen_eos.empty()) eos = gen_eos[0];
  if (eos < 0) eos = sp.eos_id();
  tok->set_bos(bos);
  tok->set_eos(eos);
  // bos/eos taken from config.json may be pieces that are not control tokens; as specials their
  // text maps to them and they stream as "".
  for (int id : {bos, eos}) {
    if (id >= 0 && id < sp.GetPieceSize() && tok->special_text(id).empty()) {
      tok->add_special(sp.IdToPiece(id), id);
    }
  }

  tok->add_stop_id(eos);
  for (int id : gen_eos) tok->add_stop_id(id);
  for (int id : config_eos) tok->add_stop_id(id);
  for (std::string_view s : kStopTokenTexts) {
    if (auto it = tok->special_tokens().find(std::string(s)); it != tok->special_tokens().end()) {
      tok->add_stop_id(it->second);
    }
  }
  tok->finish(added);
  return tok;
}

std::string read_chat_template(const fs::path& model_dir) {
  const json tc = read_json(model_dir / "tokenizer_config.json").value_or(json::object());
  if (tc.is_object() && tc.contains("chat_template")) {
    const json& ct = tc["chat_template"];
    if (ct.is_string()) return ct.get<std::string>();
    // A list of named templates ("default", "tool_use", "rag"): the plain chat is "default".
    if (ct.is_array()) {
      std::string first;
      for (const json& entry : ct) {
        if (!entry.is_object() || !entry.contains("template") || !entry["template"].is_string()) {
          continue;
        }
        const std::string text = entry["template"].get<std::string>();
        if (entry.value("name", std::string()) == "default") return text;
        if (first.empty()) first = text;
      }
      return first;
    }
  }
  // Newer HF repositories keep the template in its own file.
  const fs::path jinja = model_dir / "chat_template.jinja";
  std::error_code ec;
  if (fs::is_regular_file(jinja, ec)) {
    std::ifstream in(jinja, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  return "";
}

std::unique_ptr<Tokenizer> make_byte_tokenizer(int vocab_size) {
  if (vocab_size < 512) {
    throw Error(ErrorKind::kInvalidArgument,
                "the byte tokenizer needs vocab_size >= 512 (got " + std::to_string(vocab_size) +
                    "): 259 byte and control ids plus the chat specials; give the synthetic "
                    "model a larger vocab_size");
  }
  return std::make_unique<ByteTokenizer>(vocab_size);
}

// ---- Utf8Stream ------------------------------------------------------------------------------

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  const size_t used = decode_utf8(pending_, /*final=*/false, out);
  pending_.erase(0, used);
  return out;
}

std::string Utf8Stream::flush() {
  std::string out;
  decode_utf8(pending_, /*final=*/true, out);
  pending_.clear();
  return out;
}

}  // namespace resa
