// Byte-level BPE (tokenizer.json) against Hugging Face tokenizers: ids and decoded text for every
// tricky string of tests/fixtures/qwen2/tokenizer_cases.json (made by
// tools/fixtures/make_qwen_oracle.py with tokenizers 0.23) for a Qwen2-style tokenizer (NFC,
// Qwen2 split pattern) and a Llama-3-style one (Llama 3 pattern, ignore_merges, no normalizer);
// special and added tokens, invalid UTF-8, streaming, loading through load_tokenizer.
// ctest-link: resa_text
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QtTest>

#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/bpe_tokenizer.h"
#include "engine/error.h"
#include "tests/support/qtest_printers.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using resa::BpeTokenizer;
using resa::Error;
using resa::ErrorKind;

namespace {

struct Case {
  std::string text, decoded;
  std::vector<int> ids, ids_plain;
};

std::vector<int> ints(const QJsonValue& v) {
  std::vector<int> out;
  for (const QJsonValue& x : v.toArray()) out.push_back(x.toInt());
  return out;
}

QJsonObject cases_json() {
  static const QJsonObject j =
      QJsonDocument::fromJson(QByteArray::fromStdString(resa::test::read_text(
                                  resa::test::fixture("qwen2/tokenizer_cases.json"))))
          .object();
  return j;
}

std::vector<Case> cases(const QString& tokenizer) {
  std::vector<Case> out;
  for (const QJsonValue& v : cases_json()[tokenizer].toArray()) {
    const QJsonObject o = v.toObject();
    out.push_back({o["text"].toString().toStdString(), o["decoded"].toString().toStdString(),
                   ints(o["ids"]), ints(o["ids_plain"])});
  }
  return out;
}

fs::path tokenizer_path(const QString& name) {
  return resa::test::fixture(name == "qwen2" ? "qwen2/model/tokenizer.json"
                                             : "qwen2/tokenizer_llama3.json");
}

const BpeTokenizer& tokenizer(const QString& name) {
  static std::map<QString, std::unique_ptr<BpeTokenizer>> loaded;
  auto& t = loaded[name];
  if (!t) t = BpeTokenizer::from_file(tokenizer_path(name));
  return *t;
}

std::string concat_bytes(const resa::Tokenizer& t, const std::vector<int>& ids) {
  std::string out;
  for (int id : ids) out += t.token_bytes(id);
  return out;
}

// Valid UTF-8 by the rules Utf8Stream applies (no U+FFFD produced on a full decode).
bool valid_utf8(const std::string& s) {
  resa::Utf8Stream u;
  return u.push(s) + u.flush() == s;
}

// A minimal byte-level tokenizer.json: vocabulary a, b, c, bc, abc; merges "b c" then "a bc".
std::string tiny_json(bool ignore_merges, const std::string& merges) {
  return R"({"model": {"type": "BPE", "ignore_merges": )" +
         std::string(ignore_merges ? "true" : "false") +
         R"(, "vocab": {"a": 0, "b": 1, "c": 2, "bc": 3, "abc": 4}, "merges": )" + merges +
         R"(}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
            "decoder": {"type": "ByteLevel"}})";
}

}  // namespace

class TestBpeTokenizer : public QObject {
  Q_OBJECT

 private:
  static void cases_data() {
    QTest::addColumn<QString>("tokenizer");
    QTest::addColumn<int>("index");
    for (const char* name : {"qwen2", "llama3"}) {
      const auto c = cases(name);
      for (size_t i = 0; i < c.size(); ++i) {
        const std::string tag = std::string(name) + "_" + std::to_string(i);
        QTest::newRow(tag.c_str()) << QString(name) << int(i);
      }
    }
  }

 private slots:
  void fixtures_cover_both_tokenizers() {
    QCOMPARE(cases("qwen2").size(), size_t(38));
    QCOMPARE(cases("llama3").size(), size_t(38));
    QCOMPARE(tokenizer("qwen2").vocab_size(), 605);
    QVERIFY(tokenizer("qwen2").normalizes_nfc());
    QVERIFY(!tokenizer("llama3").normalizes_nfc());
  }

  // Specials recognised: tokenizers' encode(text, add_special_tokens=False).
  void ids_with_specials_equal_tokenizers_data() { cases_data(); }
  void ids_with_specials_equal_tokenizers() {
    QFETCH(QString, tokenizer);
    QFETCH(int, index);
    const Case c = cases(tokenizer)[size_t(index)];
    QCOMPARE(::tokenizer(tokenizer).encode_with_specials(c.text), c.ids);
  }

  // Specials as text (encode_special_tokens=True): what encode() does with user text.
  void plain_ids_equal_tokenizers_data() { cases_data(); }
  void plain_ids_equal_tokenizers() {
    QFETCH(QString, tokenizer);
    QFETCH(int, index);
    const Case c = cases(tokenizer)[size_t(index)];
    QCOMPARE(::tokenizer(tokenizer).encode(c.text), c.ids_plain);
  }

  // decode(ids) as tokenizers' decode(ids, skip_special_tokens=True); for text without specials
  // that is the input (NFC-normalized for Qwen2), and the token bytes are exactly its bytes.
  void decode_round_trips_every_case_data() { cases_data(); }
  void decode_round_trips_every_case() {
    QFETCH(QString, tokenizer);
    QFETCH(int, index);
    const Case c = cases(tokenizer)[size_t(index)];
    const auto& t = ::tokenizer(tokenizer);
    QCOMPARE(t.decode(c.ids), c.decoded);
    const auto plain = t.encode(c.text);
    QCOMPARE(concat_bytes(t, plain), t.decode(plain));
    if (tokenizer == "llama3") QCOMPARE(t.decode(plain), c.text);
  }

  void nfc_makes_composed_and_decomposed_text_alike() {
    const auto& q = tokenizer("qwen2");
    const auto& l = tokenizer("llama3");
    QCOMPARE(q.encode("cafe\xCC\x81"), q.encode("caf\xC3\xA9"));  // e + U+0301 vs U+00E9
    QVERIFY(l.encode("cafe\xCC\x81") != l.encode("caf\xC3\xA9"));
    QCOMPARE(q.decode(q.encode("cafe\xCC\x81")), std::string("caf\xC3\xA9"));
    QCOMPARE(l.decode(l.encode("cafe\xCC\x81")), std::string("cafe\xCC\x81"));
  }

  void special_tokens_are_markers_and_think_is_text() {
    const auto& t = tokenizer("qwen2");
    const int im_start = t.special_tokens().at("<|im_start|>");
    QCOMPARE(im_start, 601);
    QCOMPARE(t.special_text(im_start), std::string("<|im_start|>"));
    QCOMPARE(t.token_bytes(im_start), std::string());
    QCOMPARE(t.encode_with_specials("<|im_start|>"), std::vector<int>{im_start});
    QVERIFY(t.encode("<|im_start|>").size() > 1);  // typed by a user it is text
    // <think> is an added token that is not special: matched in plain text, streamed as text.
    QCOMPARE(t.token_id("<think>"), 603);
    QCOMPARE(t.encode("<think>"), std::vector<int>{603});
    QCOMPARE(t.token_bytes(603), std::string("<think>"));
    QVERIFY(t.special_tokens().count("<think>") == 0);
    QCOMPARE(t.decode(t.encode_with_specials("<|im_start|>user\n<think>hm</think>ok<|im_end|>")),
             std::string("user\n<think>hm</think>ok"));
    QCOMPARE(t.token_id("\xC4\xA0"), 220);  // "Ġ", the byte-level spelling of a space
    QCOMPARE(t.token_bytes(220), std::string(" "));
    QCOMPARE(t.token_id("no such token"), -1);
  }

  void invalid_utf8_is_tokenized_byte_exactly() {
    const auto& t = tokenizer("qwen2");
    for (const std::string& s :
         {std::string("\xFF"), std::string("ab\xC3"), std::string("\xE4\xB8x y"),
          std::string("caf\xC3\xA9\x80 done"), std::string("\x80\x80\x80"),
          std::string("ok \xED\xA0\x80 surrogate"), std::string("e\xCC\x81\xFF")}) {
      const auto ids = t.encode(s);
      const std::string bytes = concat_bytes(t, ids);
      // NFC applies to the valid runs only: e + U+0301 composes, the invalid byte stays.
      const std::string want = s == "e\xCC\x81\xFF" ? std::string("\xC3\xA9\xFF") : s;
      QCOMPARE(bytes, want);
      QVERIFY(t.decode(ids).find("\xEF\xBF\xBD") != std::string::npos);  // shown as U+FFFD
    }
  }

  void streaming_decode_holds_characters_split_across_tokens() {
    const auto& t = tokenizer("qwen2");
    // Rare characters have no merges: emoji and CJK come as one token per byte.
    const std::string text =
        "\xF0\x9F\x99\x82 \xE6\x97\xA5\xE6\x9C\xAC ok \xF0\x9F\x87\xAF\xF0\x9F\x87\xB5";
    const auto ids = t.encode(text);
    resa::Utf8Stream stream;
    std::string out;
    int held = 0, partial_tokens = 0;
    for (int id : ids) {
      const std::string b = t.token_bytes(id);
      if (!valid_utf8(b)) ++partial_tokens;
      const std::string piece = stream.push(b);
      if (piece.empty()) ++held;
      QVERIFY(piece.find("\xEF\xBF\xBD") == std::string::npos);
      out += piece;
    }
    out += stream.flush();
    QCOMPARE(out, text);
    QVERIFY(partial_tokens >= 4);  // the test means something only if tokens split characters
    QVERIFY(held >= 3);
  }

  void merges_as_strings_give_the_same_ids() {
    // tokenizers < 0.20 wrote merges as "a b"; newer ones as ["a", "b"]. Both must read alike.
    const std::string text = resa::test::read_text(tokenizer_path("qwen2"));
    nlohmann::json j = nlohmann::json::parse(text);
    QVERIFY(j["model"]["merges"][0].is_array());
    for (auto& m : j["model"]["merges"])
      m = m[0].get<std::string>() + " " + m[1].get<std::string>();
    const auto legacy = BpeTokenizer::from_json(j.dump(), "legacy merges");
    for (const auto& c : cases("qwen2")) QCOMPARE(legacy->encode_with_specials(c.text), c.ids);
  }

  void ignore_merges_takes_a_whole_vocabulary_entry() {
    const std::string merges = R"(["b c", "a bc"])";
    QCOMPARE(BpeTokenizer::from_json(tiny_json(false, merges), "t")->encode("abc"),
             (std::vector<int>{4}));
    // Without the "a bc" merge, BPE stops at a + bc; ignore_merges still finds "abc".
    QCOMPARE(BpeTokenizer::from_json(tiny_json(false, R"(["b c"])"), "t")->encode("abc"),
             (std::vector<int>{0, 3}));
    QCOMPARE(BpeTokenizer::from_json(tiny_json(true, R"(["b c"])"), "t")->encode("abc"),
             (std::vector<int>{4}));
    // Bytes missing from the vocabulary are dropped before merging, as tokenizers does without
    // an unk token, so their neighbours merge.
    QCOMPARE(BpeTokenizer::from_json(tiny_json(false, merges), "t")->encode("abxc"),
             (std::vector<int>{4}));
    QCOMPARE(BpeTokenizer::from_json(tiny_json(false, merges), "t")->encode("xa"),
             (std::vector<int>{0}));
  }

  void equal_rank_merges_go_left_to_right() {
    // "aaa" with the single merge a+a: tokenizers merges the leftmost pair first.
    const std::string j = R"({"model": {"type": "BPE", "vocab": {"a": 0, "aa": 1},
        "merges": [["a", "a"]]}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
        "use_regex": false}})";
    QCOMPARE(BpeTokenizer::from_json(j, "t")->encode("aaa"), (std::vector<int>{1, 0}));
    QCOMPARE(BpeTokenizer::from_json(j, "t")->encode("aaaa"), (std::vector<int>{1, 1}));
  }

  void encode_gives_the_same_ids_from_several_threads() {
    const auto& t = tokenizer("qwen2");
    std::string text;
    for (const auto& c : cases("qwen2")) text += c.text + "\n";
    const auto want = t.encode(text);
    std::vector<std::vector<int>> got(4);
    std::vector<std::thread> threads;
    for (auto& g : got)
      threads.emplace_back([&t, &text, &g] {
        for (int i = 0; i < 20; ++i) g = t.encode(text);
      });
    for (auto& th : threads) th.join();
    for (const auto& g : got) QCOMPARE(g, want);
  }

  void load_tokenizer_reads_tokenizer_json_without_tokenizer_model() {
    const fs::path dir = resa::test::fixture("qwen2/model");
    QVERIFY(!fs::exists(dir / "tokenizer.model"));
    // config.json's bos_token_id fills in for tokenizer_config's null bos_token (Qwen).
    const auto t = resa::load_tokenizer(dir, 600, {602});
    QCOMPARE(t->vocab_size(), 605);
    QCOMPARE(t->bos_id(), 600);
    QCOMPARE(t->eos_id(), 602);  // tokenizer_config's eos_token "<|im_end|>"
    QCOMPARE(t->stop_ids(), (std::vector<int>{602, 600}));
    QVERIFY(!t->adds_dummy_prefix());
    QCOMPARE(t->encode_with_specials("<|im_start|>user\nHi<|im_end|>"),
             tokenizer("qwen2").encode_with_specials("<|im_start|>user\nHi<|im_end|>"));
  }

  void a_tokenizer_json_that_is_not_byte_level_asks_for_tokenizer_model() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const fs::path root = dir.path().toStdString();
    resa::test::write_text(root / "tokenizer.json",
                           R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                               "pre_tokenizer": {"type": "Metaspace", "replacement": "▁"}})");
    try {
      resa::load_tokenizer(root, -1, {});
      QFAIL("no error for a Metaspace tokenizer.json");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::kFileNotFound);
      const std::string what = e.what();
      QVERIFY2(what.find("tokenizer.model not found in " + root.string()) != std::string::npos,
               e.what());
      QVERIFY2(what.find("Metaspace") != std::string::npos, e.what());
    }
  }

  void corrupt_tokenizer_json_names_the_file_and_the_merge() {
    try {
      BpeTokenizer::from_json(tiny_json(false, R"(["b c", "c d"])"), "/models/x/tokenizer.json");
      QFAIL("no error for a merge with an unknown token");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::kCorruptFile);
      const std::string what = e.what();
      QVERIFY2(what.find("/models/x/tokenizer.json") != std::string::npos, e.what());
      QVERIFY2(what.find("merge 1") != std::string::npos, e.what());
      QVERIFY2(what.find("\"d\"") != std::string::npos, e.what());
    }
    try {
      BpeTokenizer::from_json("{\"model\": ", "/models/x/tokenizer.json");
      QFAIL("no error for truncated JSON");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::kCorruptFile);
    }
    try {
      BpeTokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
          "normalizer": {"type": "Lowercase"}, "decoder": {"type": "ByteLevel"}})",
                              "t.json");
      QFAIL("no error for an unsupported normalizer");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::kUnsupported);
      QVERIFY2(std::string(e.what()).find("Lowercase") != std::string::npos, e.what());
    }
  }
};

QTEST_APPLESS_MAIN(TestBpeTokenizer)
#include "test_bpe_tokenizer.moc"
