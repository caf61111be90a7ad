// Byte-level BPE read from tokenizer.json, in the order of Hugging Face tokenizers' encode:
// added tokens are split off first, each stretch between them is normalized (ICU), split by the
// pre-tokenizer's patterns (PCRE2, UTF + UCP), and every piece is merged by BPE rank.
#include "engine/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>
#include <utility>

#include "engine/error.h"

namespace resa {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ---- GPT-2's byte alphabet -------------------------------------------------------------------

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68 are
// shifted to U+0100.. in byte order, so every byte is one visible character in vocab strings.
struct ByteAlphabet {
  std::array<uint32_t, 256> code_point{};
  std::array<int16_t, 512> byte_of{};  // -1 where a code point is not in the alphabet

  ByteAlphabet() {
    byte_of.fill(-1);
    uint32_t shifted = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      code_point[size_t(b)] = printable ? uint32_t(b) : 256 + shifted++;
      byte_of[code_point[size_t(b)]] = int16_t(b);
    }
  }
};

const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// A vocabulary string back to the bytes it stands for. As tokenizers' ByteLevel decoder: a
// token with a character outside the alphabet is taken as its own UTF-8 bytes.
std::string alphabet_to_bytes(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const int32_t n = int32_t(s.size());
  for (int32_t i = 0; i < n;) {
    UChar32 c;
    U8_NEXT(p, i, n, c);
    if (c < 0 || c >= 512 || alphabet().byte_of[size_t(c)] < 0) return std::string(s);
    out += char(alphabet().byte_of[size_t(c)]);
  }
  return out;
}

// ---- regular expressions (PCRE2) -------------------------------------------------------------

// tokenizers compiles patterns with Oniguruma, whose \s is Unicode's White_Space property;
// PCRE2's \s under UCP leaves out U+0085 (NEL). Spell it out so both split alike.
constexpr std::string_view kWhiteSpaceClass =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

std::string onig_compatible(std::string_view pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size();) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char d = pattern[i + 1];
      if (d == 's') {
        out += in_class ? std::string(kWhiteSpaceClass) : "[" + std::string(kWhiteSpaceClass) + "]";
      } else if (d == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpaceClass) + "]";
      } else {
        out += c;
        out += d;
      }
      i += 2;
      continue;
    }
    out += c;
    ++i;
    if (!in_class && c == '[') {
      in_class = true;
      if (i < pattern.size() && pattern[i] == '^') out += pattern[i++];
      if (i < pattern.size() && pattern[i] == ']') out += pattern[i++];  // a literal ']'
    } else if (in_class && c == ']') {
      in_class = false;
    }
  }
  return out;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof buffer) < 0)
    return "error " + std::to_string(code);
  return reinterpret_cast<const char*>(buffer);
}

class Regex {
 public:
  // `literal`: the pattern is a plain string (Split's {"String": ...}).
  Regex(std::string_view pattern, bool literal, const std::string& source) {
    const std::string p = literal ? std::string(pattern) : onig_compatible(pattern);
    // MATCH_INVALID_UTF: invalid bytes in the subject never match instead of failing the call.
    uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
    if (literal) options |= PCRE2_LITERAL;
    int err = 0;
    PCRE2_SIZE at = 0;
    code_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), options, &err, &at,
                              nullptr));
    if (!code_) {
      throw Error(ErrorKind::kUnsupported,
                  source + ": the pre-tokenizer pattern \"" + std::string(pattern) +
                      "\" does not compile with PCRE2 (" + pcre2_message(err) + " at offset " +
                      std::to_string(at) + "); please report this with the model's name");
    }
    pcre2_jit_compile(code_.get(), PCRE2_JIT_COMPLETE);  // the interpreter remains if it fails
  }

  // Calls f(begin, end) for every non-empty match in `s`, left to right.
  template <class F>
  void for_each_match(std::string_view s, F&& f) const {
    struct Match {
      pcre2_match_data* data;
      pcre2_match_context* context;
      pcre2_jit_stack* stack;
      ~Match() {
        pcre2_match_data_free(data);
        pcre2_match_context_free(context);
        pcre2_jit_stack_free(stack);
      }
    } m{pcre2_match_data_create_from_pattern(code_.get(), nullptr),
        pcre2_match_context_create(nullptr), pcre2_jit_stack_create(32 * 1024, 4 << 20, nullptr)};
    if (!m.data || !m.context) throw Error(ErrorKind::kOutOfMemory, "pcre2: out of memory");
    if (m.stack) pcre2_jit_stack_assign(m.context, nullptr, m.stack);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
    size_t offset = 0;
    while (offset < s.size()) {
      const int rc = pcre2_match(code_.get(), subject, s.size(), offset, 0, m.data, m.context);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        throw Error(ErrorKind::kInternal, "the pre-tokenizer pattern failed on the text (PCRE2: " +
                                              pcre2_message(rc) + "); please report this");
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.data);
      if (ov[1] > ov[0]) {
        f(size_t(ov[0]), size_t(ov[1]));
        offset = ov[1];
      } else {
        offset = ov[0] + 1;  // an empty match: step on (the patterns we know never match empty)
        while (offset < s.size() && (static_cast<unsigned char>(s[offset]) & 0xC0) == 0x80)
          ++offset;
      }
    }
  }

 private:
  struct Free {
    void operator()(pcre2_code* c) const { pcre2_code_free(c); }
  };
  std::unique_ptr<pcre2_code, Free> code_;
};

// GPT-2's pattern, used by a ByteLevel pre-tokenizer with use_regex (tokenizers' byte_level.rs).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ---- pre-tokenizer ---------------------------------------------------------------------------

// tokenizers' SplitDelimiterBehavior.
enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreStep {
  std::shared_ptr<const Regex> regex;
  Behavior behavior = Behavior::kIsolated;
  bool invert = false;
  bool prefix_space = false;  // ByteLevel's add_prefix_space, applied before the split
};

// Calls f(begin, end) for the pieces one split of `s` gives, as tokenizers'
// NormalizedString::split with the step's behavior.
template <class F>
void split_spans(const PreStep& step, std::string_view s, F&& f) {
  if (step.behavior == Behavior::kIsolated) {
    // Every match and every gap is a piece (invert only swaps which is which): stream them.
    size_t last = 0;
    step.regex->for_each_match(s, [&](size_t b, size_t e) {
      if (b > last) f(last, b);
      f(b, e);
      last = e;
    });
    if (last < s.size()) f(last, s.size());
    return;
  }
  struct Region {
    size_t begin, end;
    bool match;
  };
  std::vector<Region> regions;
  size_t last = 0;
  step.regex->for_each_match(s, [&](size_t b, size_t e) {
    if (b > last) regions.push_back({last, b, false});
    regions.push_back({b, e, true});
    last = e;
  });
  if (last < s.size()) regions.push_back({last, s.size(), false});
  if (step.invert) {
    for (auto& r : regions) r.match = !r.match;
  }

  std::vector<std::pair<size_t, size_t>> spans;
  bool previous_match = false;
  switch (step.behavior) {
    case Behavior::kIsolated:
      break;
    case Behavior::kRemoved:
      for (const auto& r : regions) {
        if (!r.match) spans.emplace_back(r.begin, r.end);
      }
      break;
    case Behavior::kMergedWithPrevious:
      for (const auto& r : regions) {
        if (r.match && !previous_match && !spans.empty()) {
          spans.back().second = r.end;
        } else {
          spans.emplace_back(r.begin, r.end);
        }
        previous_match = r.match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (auto it = regions.rbegin(); it != regions.rend(); ++it) {
        if (it->match && !previous_match && !spans.empty()) {
          spans.back().first = it->begin;
        } else {
          spans.emplace_back(it->begin, it->end);
        }
        previous_match = it->match;
      }
      std::reverse(spans.begin(), spans.end());
      break;
    case Behavior::kContiguous:
      for (size_t i = 0; i < regions.size(); ++i) {
        if (i > 0 && regions[i].match == previous_match) {
          spans.back().second = regions[i].end;
        } else {
          spans.emplace_back(regions[i].begin, regions[i].end);
        }
        previous_match = regions[i].match;
      }
      break;
  }
  for (const auto& [b, e] : spans) {
    if (e > b) f(b, e);
  }
}

Behavior parse_behavior(const json& v, const std::string& source) {
  const std::string b = v.is_string() ? v.get<std::string>() : "Isolated";
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  throw Error(ErrorKind::kCorruptFile,
              source + ": pre-tokenizer Split has an unknown behavior \"" + b + "\"");
}

bool bool_field(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

std::string string_field(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Appends the steps of one pre-tokenizer (recursing into Sequence); sets `byte_level` when it
// is or contains ByteLevel.
void parse_pre_tokenizer(const json& j, const std::string& source, std::vector<PreStep>& steps,
                         bool& byte_level) {
  if (j.is_null()) return;
  const std::string type = j.is_object() ? string_field(j, "type") : "";
  if (type == "Sequence") {
    for (const json& sub : j.value("pretokenizers", json::array())) {
      parse_pre_tokenizer(sub, source, steps, byte_level);
    }
  } else if (type == "Split") {
    const json& pattern = j.value("pattern", json::object());
    PreStep step;
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      step.regex = std::make_shared<Regex>(pattern["Regex"].get<std::string>(), false, source);
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      step.regex = std::make_shared<Regex>(pattern["String"].get<std::string>(), true, source);
    } else {
      throw Error(ErrorKind::kCorruptFile,
                  source +
                      ": pre-tokenizer Split has no pattern {\"Regex\": ...} or "
                      "{\"String\": ...}; restore the file from the model's repository");
    }
    step.behavior = parse_behavior(j.value("behavior", json()), source);
    step.invert = bool_field(j, "invert", false);
    steps.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    byte_level = true;
    const bool prefix = bool_field(j, "add_prefix_space", true);
    if (bool_field(j, "use_regex", true)) {
      PreStep step;
      step.regex = std::make_shared<Regex>(kGpt2Pattern, false, source);
      step.prefix_space = prefix;
      steps.push_back(std::move(step));
    } else if (prefix) {
      PreStep step;  // no split, only the prefix space
      step.prefix_space = true;
      steps.push_back(std::move(step));
    }
  } else if (type == "Digits") {
    PreStep step;
    step.regex = std::make_shared<Regex>("[0-9]", false, source);
    step.behavior =
        bool_field(j, "individual_digits", false) ? Behavior::kIsolated : Behavior::kContiguous;
    steps.push_back(std::move(step));
  } else {
    throw Error(ErrorKind::kUnsupported,
                source + ": pre-tokenizer type \"" + type +
                    "\" is not supported (supported: Sequence, Split, ByteLevel, Digits)");
  }
}

// ---- normalizer (ICU) ------------------------------------------------------------------------

void parse_normalizer(const json& j, const std::string& source,
                      std::vector<const icu::Normalizer2*>& out) {
  if (j.is_null()) return;
  const std::string type = j.is_object() ? string_field(j, "type") : "";
  if (type == "Sequence") {
    for (const json& sub : j.value("normalizers", json::array()))
      parse_normalizer(sub, source, out);
    return;
  }
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  if (type == "NFC") n = icu::Normalizer2::getNFCInstance(err);
  if (type == "NFD") n = icu::Normalizer2::getNFDInstance(err);
  if (type == "NFKC") n = icu::Normalizer2::getNFKCInstance(err);
  if (type == "NFKD") n = icu::Normalizer2::getNFKDInstance(err);
  if (n == nullptr && type != "NFC" && type != "NFD" && type != "NFKC" && type != "NFKD") {
    throw Error(ErrorKind::kUnsupported,
                source + ": normalizer type \"" + type +
                    "\" is not supported (supported: NFC, NFD, NFKC, NFKD and Sequence of them)");
  }
  if (U_FAILURE(err) || n == nullptr) {
    throw Error(ErrorKind::kInternal, std::string("ICU has no ") + type + " normalizer (" +
                                          u_errorName(err) + "); check the libicu installation");
  }
  out.push_back(n);
}

// Normalizes the valid UTF-8 runs of `s`; invalid bytes pass through unchanged.
std::string normalize_with(const icu::Normalizer2& n, const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const int32_t len = int32_t(s.size());
  auto flush = [&](int32_t b, int32_t e) {
    if (e <= b) return;
    const icu::StringPiece run(s.data() + b, e - b);
    UErrorCode err = U_ZERO_ERROR;
    if (n.isNormalizedUTF8(run, err) && U_SUCCESS(err)) {
      out.append(s, size_t(b), size_t(e - b));
      return;
    }
    err = U_ZERO_ERROR;
    icu::StringByteSink<std::string> sink(&out);
    n.normalizeUTF8(0, run, sink, nullptr, err);
    if (U_FAILURE(err)) {
      throw Error(ErrorKind::kInternal,
                  std::string("ICU could not normalize the text (") + u_errorName(err) + ")");
    }
  };
  int32_t run_begin = 0;
  for (int32_t i = 0; i < len;) {
    const int32_t at = i;
    UChar32 c;
    U8_NEXT(p, i, len, c);
    if (c < 0) {
      flush(run_begin, at);
      out.append(s, size_t(at), size_t(i - at));
      run_begin = i;
    }
  }
  flush(run_begin, len);
  return out;
}

// ---- files -----------------------------------------------------------------------------------

struct PairHash {
  size_t operator()(uint64_t k) const { return std::hash<uint64_t>()(k * 0x9E3779B97F4A7C15ull); }
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

using StringMap = std::unordered_map<std::string, int, StringHash, std::equal_to<>>;

uint64_t pair_key(int a, int b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

int checked_id(const json& v, const std::string& source, const std::string& what) {
  // The bound keeps a corrupt id from sizing the token table; real vocabularies are < 2^18.
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= (1 << 24)) {
    throw Error(ErrorKind::kCorruptFile, source + ": " + what + " has id " + v.dump() +
                                             ", not an integer in [0, 2^24); restore the file "
                                             "from the model's repository");
  }
  return int(v.get<int64_t>());
}

}  // namespace

// ---- BpeTokenizer ----------------------------------------------------------------------------

struct BpeTokenizer::Impl {
  std::string source;
  std::vector<std::string> bytes;  // token_bytes() of every id
  StringMap vocab_text;            // vocabulary spelling -> id (and added tokens' content)
  StringMap vocab_bytes;           // raw bytes -> id, for ignore_merges
  std::array<int, 256> byte_id{};  // the single-byte token of each byte, -1 if missing
  std::unordered_map<uint64_t, std::pair<int, int>, PairHash> merges;  // (a, b) -> (rank, ab)
  bool ignore_merges = false;
  std::vector<const icu::Normalizer2*> normalizers;
  bool nfc = false;
  std::vector<PreStep> pre_steps;

  struct Added {
    int id;
    std::string content;
    bool lstrip, rstrip;
  };
  std::vector<Added> text_added;  // added tokens that are not special, matched inside encode()
  bool text_added_first[256] = {};

  // Pieces repeat (words, indentation): their ids are kept, up to a bound.
  static constexpr size_t kCacheMaxPieceBytes = 64;
  static constexpr size_t kCacheMaxEntries = 1 << 16;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int>, StringHash, std::equal_to<>> cache;

  void merge_piece(std::string_view piece, std::vector<int>& out) const;
  void bpe(std::string_view piece, std::vector<int>& out) const;
  void encode_segment(std::string_view text, std::vector<int>& out) const;
  // Pre-tokenizer steps [step..] on `s`, then BPE of every piece: pieces are never stored, so
  // a long document costs no more memory than its ids.
  void pre_tokenize_and_merge(size_t step, std::string_view s, std::vector<int>& out) const;
};

// tokenizers' Word::merge_all: repeatedly merge the adjacent pair of lowest rank (leftmost
// first among equals) over a linked list of symbols, skipping queue entries that went stale.
void BpeTokenizer::Impl::merge_piece(std::string_view piece, std::vector<int>& out) const {
  struct Symbol {
    int id;
    int prev, next;
    int len;  // bytes; 0 once merged into its left neighbour
  };
  std::vector<Symbol> sym;
  sym.reserve(piece.size());
  for (unsigned char b : piece) {
    const int id = byte_id[b];
    if (id < 0) continue;  // a byte missing from the vocabulary is dropped, as without unk
    const int i = int(sym.size());
    sym.push_back({id, i - 1, i + 1, 1});
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  struct Candidate {
    int rank, pos, new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int pos) {
    const int next = sym[size_t(pos)].next;
    if (next < 0) return;
    auto it = merges.find(pair_key(sym[size_t(pos)].id, sym[size_t(next)].id));
    if (it != merges.end()) queue.push({it->second.first, pos, it->second.second});
  };
  for (int i = 0; i + 1 < int(sym.size()); ++i) consider(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = sym[size_t(top.pos)];
    if (left.len == 0 || left.next < 0) continue;
    Symbol& right = sym[size_t(left.next)];
    auto it = merges.find(pair_key(left.id, right.id));
    if (it == merges.end() || it->second.second != top.new_id) continue;  // stale
    left.id = top.new_id;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (left.next >= 0) sym[size_t(left.next)].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (const Symbol& s : sym) {
    if (s.len > 0) out.push_back(s.id);
  }
}

void BpeTokenizer::Impl::bpe(std::string_view piece, std::vector<int>& out) const {
  if (ignore_merges) {
    // Llama 3: a piece that is a whole vocabulary entry is that entry, whatever the merges say.
    if (auto it = vocab_bytes.find(piece); it != vocab_bytes.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = piece.size() <= kCacheMaxPieceBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex);
    if (auto it = cache.find(piece); it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_piece(piece, out);
  if (cacheable) {
    std::lock_guard lock(cache_mutex);
    if (cache.size() >= kCacheMaxEntries) cache.clear();
    cache.emplace(std::string(piece),
                  std::vector<int>(out.begin() + std::ptrdiff_t(first), out.end()));
  }
}

void BpeTokenizer::Impl::pre_tokenize_and_merge(size_t step, std::string_view s,
                                                std::vector<int>& out) const {
  if (step == pre_steps.size()) {
    bpe(s, out);
    return;
  }
  const PreStep& p = pre_steps[step];
  std::string prefixed;
  if (p.prefix_space && (s.empty() || s[0] != ' ')) {
    prefixed.reserve(s.size() + 1);
    prefixed += ' ';
    prefixed.append(s);
    s = prefixed;
  }
  if (!p.regex) {
    pre_tokenize_and_merge(step + 1, s, out);
    return;
  }
  split_spans(
      p, s, [&](size_t b, size_t e) { pre_tokenize_and_merge(step + 1, s.substr(b, e - b), out); });
}

void BpeTokenizer::Impl::encode_segment(std::string_view text, std::vector<int>& out) const {
  if (text.empty()) return;
  const bool ascii = std::all_of(text.begin(), text.end(),
                                 [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii || normalizers.empty()) {  // ASCII is invariant under every Unicode normal form
    pre_tokenize_and_merge(0, text, out);
    return;
  }
  std::string normalized(text);
  for (const icu::Normalizer2* n : normalizers) normalized = normalize_with(*n, normalized);
  pre_tokenize_and_merge(0, normalized, out);
}

BpeTokenizer::BpeTokenizer() : impl_(std::make_unique<Impl>()) {}
BpeTokenizer::~BpeTokenizer() = default;

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(ErrorKind::kFileNotFound,
                "cannot open " + path.string() + " (check that it exists and can be read)");
  }
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  return from_json(text, path.string());
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_json(std::string_view json_text,
                                                      const std::string& source) {
  json j;
  try {
    j = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    throw Error(ErrorKind::kCorruptFile, source + " is not valid JSON (" + e.what() +
                                             "); restore the file from the model's repository");
  }
  const auto corrupt = [&](const std::string& what) {
    return Error(ErrorKind::kCorruptFile,
                 source + ": " + what + "; restore the file from the model's repository");
  };
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) {
    throw Error(ErrorKind::kUnsupported, source +
                                             " has no \"model\" object, so it is not a "
                                             "Hugging Face tokenizers file");
  }
  const json& model = j["model"];
  const std::string type = string_field(model, "type");
  if (!type.empty() && type != "BPE") {
    throw Error(ErrorKind::kUnsupported, source + " holds a " + type +
                                             " model; only byte-level BPE is read from "
                                             "tokenizer.json");
  }

  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer());
  Impl& m = *tok->impl_;
  m.source = source;

  // Byte level: the pre-tokenizer or the decoder says so; sentencepiece-style BPE files
  // (Metaspace, byte_fallback) need their tokenizer.model instead.
  bool byte_level = false;
  parse_pre_tokenizer(j.value("pre_tokenizer", json()), source, m.pre_steps, byte_level);
  const json& decoder = j.value("decoder", json());
  if (decoder.is_object()) {
    if (string_field(decoder, "type") == "ByteLevel") byte_level = true;
    for (const json& d : decoder.value("decoders", json::array())) {
      if (d.is_object() && string_field(d, "type") == "ByteLevel") byte_level = true;
    }
  }
  if (!byte_level) {
    throw Error(ErrorKind::kUnsupported,
                source +
                    " is a BPE without the ByteLevel pre-tokenizer or decoder (a "
                    "sentencepiece-style tokenizer)");
  }
  if (!string_field(model, "continuing_subword_prefix").empty() ||
      !string_field(model, "end_of_word_suffix").empty()) {
    throw Error(ErrorKind::kUnsupported,
                source +
                    ": BPE with continuing_subword_prefix or end_of_word_suffix is not "
                    "supported");
  }
  parse_normalizer(j.value("normalizer", json()), source, m.normalizers);
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(err);
  m.nfc = std::find(m.normalizers.begin(), m.normalizers.end(), nfc) != m.normalizers.end();
  m.ignore_merges = bool_field(model, "ignore_merges", false);

  // Vocabulary.
  const json& vocab = model.value("vocab", json());
  if (!vocab.is_object() || vocab.empty()) throw corrupt("model.vocab is missing or empty");
  int size = 0;
  for (const auto& [text, v] : vocab.items())
    size = std::max(size, checked_id(v, source, "\"" + text + "\"") + 1);
  const json& added = j.value("added_tokens", json::array());
  if (!added.is_array()) throw corrupt("added_tokens is not a list");
  for (const json& a : added) {
    if (!a.is_object() || !a.contains("id") || !a.contains("content") ||
        !a["content"].is_string()) {
      throw corrupt("an added_tokens entry is not {\"id\": ..., \"content\": ...}");
    }
    size = std::max(size, checked_id(a["id"], source, "added token " + a["content"].dump()) + 1);
  }
  m.bytes.assign(size_t(size), std::string());
  m.vocab_text.reserve(vocab.size());
  m.vocab_bytes.reserve(vocab.size());
  for (const auto& [text, v] : vocab.items()) {
    const int id = v.get<int>();
    std::string b = alphabet_to_bytes(text);
    m.vocab_text.emplace(text, id);
    m.vocab_bytes.emplace(b, id);
    m.bytes[size_t(id)] = std::move(b);
  }
  m.byte_id.fill(-1);
  for (int b = 0; b < 256; ++b) {
    std::string spelled;
    append_utf8(alphabet().code_point[size_t(b)], spelled);
    if (auto it = m.vocab_text.find(spelled); it != m.vocab_text.end())
      m.byte_id[size_t(b)] = it->second;
  }

  // Merges: "a b" (tokenizers < 0.20) or ["a", "b"]; rank = position.
  const json& merges = model.value("merges", json::array());
  if (!merges.is_array()) throw corrupt("model.merges is not a list");
  m.merges.reserve(merges.size());
  auto lookup = [&](const std::string& text, size_t rank) {
    auto it = m.vocab_text.find(text);
    if (it == m.vocab_text.end()) {
      throw corrupt("merge " + std::to_string(rank) + " uses \"" + text +
                    "\", which is not in the vocabulary");
    }
    return it->second;
  };
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& e = merges[rank];
    std::string a, b;
    if (e.is_string()) {
      const std::string s = e.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        throw corrupt("merge " + std::to_string(rank) + " \"" + s + "\" is not \"a b\"");
      }
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      throw corrupt("merge " + std::to_string(rank) + " is " + e.dump() +
                    ", neither \"a b\" nor [\"a\", \"b\"]");
    }
    const int ia = lookup(a, rank), ib = lookup(b, rank), iab = lookup(a + b, rank);
    m.merges[pair_key(ia, ib)] = {int(rank), iab};
  }

  // Added tokens: special ones are markers (Tokenizer::encode_with_specials matches them, they
  // stream as ""); the others are text that encode() matches before the pre-tokenizer.
  for (const json& a : added) {
    const int id = a["id"].get<int>();
    const std::string content = a["content"].get<std::string>();
    if (content.empty()) continue;
    m.vocab_text[content] = id;
    if (bool_field(a, "special", false)) {
      m.bytes[size_t(id)].clear();
      tok->add_special(content, id);
    } else {
      m.bytes[size_t(id)] = content;
      m.text_added.push_back(
          {id, content, bool_field(a, "lstrip", false), bool_field(a, "rstrip", false)});
      m.text_added_first[static_cast<unsigned char>(content[0])] = true;
    }
  }
  return tok;
}

std::vector<int> BpeTokenizer::encode(std::string_view text) const {
  const Impl& m = *impl_;
  std::vector<int> ids;
  ids.reserve(text.size() / 3 + 1);
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  size_t segment = 0;
  for (size_t i = 0; i < text.size();) {
    if (!m.text_added_first[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    // Longest added token at the leftmost position, as tokenizers' added-vocabulary matcher.
    const Impl::Added* best = nullptr;
    for (const auto& a : m.text_added) {
      if (text.substr(i, a.content.size()) == a.content &&
          (!best || a.content.size() > best->content.size())) {
        best = &a;
      }
    }
    if (!best) {
      ++i;
      continue;
    }
    size_t begin = i, end = i + best->content.size();
    if (best->lstrip) {
      while (begin > segment && is_space(text[begin - 1])) --begin;
    }
    if (best->rstrip) {
      while (end < text.size() && is_space(text[end])) ++end;
    }
    m.encode_segment(text.substr(segment, begin - segment), ids);
    ids.push_back(best->id);
    i = segment = end;
  }
  m.encode_segment(text.substr(segment), ids);
  return ids;
}

std::string BpeTokenizer::token_bytes(int id) const {
  if (id < 0 || size_t(id) >= impl_->bytes.size()) return "";
  return impl_->bytes[size_t(id)];
}

int BpeTokenizer::vocab_size() const { return int(impl_->bytes.size()); }

int BpeTokenizer::token_id(std::string_view text) const {
  auto it = impl_->vocab_text.find(text);
  return it == impl_->vocab_text.end() ? -1 : it->second;
}

bool BpeTokenizer::normalizes_nfc() const { return impl_->nfc; }

}  // namespace resa
