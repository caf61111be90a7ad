// KV snapshots (engine/kv_snapshot.h): a saved conversation reloads bit-identical and answers
// exactly as the one that never left memory; a snapshot of another model, another block size
// or a damaged file is refused with a message naming the file, leaving the conversation as it
// was.
#include <QtTest>

#include <QTemporaryDir>

#include <cstring>
#include <fstream>

#include "engine/conversation.h"
#include "engine/error.h"
#include "engine/kv_snapshot.h"
#include "engine/presets.h"
#include "tests/support/test_support.h"

using namespace resa;

namespace {

const char* kDocument =
    "The lighthouse keeper wrote in his log every evening: the wind, the sea, the ships that "
    "passed and the ones that did not. In the winter of the long storm he counted forty days "
    "without a single sail, and he began to write down what he remembered instead: his "
    "mother's kitchen, the smell of tar in the harbour, the names of the boats his father had "
    "built. ";

GenerateOptions options(DecodeMode mode, int max_new) {
  GenerateOptions o;
  o.mode = mode;
  o.max_new_tokens = max_new;
  o.resa.min_blocks = 2;  // sparse steps really skip blocks at these short contexts
  o.resa.rectify_every = 4;
  return o;
}

Error expect_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  return Error(ErrorKind::kInternal, "no error was thrown");
}

}  // namespace

class TestSnapshot : public QObject {
  Q_OBJECT

  std::unique_ptr<Model> model_;
  std::unique_ptr<Model> tiny_;
  QTemporaryDir dir_;
  ModelFingerprint fp_;

  std::string path(const char* name) {
    return dir_.filePath(QString::fromLatin1(name)).toStdString();
  }

  // A conversation with a document turn answered in resa mode (sparse K/V past the rectified
  // frontier, so the frontier must survive the round trip).
  std::unique_ptr<Conversation> answered(int block_size = 16) {
    auto conv = std::make_unique<Conversation>(*model_, 1024, block_size);
    std::string doc;
    for (int i = 0; i < 3; ++i) doc += kDocument;
    conv->add_user_turn(doc + "\nWhat did the keeper write about?");
    GenerateOptions o = options(DecodeMode::kResa, 11);
    o.resa.block_size = block_size;
    conv->generate(o, {});
    return conv;
  }

 private slots:
  void initTestCase() {
    QVERIFY(dir_.isValid());
    LoadOptions one_thread;  // tiny models: threads only add synchronisation
    one_thread.threads = 1;
    model_ = Model::load(test::fixture("models/llama-gqa"), one_thread);
    tiny_ = Model::random(*preset_config("tiny"), "tiny", 1, one_thread);
    fp_ = model_fingerprint(*model_, "llama-gqa fixture");
  }

  void xxhash64_matches_the_reference() {
    QCOMPARE(xxhash64("", 0), 0xEF46DB3751D8E999ull);
    QCOMPARE(xxhash64("abc", 3), 0x44BC2CF5AD770999ull);
    const char* s = "Nobody inspects the spammish repetition";
    QCOMPARE(xxhash64(s, std::strlen(s)), 0xFBCEA83C8A378BF1ull);
  }

  void snapshot_reloads_bit_identical() {
    auto conv = answered();
    QVERIFY(conv->rectified_upto() < conv->cached_tokens());  // sparse K/V past the frontier
    save_kv_snapshot(path("a.resakv"), *conv, fp_, "app bytes");
    const SnapshotInfo info = read_kv_snapshot_info(path("a.resakv"));
    QCOMPARE(info.token_count, conv->cached_tokens());
    QCOMPARE(info.rectified_upto, conv->rectified_upto());
    QCOMPARE(info.block_size, 16);
    QVERIFY(info.model == fp_);

    Conversation back(*model_, 1024, 16);
    QCOMPARE(load_kv_snapshot(path("a.resakv"), back, fp_), std::string("app bytes"));
    const int n = conv->cached_tokens();
    QCOMPARE(back.cached_tokens(), n);
    QCOMPARE(back.rectified_upto(), conv->rectified_upto());
    QVERIFY(std::equal(back.tokens().begin(), back.tokens().end(), conv->tokens().begin()));
    const ModelConfig& c = model_->config();
    const size_t row = size_t(c.head_dim) * sizeof(float);
    for (int l = 0; l < c.num_layers; ++l) {
      for (int h = 0; h < c.num_kv_heads; ++h) {
        for (int p = 0; p < n; ++p) {
          QVERIFY(std::memcmp(back.kv().key(l, p, h), conv->kv().key(l, p, h), row) == 0);
          QVERIFY(std::memcmp(back.kv().value(l, p, h), conv->kv().value(l, p, h), row) == 0);
        }
        for (int b = 0; b < conv->kv().num_blocks(); ++b) {
          QVERIFY(std::memcmp(back.kv().kmin(l, b, h), conv->kv().kmin(l, b, h), row) == 0);
          QVERIFY(std::memcmp(back.kv().kmax(l, b, h), conv->kv().kmax(l, b, h), row) == 0);
        }
      }
    }
  }

  void next_answer_equals_the_one_without_snapshot() {
    for (DecodeMode mode : {DecodeMode::kResa, DecodeMode::kSparse, DecodeMode::kDense}) {
      auto conv = answered();
      save_kv_snapshot(path("b.resakv"), *conv, fp_);
      // Tokens without K/V (the answer's last token) are the caller's to carry over.
      const std::vector<int> pending(conv->tokens().begin() + conv->cached_tokens(),
                                     conv->tokens().end());
      conv->add_user_turn("And in the summer?");
      const GenerationResult expected = conv->generate(options(mode, 12), {});

      Conversation back(*model_, 1024, 16);
      load_kv_snapshot(path("b.resakv"), back, fp_);
      back.add_tokens(pending);
      back.add_user_turn("And in the summer?");
      const GenerationResult got = back.generate(options(mode, 12), {});
      QCOMPARE(got.tokens, expected.tokens);
      QCOMPARE(got.text, expected.text);
      QCOMPARE(got.stats.prefill_tokens, expected.stats.prefill_tokens);
      QCOMPARE(got.block_hits, expected.block_hits);
    }
  }

  void snapshot_of_another_model_is_refused() {
    auto conv = answered();
    save_kv_snapshot(path("c.resakv"), *conv, fp_);
    Conversation other(*tiny_, 1024, 16);
    other.add_user_turn("keep me");
    const std::vector<int> before = other.tokens();
    const Error e = expect_error([&] {
      load_kv_snapshot(path("c.resakv"), other, model_fingerprint(*tiny_, "tiny seed 1"));
    });
    QCOMPARE(e.kind(), ErrorKind::kUnsupported);
    const QString msg = QString::fromStdString(e.what());
    QVERIFY2(msg.contains("another model") && msg.contains("c.resakv"), e.what());
    QVERIFY(msg.contains("re-processed"));
    QVERIFY(other.tokens() == before);
    // Same shapes, other weights (identity): refused too.
    Conversation same(*model_, 1024, 16);
    const Error e2 = expect_error([&] {
      load_kv_snapshot(path("c.resakv"), same, model_fingerprint(*model_, "another checkpoint"));
    });
    QCOMPARE(e2.kind(), ErrorKind::kUnsupported);
  }

  void snapshot_with_other_block_size_is_refused() {
    auto conv = answered(16);
    save_kv_snapshot(path("d.resakv"), *conv, fp_);
    Conversation other(*model_, 1024, 32);
    const Error e = expect_error([&] { load_kv_snapshot(path("d.resakv"), other, fp_); });
    QCOMPARE(e.kind(), ErrorKind::kUnsupported);
    QVERIFY2(QString(e.what()).contains("block size 16"), e.what());
  }

  void damaged_snapshots_are_refused_with_a_clear_message() {
    auto conv = answered();
    const std::string good = path("e.resakv");
    save_kv_snapshot(good, *conv, fp_);
    const std::vector<char> bytes = test::read_bytes(good);

    struct Case {
      const char* name;
      std::function<void(std::vector<char>&)> damage;
      const char* says;
    };
    const std::vector<Case> cases = {
        {"payload bit", [](std::vector<char>& b) { b[b.size() - 100] ^= 0x10; },
         "payload checksum"},
        {"header bit", [](std::vector<char>& b) { b[20] ^= 0x01; }, "header"},
        {"truncated", [](std::vector<char>& b) { b.resize(b.size() - 7); }, "size"},
        {"magic", [](std::vector<char>& b) { b[0] = 'X'; }, "not a ReSA Chat KV snapshot"},
        {"empty", [](std::vector<char>& b) { b.clear(); }, "not a ReSA Chat KV snapshot"},
    };
    for (const Case& c : cases) {
      std::vector<char> broken = bytes;
      c.damage(broken);
      const std::string p = path("broken.resakv");
      test::write_bytes(p, broken);
      Conversation target(*model_, 1024, 16);
      target.add_user_turn("untouched");
      const std::vector<int> before = target.tokens();
      const Error e = expect_error([&] { load_kv_snapshot(p, target, fp_); });
      QVERIFY2(e.kind() == ErrorKind::kCorruptFile, c.name);
      const QString msg = QString::fromStdString(e.what());
      QVERIFY2(msg.contains(QString::fromStdString(p)), e.what());
      QVERIFY2(msg.contains(c.says), e.what());
      QVERIFY2(target.tokens() == before, c.name);
      QCOMPARE(target.cached_tokens(), 0);
    }
    // A newer format version is named as such.
    std::vector<char> newer = bytes;
    newer[8] = 9;
    test::write_bytes(path("newer.resakv"), newer);
    Conversation target(*model_, 1024, 16);
    const Error e = expect_error([&] { load_kv_snapshot(path("newer.resakv"), target, fp_); });
    QCOMPARE(e.kind(), ErrorKind::kUnsupported);
    QVERIFY2(QString(e.what()).contains("format version 9"), e.what());
  }

  void snapshot_longer_than_the_context_is_refused() {
    auto conv = answered();
    save_kv_snapshot(path("f.resakv"), *conv, fp_);
    Conversation small(*model_, 64, 16);
    const Error e = expect_error([&] { load_kv_snapshot(path("f.resakv"), small, fp_); });
    QCOMPARE(e.kind(), ErrorKind::kContextFull);
  }
};

QTEST_GUILESS_MAIN(TestSnapshot)
#include "test_snapshot.moc"
