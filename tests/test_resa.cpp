// ReSA decoding on the CPU reference backend: sparse attention, block selection, budget rule,
// summaries and rectification (RESA.md), on a synthetic-weight model.
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "engine/conversation.h"
#include "engine/presets.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/block_select.h"
#include "tests/support/kv_compare.h"

using namespace resa;
using resa::test::kv_diff;

namespace {

// The tiny preset with small blocks, so that a few hundred tokens make many blocks and a
// budget well below all of them.
ResaParams small_blocks() {
  ResaParams p;
  p.block_size = 4;
  p.ratio = 0.1;
  p.min_blocks = 3;
  p.local = 1;
  p.sink = true;
  p.rectify_every = 8;
  return p;
}

std::vector<int> random_tokens(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> d(3, vocab - 1);
  std::vector<int> t(n);
  for (int& x : t) x = d(rng);
  return t;
}

GenerateOptions options(DecodeMode mode, const ResaParams& p, int max_new) {
  GenerateOptions o;
  o.mode = mode;
  o.resa = p;
  o.max_new_tokens = max_new;
  o.extra_stop_ids = {};
  return o;
}

}  // namespace

class TestResa : public QObject {
  Q_OBJECT

 private:
  std::unique_ptr<Model> model_;
  const ModelConfig& cfg() const { return model_->config(); }

  // A conversation holding a prompt of n random tokens; stop tokens cannot end it early since
  // the prompt model is random: generation is bounded by max_new_tokens only.
  std::unique_ptr<Conversation> conversation(int n, const ResaParams& p, uint64_t seed = 7) {
    auto c = std::make_unique<Conversation>(*model_, 2048, p.block_size);
    c->add_tokens(random_tokens(n, cfg().vocab_size, seed));
    return c;
  }

  // A dense prefill of exactly `tokens` in a fresh cache.
  std::unique_ptr<Conversation> dense_prefill(const std::vector<int>& tokens, int block_size) {
    auto c = std::make_unique<Conversation>(*model_, 2048, block_size);
    c->add_tokens(tokens);
    GenerateOptions o;
    o.resa.block_size = block_size;
    c->prefill(o, {});
    return c;
  }

 private slots:
  void initTestCase() {
    ModelConfig c = *preset_config("tiny");
    c.max_position_embeddings = 2048;
    model_ = Model::random(c, "tiny", 1, {});
  }

  void budget_rule_matches_resa_md() {
    ResaParams p;  // ratio 0.1, min 16, local 1, sink
    QCOMPARE(resa_budget(1, p), 1);
    QCOMPARE(resa_budget(10, p), 10);   // fewer blocks than min_blocks: all of them
    QCOMPARE(resa_budget(30, p), 16);   // min_blocks dominates
    QCOMPARE(resa_budget(160, p), 16);  // ceil(16.0) == 16
    QCOMPARE(resa_budget(300, p), 30);  // ceil(30 * 0.1) stays 30 despite rounding
    QCOMPARE(resa_budget(301, p), 31);  // ceil(30.1)
    QCOMPARE(resa_budget(16384, p), 1639);
    p.min_blocks = 1;
    p.local = 4;
    QCOMPARE(resa_budget(20, p), 5);  // forced blocks (sink + 4 local) raise the budget
  }

  void top_blocks_keep_sink_and_local_even_when_they_score_lowest() {
    const int nb = 40;
    std::vector<float> scores(nb);
    for (int b = 0; b < nb; ++b) scores[b] = float(b % 7);  // ties on purpose
    scores[0] = -100.f;
    scores[nb - 1] = -100.f;
    scores[nb - 2] = -100.f;
    std::vector<int> out(nb), scratch(nb);
    const int k = cpu::select_top_blocks(scores.data(), nb, 6, true, 2, out.data(), scratch.data());
    QCOMPARE(k, 6);
    out.resize(k);
    QVERIFY(std::is_sorted(out.begin(), out.end()));
    QCOMPARE(out.front(), 0);
    QCOMPARE(out[k - 2], nb - 2);
    QCOMPARE(out[k - 1], nb - 1);
    // The other three are the best scores (6), lowest index first among ties: 6, 13, 20.
    QCOMPARE(out[1], 6);
    QCOMPARE(out[2], 13);
    QCOMPARE(out[3], 20);
  }

  void sparse_attention_matches_dense_with_block_mask_data() {
    QTest::addColumn<int>("ctx");
    QTest::addColumn<int>("group");
    for (int ctx : {1, 3, 9, 27, 81, 129, 257})
      for (int group : {1, 2, 4, 8}) QTest::addRow("ctx%d_gqa%d", ctx, group) << ctx << group;
  }

  // FlashInfer's reference: attention over the selected blocks equals softmax attention with
  // every unselected key masked out, computed here in double.
  void sparse_attention_matches_dense_with_block_mask() {
    QFETCH(int, ctx);
    QFETCH(int, group);
    const int bs = 16, d = 64, kvh = 2, heads = kvh * group, nb = (ctx + bs - 1) / bs;
    std::mt19937_64 rng(ctx * 31 + group);
    std::normal_distribution<float> nd;
    const size_t page = cpu::KvLayerView::page_floats(kvh, bs, d);
    std::vector<float> storage(page * nb);
    for (float& x : storage) x = nd(rng);
    std::vector<float*> blocks(nb);
    for (int b = 0; b < nb; ++b) blocks[b] = storage.data() + b * page;
    cpu::KvLayerView kv{blocks.data(), nb, bs, d, kvh};
    std::vector<float> q(size_t(heads) * d), out(size_t(heads) * d, std::nanf(""));
    for (float& x : q) x = nd(rng);
    // A different random selection per KV head, always with the last block.
    std::vector<std::vector<int>> sel(kvh);
    std::vector<const int*> sel_ptr(kvh);
    std::vector<int> n_sel(kvh);
    for (int h = 0; h < kvh; ++h) {
      for (int b = 0; b < nb; ++b)
        if (b == nb - 1 || rng() % 3 == 0) sel[h].push_back(b);
      sel_ptr[h] = sel[h].data();
      n_sel[h] = int(sel[h].size());
    }
    cpu::AttentionArgs a;
    a.q = q.data();
    a.out = out.data();
    a.nq = 1;
    a.pos0 = ctx - 1;
    a.n_heads = heads;
    a.kv = kv;
    a.selected = sel_ptr.data();
    a.n_selected = n_sel.data();
    a.scale = 1.0f / 8.0f;
    cpu::attention(a);
    for (int hq = 0; hq < heads; ++hq) {
      const int h = hq / group;
      std::vector<double> w;
      std::vector<int> pos;
      for (int b : sel[h])
        for (int t = 0; t < bs && b * bs + t < ctx; ++t) {
          double s = 0;
          for (int x = 0; x < d; ++x) s += double(q[hq * d + x]) * kv.k(b, h)[t * d + x];
          w.push_back(s * a.scale);
          pos.push_back(b * bs + t);
        }
      const double mx = *std::max_element(w.begin(), w.end());
      double sum = 0;
      for (double& x : w) sum += (x = std::exp(x - mx));
      for (int x = 0; x < d; ++x) {
        double ref = 0;
        for (size_t i = 0; i < w.size(); ++i)
          ref += w[i] / sum * kv.v(pos[i] / bs, h)[(pos[i] % bs) * d + x];
        const float got = out[hq * d + x];
        QVERIFY2(std::isfinite(got), "attention left an output unwritten");
        QVERIFY2(std::abs(got - ref) < 1e-4 * (1 + std::abs(ref)),
                 qPrintable(QString("head %1 dim %2: %3 vs %4").arg(hq).arg(x).arg(got).arg(ref)));
      }
    }
  }

  void full_budget_sparse_equals_dense() {
    ResaParams p = small_blocks();
    p.ratio = 1.0;  // every block: RESA.md step 7 says this is exactly dense attention
    auto dense = conversation(150, p);
    auto sparse = conversation(150, p);
    const GenerationResult rd = dense->generate(options(DecodeMode::kDense, p, 24), {});
    const GenerationResult rs = sparse->generate(options(DecodeMode::kSparse, p, 24), {});
    QCOMPARE(rs.tokens, rd.tokens);
    QCOMPARE(rs.stats.kv_read_fraction(), 1.0);
    QVERIFY(kv_diff(dense->kv(), sparse->kv(), dense->cached_tokens(), cfg()) < 1e-5);
  }

  void sparse_with_small_budget_reads_less_and_drifts_from_dense_kv() {
    const ResaParams p = small_blocks();
    auto sparse = conversation(300, p);
    const GenerationResult r = sparse->generate(options(DecodeMode::kSparse, p, 24), {});
    QVERIFY(r.stats.kv_read_fraction() < 0.2);
    // Negative control for the rectification test below: without rectification, the K/V of
    // sparsely decoded tokens differ from a dense prefill's beyond rounding.
    auto ref = dense_prefill(std::vector<int>(sparse->tokens().begin(),
                                              sparse->tokens().begin() + sparse->cached_tokens()),
                             p.block_size);
    QVERIFY2(kv_diff(sparse->kv(), ref->kv(), sparse->cached_tokens(), cfg()) > 1e-3,
             "sparse decoding should change the K/V of later layers");
  }

  void rectification_restores_dense_kv_data() {
    QTest::addColumn<bool>("folded");
    QTest::newRow("reference") << false;
    QTest::newRow("folded") << true;
  }

  void rectification_restores_dense_kv() {
    QFETCH(bool, folded);
    ResaParams p = small_blocks();
    p.fold_rectification = folded;
    auto conv = conversation(300, p);
    int checked = 0;
    double worst = 0;
    auto sink = [&](const Event& e) {
      const auto* r = std::get_if<RectificationEvent>(&e);
      if (!r) return;
      // After each rectification, every cached position equals a dense prefill of the same
      // tokens (folded: the new token's K/V was written by the same dense pass).
      const int n = conv->kv().tokens();
      QCOMPARE(conv->rectified_upto(), n);
      auto ref = dense_prefill(std::vector<int>(conv->tokens().begin(), conv->tokens().begin() + n),
                               p.block_size);
      worst = std::max(worst, kv_diff(conv->kv(), ref->kv(), n, cfg()));
      ++checked;
    };
    const GenerationResult r = conv->generate(options(DecodeMode::kResa, p, 35), sink);
    QCOMPARE(r.stats.rectifications, 4);  // 34 decode steps, f = 8
    QCOMPARE(checked, 4);
    QVERIFY2(worst < 1e-4, qPrintable(QString("rectified K/V differ by %1").arg(worst)));
  }

  void summaries_stay_exact_across_blocks_and_rectifications() {
    const ResaParams p = small_blocks();
    auto conv = conversation(97, p);  // ends inside a block
    conv->generate(options(DecodeMode::kResa, p, 30), {});
    const KvCache& kv = conv->kv();
    const int n = kv.tokens();
    for (int l = 0; l < cfg().num_layers; ++l) {
      const cpu::KvLayerView v = kv.layer(l);
      for (int b = 0; b < kv.num_blocks(); ++b)
        for (int h = 0; h < cfg().num_kv_heads; ++h)
          for (int x = 0; x < cfg().head_dim; ++x) {
            float lo = std::numeric_limits<float>::infinity(), hi = -lo;
            for (int t = 0; t < p.block_size && b * p.block_size + t < n; ++t) {
              const float k = v.k(b, h)[t * cfg().head_dim + x];
              lo = std::min(lo, k);
              hi = std::max(hi, k);
            }
            QCOMPARE(v.kmin(b, h)[x], lo);
            QCOMPARE(v.kmax(b, h)[x], hi);
          }
    }
  }

  // One selection per KV head (its group's mean query), the sink and the local block in every
  // selection, and the step statistics equal to what the budget rule implies.
  void selection_counts_follow_the_budget_rule() {
    const ResaParams p = small_blocks();
    auto conv = conversation(301, p);
    std::vector<StepEvent> steps;
    auto sink = [&](const Event& e) {
      if (const auto* s = std::get_if<StepEvent>(&e)) steps.push_back(*s);
    };
    const GenerationResult r = conv->generate(options(DecodeMode::kSparse, p, 20), sink);
    QCOMPARE(int(steps.size()), r.stats.decode_steps);
    const int lh = cfg().num_layers * cfg().num_kv_heads, bs = p.block_size;
    const int64_t row = 2 * cfg().head_dim * 4;
    int64_t read = 0, dense = 0;
    for (const StepEvent& s : steps) {
      const int nb = (s.ctx_tokens + bs - 1) / bs, budget = resa_budget(nb, p);
      const int last = s.ctx_tokens - (nb - 1) * bs;  // the partial block being filled
      const int64_t tokens = int64_t(lh) * ((budget - 1) * bs + last);
      QCOMPARE(s.blocks_selected, int64_t(lh) * budget);  // per KV head, not per query head
      QCOMPARE(s.blocks_total, int64_t(lh) * nb);
      QCOMPARE(s.kv_bytes_read, tokens * row + int64_t(lh) * nb * row);
      read += tokens;
      dense += int64_t(lh) * s.ctx_tokens;
    }
    QCOMPARE(r.stats.kv_read_fraction(), double(read) / double(dense));
    // Every step selects the sink (block 0) in every layer and KV head.
    QCOMPARE(int64_t(r.block_hits[0]), int64_t(lh) * r.stats.decode_steps);
    int64_t hits = 0;
    for (uint32_t h : r.block_hits) hits += h;
    QCOMPARE(hits, r.stats.blocks_selected);
    // The local block of the last step's context was read by every layer and head then.
    QVERIFY(r.block_hits[(steps.back().ctx_tokens - 1) / bs] >= uint32_t(lh));
  }

  void resa_without_rectification_is_sparse() {
    ResaParams p = small_blocks();
    p.rectify_every = 0;
    auto a = conversation(200, p);
    auto b = conversation(200, p);
    const GenerationResult ra = a->generate(options(DecodeMode::kResa, p, 20), {});
    const GenerationResult rb = b->generate(options(DecodeMode::kSparse, p, 20), {});
    QCOMPARE(ra.tokens, rb.tokens);
    QCOMPARE(ra.stats.rectifications, 0);
    QCOMPARE(ra.stats.kv_read_fraction(), rb.stats.kv_read_fraction());
    QCOMPARE(kv_diff(a->kv(), b->kv(), a->cached_tokens(), cfg()), 0.0);
  }

  void next_resa_turn_redoes_the_unrectified_tail_densely() {
    const ResaParams p = small_blocks();
    auto conv = conversation(120, p);
    conv->generate(options(DecodeMode::kResa, p, 12), {});  // 11 steps: 8 rectified, 3 not
    QCOMPARE(conv->rectified_upto(), 120 + 8);
    conv->add_tokens(random_tokens(10, cfg().vocab_size, 99));
    const GenerationResult r = conv->generate(options(DecodeMode::kResa, p, 2), {});
    // The 3 sparse positions, the pending last answer token and the 10 new ones.
    QCOMPARE(r.stats.prefill_tokens, 3 + 1 + 10);
    const int n = conv->rectified_upto();
    auto ref = dense_prefill(std::vector<int>(conv->tokens().begin(), conv->tokens().begin() + n),
                             p.block_size);
    QVERIFY(kv_diff(conv->kv(), ref->kv(), n, cfg()) < 1e-4);
  }
};

QTEST_APPLESS_MAIN(TestResa)
#include "test_resa.moc"
