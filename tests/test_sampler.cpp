// Sampling: greedy, temperature with top-k / top-p / min-p, repetition penalty, seeds.
#include <QtTest>

#include <map>

#include "engine/error.h"
#include "engine/sampler.h"

using namespace resa;

class TestSampler : public QObject {
  Q_OBJECT

  static std::vector<float> logits() { return {1.0f, 3.0f, 2.5f, -1.0f, 0.0f, 2.9f}; }

  static std::map<int, int> histogram(SamplingParams p, int draws) {
    Sampler s(p);
    std::map<int, int> h;
    for (int i = 0; i < draws; ++i) {
      auto l = logits();
      ++h[s.sample(l.data(), int(l.size()), {})];
    }
    return h;
  }

 private slots:
  void greedy_is_argmax() {
    Sampler s({});
    auto l = logits();
    QCOMPARE(s.sample(l.data(), 6, {}), 1);
  }

  void top_k_one_is_argmax_at_any_temperature() {
    SamplingParams p;
    p.temperature = 5.0f;
    p.top_k = 1;
    QCOMPARE(histogram(p, 200), (std::map<int, int>{{1, 200}}));
  }

  void top_k_keeps_only_the_k_best() {
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_k = 3;
    const auto h = histogram(p, 2000);
    for (const auto& [tok, n] : h) QVERIFY2(tok == 1 || tok == 5 || tok == 2, "outside top-3");
    QCOMPARE(int(h.size()), 3);
  }

  void top_p_cuts_the_tail() {
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_p = 0.5f;  // p(1) ~ 0.35, p(5) ~ 0.32: the nucleus is {1, 5}
    const auto h = histogram(p, 2000);
    QCOMPARE(int(h.size()), 2);
    QVERIFY(h.count(1) && h.count(5));
  }

  void min_p_drops_unlikely_tokens() {
    SamplingParams p;
    p.temperature = 1.0f;
    p.min_p = 0.5f;  // keeps tokens with p >= 0.5 * p_max: 1 (3.0), 5 (2.9), 2 (2.5: e^-0.5=0.61)
    const auto h = histogram(p, 2000);
    QCOMPARE(int(h.size()), 3);
    QVERIFY(!h.count(0) && !h.count(3) && !h.count(4));
  }

  void temperature_sampling_follows_softmax() {
    SamplingParams p;
    p.temperature = 1.0f;
    p.seed = 7;
    const auto h = histogram(p, 20000);
    auto l = logits();
    double z = 0;
    for (float x : l) z += std::exp(x);
    for (int t = 0; t < 6; ++t) {
      const double expected = std::exp(l[t]) / z * 20000;
      const double got = h.count(t) ? h.at(t) : 0;
      QVERIFY2(std::abs(got - expected) < 5 * std::sqrt(expected) + 5,
               qPrintable(QString("token %1: %2 vs %3").arg(t).arg(got).arg(expected)));
    }
  }

  void repetition_penalty_changes_the_greedy_choice() {
    SamplingParams p;
    p.repetition_penalty = 1.2f;  // 3.0 / 1.2 = 2.5 < 2.9
    Sampler s(p);
    auto l = logits();
    QCOMPARE(s.sample(l.data(), 6, {1}), 5);
    auto l2 = logits();
    l2[3] = -1.0f;
    QCOMPARE(s.sample(l2.data(), 6, {3}), 1);  // a negative logit is pushed further down
    QCOMPARE(l2[3], -1.2f);
  }

  void same_seed_same_tokens_other_seed_differs() {
    SamplingParams p;
    p.temperature = 1.5f;
    auto run = [&](uint64_t seed) {
      p.seed = seed;
      Sampler s(p);
      std::vector<int> out;
      for (int i = 0; i < 64; ++i) {
        auto l = logits();
        out.push_back(s.sample(l.data(), 6, {}));
      }
      return out;
    };
    QCOMPARE(run(1), run(1));
    QVERIFY(run(1) != run(2));
  }

  void invalid_values_are_rejected_with_their_name() {
    auto rejects = [](SamplingParams p, const char* what) {
      try {
        validate(p);
        return false;
      } catch (const Error& e) {
        return QString(e.what()).contains(what);
      }
    };
    SamplingParams p;
    p.temperature = -1;
    QVERIFY(rejects(p, "temperature"));
    p = {};
    p.top_p = 0;
    QVERIFY(rejects(p, "top-p"));
    p = {};
    p.min_p = 1.5f;
    QVERIFY(rejects(p, "min-p"));
    p = {};
    p.top_k = -3;
    QVERIFY(rejects(p, "top-k"));
    p = {};
    p.repetition_penalty = 0;
    QVERIFY(rejects(p, "repetition penalty"));
  }
};

QTEST_APPLESS_MAIN(TestSampler)
#include "test_sampler.moc"
