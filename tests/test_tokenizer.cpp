// Tokenizers against sentencepiece's own CLI (reference ids from
// tools/fixtures/make_tokenizer_cases.sh), special tokens from the HF json files, the byte
// tokenizer and the UTF-8 stream.
// ctest-link: resa_text
#include <QTemporaryDir>
#include <QtTest>
#include <sstream>

#include "engine/error.h"
#include "engine/tokenizer.h"
#include "tests/support/qtest_printers.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using resa::Error;
using resa::ErrorKind;

namespace {

std::vector<std::string> read_lines(const fs::path& p) {
  std::vector<std::string> lines;
  std::istringstream in(resa::test::read_text(p));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<int> parse_ids(const std::string& line) {
  std::vector<int> ids;
  std::istringstream in(line);
  for (int id; in >> id;) ids.push_back(id);
  return ids;
}

QString ids_text(const std::vector<int>& ids) {
  QStringList parts;
  for (int id : ids) parts << QString::number(id);
  return parts.join(' ');
}

fs::path fixture_model() { return resa::test::fixture("tokenizer/tokenizer.model"); }

// A model folder with the fixture tokenizer.model and the given json files.
fs::path model_folder(const QTemporaryDir& dir, const std::string& tokenizer_config,
                      const std::string& generation_config = "") {
  const fs::path root = dir.path().toStdString();
  fs::copy_file(fixture_model(), root / "tokenizer.model", fs::copy_options::overwrite_existing);
  if (!tokenizer_config.empty()) {
    resa::test::write_text(root / "tokenizer_config.json", tokenizer_config);
  }
  if (!generation_config.empty()) {
    resa::test::write_text(root / "generation_config.json", generation_config);
  }
  return root;
}

std::unique_ptr<resa::Tokenizer> fixture_tokenizer() {
  return resa::load_tokenizer(fixture_model().parent_path(), -1, {});
}

bool has_stop(const resa::Tokenizer& t, int id) {
  const auto& s = t.stop_ids();
  return std::find(s.begin(), s.end(), id) != s.end();
}

}  // namespace

class TestTokenizer : public QObject {
  Q_OBJECT

 private slots:
  void encode_matches_spm_encode_for_every_case() {
    const auto cases = read_lines(fs::path(RESA_SOURCE_DIR) / "tools/fixtures/tokenizer_cases.txt");
    const auto ids = read_lines(resa::test::fixture("tokenizer/cases.ids"));
    QVERIFY2(cases.size() >= 10, "tokenizer_cases.txt lost its cases");
    QVERIFY2(cases.size() == ids.size(),
             "cases.ids is stale: run tools/fixtures/make_tokenizer_cases.sh");
    const auto tok = fixture_tokenizer();
    for (size_t i = 0; i < cases.size(); ++i) {
      const auto expected = parse_ids(ids[i]);
      QVERIFY(!expected.empty());
      const auto got = tok->encode(cases[i]);
      if (got != expected) {
        QFAIL(qPrintable(
            QString("case %1 \"%2\": got [%3], spm_encode gave [%4]")
                .arg(i + 1)
                .arg(QString::fromStdString(cases[i]), ids_text(got), ids_text(expected))));
      }
    }
  }

  void decode_of_encode_round_trips_every_case() {
    const auto cases = read_lines(fs::path(RESA_SOURCE_DIR) / "tools/fixtures/tokenizer_cases.txt");
    const auto tok = fixture_tokenizer();
    for (const auto& text : cases) {
      QCOMPARE(tok->decode(tok->encode(text), /*strip_leading_space=*/true), text);
      // Without stripping, the dummy-prefix space shows.
      QCOMPARE(tok->decode(tok->encode(text)), " " + text);
    }
    QCOMPARE(tok->decode(tok->encode("two\nlines")), std::string(" two\nlines"));
  }

  void fixture_model_has_dummy_prefix_and_llama_ids() {
    const auto tok = fixture_tokenizer();
    QVERIFY(tok->adds_dummy_prefix());
    QCOMPARE(tok->vocab_size(), 512);
    QCOMPARE(tok->bos_id(), 1);
    QCOMPARE(tok->eos_id(), 2);
    QCOMPARE(tok->special_tokens().at("<s>"), 1);
    QCOMPARE(tok->special_tokens().at("</s>"), 2);
    QCOMPARE(tok->special_text(1), std::string("<s>"));
    QCOMPARE(tok->special_text(100), std::string());
    QVERIFY(tok->special_tokens().count("<unk>") == 0);
  }

  void token_bytes_maps_pieces_bytes_and_controls() {
    const auto tok = fixture_tokenizer();
    // "Emoji 😀": the emoji arrives as four byte-fallback pieces <0xF0> <0x9F> <0x98> <0x80>.
    const auto ids = tok->encode("\xF0\x9F\x98\x80");
    QCOMPARE(ids.size(), size_t(5));  // "▁" then the four bytes
    QCOMPARE(tok->token_bytes(ids[0]), std::string(" "));
    QCOMPARE(tok->token_bytes(ids[1]), std::string("\xF0"));
    QCOMPARE(tok->token_bytes(ids[4]), std::string("\x80"));
    // "é" has no piece of its own in the fixture: <0xC3> <0xA9>.
    const auto accent = tok->encode("\xC3\xA9");
    QCOMPARE(accent.size(), size_t(3));
    QCOMPARE(tok->token_bytes(accent[1]), std::string("\xC3"));
    QCOMPARE(tok->token_bytes(accent[2]), std::string("\xA9"));
    // "▁world" style pieces stream with a real space.
    const auto hello = tok->encode("Hello world");
    std::string joined;
    for (int id : hello) joined += tok->token_bytes(id);
    QCOMPARE(joined, std::string(" Hello world"));
    QCOMPARE(tok->token_bytes(1), std::string());  // <s>
    QCOMPARE(tok->token_bytes(2), std::string());  // </s>
    QCOMPARE(tok->token_bytes(0), std::string("<unk>"));
    QCOMPARE(tok->token_bytes(-1), std::string());
    QCOMPARE(tok->token_bytes(100000), std::string());
  }

  void decode_drops_controls_and_replaces_broken_utf8() {
    const auto tok = fixture_tokenizer();
    auto ids = tok->encode("hi");
    ids.insert(ids.begin(), 1);
    ids.push_back(2);
    QCOMPARE(tok->decode(ids, true), std::string("hi"));
    // The first byte of a 4-byte character alone cannot be completed: one U+FFFD.
    const auto emoji = tok->encode("a\xF0\x9F\x98\x80");
    const std::vector<int> cut(emoji.begin(), emoji.end() - 3);
    QCOMPARE(tok->decode(cut, true), std::string("a\xEF\xBF\xBD"));
  }

  void user_defined_chat_markers_are_special_and_stop() {
    // The fixture was trained with --user_defined_symbols=<|im_start|>,<|im_end|>.
    const auto tok = fixture_tokenizer();
    const int im_start = tok->special_tokens().at("<|im_start|>");
    const int im_end = tok->special_tokens().at("<|im_end|>");
    QVERIFY(im_start > 2 && im_end > 2 && im_start != im_end);
    QVERIFY(has_stop(*tok, im_end));
    QVERIFY(has_stop(*tok, 2));
    QVERIFY(!has_stop(*tok, im_start));
    QCOMPARE(tok->token_bytes(im_end), std::string());
  }

  void encode_with_specials_splits_on_longest_special() {
    const auto tok = fixture_tokenizer();
    const auto ids = tok->encode_with_specials("<s>[INST] hi [/INST]");
    QCOMPARE(ids.front(), tok->bos_id());
    // The text after a special is encoded on its own, with its dummy-prefix space.
    std::vector<int> expected{1};
    const auto rest = tok->encode("[INST] hi [/INST]");
    expected.insert(expected.end(), rest.begin(), rest.end());
    QCOMPARE(ids, expected);

    const int im_start = tok->special_tokens().at("<|im_start|>");
    const int im_end = tok->special_tokens().at("<|im_end|>");
    const auto chat = tok->encode_with_specials("<|im_start|>user\nhi<|im_end|>\n</s>");
    std::vector<int> want{im_start};
    for (int id : tok->encode("user\nhi")) want.push_back(id);
    want.push_back(im_end);
    for (int id : tok->encode("\n")) want.push_back(id);
    want.push_back(2);
    QCOMPARE(chat, want);
    // Text with no special in it is plain encode(); a '<' that starts no special stays text.
    QCOMPARE(tok->encode_with_specials("a < b <s"), tok->encode("a < b <s"));
  }

  void encode_with_specials_prefers_the_longer_match() {
    auto tok = fixture_tokenizer();
    tok->add_special("<|im", 300);  // a prefix of <|im_start|>
    const auto ids = tok->encode_with_specials("<|im_start|><|imx");
    QCOMPARE(ids.front(), tok->special_tokens().at("<|im_start|>"));
    QCOMPARE(ids.at(1), 300);
  }

  void tokenizer_config_and_generation_config_set_specials_and_stops() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const auto root = model_folder(dir, R"({
      "added_tokens_decoder": {
        "0": {"content": "<unk>", "special": true},
        "1": {"content": "<s>", "special": true},
        "2": {"content": "</s>", "special": true},
        "512": {"content": "<|eot_id|>", "special": true},
        "513": {"content": "<|tool|>", "special": false},
        "514": {"content": "<|endoftext|>", "special": true}
      },
      "bos_token": {"content": "<s>", "lstrip": false},
      "eos_token": "<|eot_id|>",
      "chat_template": "{{ bos_token }}{% for m in messages %}[INST] ...{% endfor %}"
    })",
                                   R"({"bos_token_id": 1, "eos_token_id": [2, 514, 700]})");
    const auto tok = resa::load_tokenizer(root, -1, {701});
    QCOMPARE(tok->vocab_size(), 515);
    QCOMPARE(tok->bos_id(), 1);
    QCOMPARE(tok->eos_id(), 512);
    QCOMPARE(tok->special_tokens().at("<|eot_id|>"), 512);
    QCOMPARE(tok->special_text(513), std::string("<|tool|>"));
    for (int id : {512, 2, 514, 700, 701})
      QVERIFY2(has_stop(*tok, id), qPrintable(QString::number(id)));
    QCOMPARE(tok->stop_ids().front(), 512);
    // Special added tokens stream as nothing, a non-special one as its text.
    QCOMPARE(tok->token_bytes(512), std::string());
    QCOMPARE(tok->token_bytes(513), std::string("<|tool|>"));
    const auto ids = tok->encode_with_specials("hi<|eot_id|><|tool|>");
    QCOMPARE(ids.size(), tok->encode("hi").size() + 2);
    QCOMPARE(ids[ids.size() - 2], 512);
    QCOMPARE(ids.back(), 513);
    QCOMPARE(resa::read_chat_template(root),
             std::string("{{ bos_token }}{% for m in messages %}[INST] ...{% endfor %}"));
  }

  void config_ids_fill_in_when_tokenizer_config_has_none() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const auto root =
        model_folder(dir, R"({"bos_token": null, "eos_token": null})", R"({"eos_token_id": 7})");
    const auto tok = resa::load_tokenizer(root, 1, {});
    QCOMPARE(tok->bos_id(), 1);
    QCOMPARE(tok->eos_id(), 7);
    QVERIFY(has_stop(*tok, 7));
    // Without any json file the model's own bos/eos ids are used.
    QTemporaryDir bare;
    const auto plain = resa::load_tokenizer(model_folder(bare, ""), -1, {});
    QCOMPARE(plain->bos_id(), 1);
    QCOMPARE(plain->eos_id(), 2);
    QCOMPARE(resa::read_chat_template(bare.path().toStdString()), std::string());
  }

  void chat_template_list_takes_the_default_entry() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const auto root = model_folder(dir, R"({"chat_template": [
      {"name": "tool_use", "template": "tools"},
      {"name": "default", "template": "<|im_start|>chat"}]})");
    QCOMPARE(resa::read_chat_template(root), std::string("<|im_start|>chat"));
  }

  void missing_tokenizer_model_error_names_the_folder() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string folder = dir.path().toStdString();
    resa::test::write_text(fs::path(folder) / "tokenizer.json", "{}");
    try {
      resa::load_tokenizer(folder, -1, {});
      QFAIL("no error for a folder without tokenizer.model");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::kFileNotFound);
      const std::string what = e.what();
      QVERIFY2(what.find("tokenizer.model not found in " + folder) != std::string::npos, e.what());
      QVERIFY2(what.find("sentencepiece") != std::string::npos, e.what());
      QVERIFY2(what.find("tokenizer.json") != std::string::npos, e.what());
    }
  }

  void corrupt_files_are_reported_with_their_path() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const fs::path root = dir.path().toStdString();
    resa::test::write_text(root / "tokenizer.model", "not a model");
    try {
      resa::load_tokenizer(root, -1, {});
      QFAIL("no error for a corrupt tokenizer.model");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::kCorruptFile);
      QVERIFY2(std::string(e.what()).find((root / "tokenizer.model").string()) != std::string::npos,
               e.what());
    }
    const auto good = model_folder(dir, "{\"added_tokens_decoder\": ");
    try {
      resa::load_tokenizer(good, -1, {});
      QFAIL("no error for a truncated tokenizer_config.json");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::kCorruptFile);
      QVERIFY2(std::string(e.what()).find("tokenizer_config.json") != std::string::npos, e.what());
    }
  }

  void byte_tokenizer_maps_bytes_and_chat_specials() {
    const auto tok = resa::make_byte_tokenizer(512);
    QCOMPARE(tok->vocab_size(), 512);
    QVERIFY(!tok->adds_dummy_prefix());
    QCOMPARE(tok->encode("A\xC3\xA9"), (std::vector<int>{3 + 0x41, 3 + 0xC3, 3 + 0xA9}));
    QCOMPARE(tok->decode(tok->encode(" caf\xC3\xA9"), true), std::string(" caf\xC3\xA9"));
    QCOMPARE(tok->bos_id(), 1);
    QCOMPARE(tok->eos_id(), 2);
    QCOMPARE(tok->special_tokens().at("<|im_start|>"), 259);
    QCOMPARE(tok->special_tokens().at("<|im_end|>"), 260);
    QCOMPARE(tok->special_tokens().at("<|eot_id|>"), 264);
    QCOMPARE(tok->special_tokens().at("<|system|>"), 267);
    QCOMPARE(tok->stop_ids(), (std::vector<int>{2, 260, 264}));
    QCOMPARE(tok->token_bytes(3 + 0xFF), std::string("\xFF"));
    QCOMPARE(tok->token_bytes(260), std::string());
    QCOMPARE(tok->token_bytes(400), std::string());
    QCOMPARE(tok->encode_with_specials("<s><|user|>\nhi"),
             (std::vector<int>{1, 265, 3 + '\n', 3 + 'h', 3 + 'i'}));
  }

  void byte_tokenizer_rejects_a_small_vocabulary() {
    try {
      resa::make_byte_tokenizer(511);
      QFAIL("no error for vocab_size 511");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::kInvalidArgument);
      QVERIFY2(std::string(e.what()).find("511") != std::string::npos, e.what());
    }
  }

  void utf8_stream_holds_an_emoji_split_across_pushes() {
    resa::Utf8Stream s;
    QCOMPARE(s.push("a\xF0"), std::string("a"));
    QCOMPARE(s.push("\x9F"), std::string());
    QCOMPARE(s.push("\x98"), std::string());
    QCOMPARE(s.push("\x80!"), std::string("\xF0\x9F\x98\x80!"));
    QCOMPARE(s.flush(), std::string());
  }

  void utf8_stream_replaces_invalid_bytes() {
    resa::Utf8Stream s;
    const std::string fffd = "\xEF\xBF\xBD";
    QCOMPARE(s.push("x\xFFy"), "x" + fffd + "y");
    QCOMPARE(s.push("\x80"), fffd);  // a continuation byte with no lead
    // E2 82 starts a 3-byte character; '(' breaks it: one U+FFFD for the maximal subpart.
    QCOMPARE(s.push("\xE2\x82("), fffd + "(");
    QCOMPARE(s.push("\xED\xA0\x80"), fffd + fffd + fffd);  // a surrogate, never valid
    QCOMPARE(s.push("\xC0\xAF"), fffd + fffd);             // overlong '/'
  }

  void utf8_stream_flush_replaces_an_incomplete_tail() {
    resa::Utf8Stream s;
    QCOMPARE(s.push("\xC3\xA9\xE2\x82"), std::string("\xC3\xA9"));
    QCOMPARE(s.flush(), std::string("\xEF\xBF\xBD"));
    QCOMPARE(s.flush(), std::string());
    QCOMPARE(s.push("ok"), std::string("ok"));
  }
};

QTEST_APPLESS_MAIN(TestTokenizer)
#include "test_tokenizer.moc"
