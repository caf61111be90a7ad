// ctest-labels: gpu
// ctest-link: resa_engine
// Every CUDA kernel against its CPU twin (STYLE.md 1): random inputs over a table of shapes
// (awkward lengths 1, 3, 9, 27, 81, 129, 257, ..., one block, partial last block, GQA 1..8,
// head_dim 64 / 128), a normalised error with a tolerance per op, guard bytes around every
// output, and any NaN fails. Skips cleanly without a CUDA device or without the CUDA build.
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/cuda_backend.h"
#include "engine/dtype.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/block_select.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/linear.h"

#if defined(RESA_HAVE_CUDA)
#include <cuda_runtime_api.h>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemv.h"
#endif

namespace {

// ||a - b|| / ||b||, or inf when a holds a NaN.
[[maybe_unused]] double rel_l2(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += double(a[i] - b[i]) * double(a[i] - b[i]);
    den += double(b[i]) * double(b[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// max |a - b| / max |b|, or inf when a holds a NaN.
[[maybe_unused]] double max_abs_rel(const float* a, const float* b, size_t n) {
  double err = 0, mag = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    err = std::max(err, double(std::abs(a[i] - b[i])));
    mag = std::max(mag, double(std::abs(b[i])));
  }
  return mag > 0 ? err / mag : err;
}

// Tolerances of the tensor-core prefill, whose only roundings beyond f32 are Q (after the
// softmax scale) and the softmax weights P, each to bf16 (relative error at most 2^-8, RMS about
// 2^-8 / sqrt(3) = 2.3e-3); K and V are the same bf16 values on both sides. Each rounding
// perturbs the output by about its relative error times the output's size: an emulation of the
// kernel's arithmetic on these shapes gave rel_l2 1.5e-3 .. 2.3e-3 and max |err| / max |ref|
// 1.2e-3 .. 2.9e-3; the bounds leave 4x and 7x.
[[maybe_unused]] constexpr double kTcRelL2 = 1e-2;
[[maybe_unused]] constexpr double kTcMaxAbs = 2e-2;

[[maybe_unused]] std::vector<float> randn(size_t n, std::mt19937_64& rng, float scale = 1.f) {
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

// Rounds to bf16 values so both sides read identical numbers.
[[maybe_unused]] std::vector<float> bf16_round(std::vector<float> v) {
  for (float& x : v) x = resa::bf16_to_f32(resa::f32_to_bf16(x));
  return v;
}

[[maybe_unused]] std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = resa::f32_to_bf16(v[i]);
  return o;
}

}  // namespace

#if defined(RESA_HAVE_CUDA)
namespace {

#define CK(call) QVERIFY2((call) == cudaSuccess, #call)

constexpr size_t kGuard = 64;               // guard elements each side of an output
constexpr uint32_t kSentinel = 0x7fc0dead;  // a NaN payload no kernel writes

// Device memory with guard regions around the payload, freed on scope exit.
template <typename T>
class Dev {
 public:
  explicit Dev(size_t n) : n_(n) {
    cudaMalloc(&raw_, (n + 2 * kGuard) * sizeof(T) + 64);
    std::vector<uint32_t> pat(((n + 2 * kGuard) * sizeof(T) + 3) / 4, kSentinel);
    cudaMemcpy(raw_, pat.data(), pat.size() * 4, cudaMemcpyHostToDevice);
  }
  ~Dev() { cudaFree(raw_); }
  T* get() const { return reinterpret_cast<T*>(static_cast<char*>(raw_) + kGuard * sizeof(T)); }
  void put(const std::vector<T>& v) {
    cudaMemcpy(get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  std::vector<T> take() const {
    std::vector<T> v(n_);
    cudaMemcpy(v.data(), get(), n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return v;
  }
  // True when the guard regions still hold the sentinel.
  bool guards_intact() const {
    std::vector<uint32_t> all(((n_ + 2 * kGuard) * sizeof(T) + 3) / 4);
    cudaMemcpy(all.data(), raw_, all.size() * 4, cudaMemcpyDeviceToHost);
    const size_t g = kGuard * sizeof(T) / 4, end = (kGuard + n_) * sizeof(T);
    for (size_t i = 0; i < g; ++i)
      if (all[i] != kSentinel) return false;
    for (size_t i = (end + 3) / 4; i + 1 < all.size(); ++i)
      if (all[i] != kSentinel) return false;
    return true;
  }

 private:
  void* raw_ = nullptr;
  size_t n_;
};

// The fused selection's workspace (SelectionDev::work), zero as the contract asks.
struct SelectWork {
  SelectWork(int kvh, int cap_blocks)
      : kvh_(kvh), words(resa::cuda::select_work_words(kvh, cap_blocks)), d(words) {
    d.put(std::vector<uint32_t>(words, 0u));
  }
  // Histograms and barrier counts zero again after a call (every call must leave them so; the
  // words after them carry a barrier generation and per-CTA counts), nothing written around it.
  bool clean() const {
    const std::vector<uint32_t> w = d.take();
    for (size_t at = 0; at < size_t(kvh_) * resa::cuda::kSelectWorkPerHead;
         at += resa::cuda::kSelectWorkPerHead)
      for (int i = 0; i < resa::cuda::kSelectWorkZeroed; ++i)
        if (w[at + size_t(i)] != 0u) return false;
    return d.guards_intact();
  }
  int kvh_;
  size_t words;
  Dev<uint32_t> d;
};

// A KV cache layer with the same bf16 values on both sides: host pages for the CPU twin,
// the device layout of kernels/cuda/attention.h for the CUDA kernels.
struct TwinKv {
  int kvh, d, bs, ctx, cap, nb;
  std::vector<float> pages;
  std::vector<float*> blocks;
  resa::cpu::KvLayerView view;
  std::unique_ptr<Dev<uint16_t>> k, v, summ;
  resa::cuda::KvLayerDev dev;

  TwinKv(int kvh_, int d_, int bs_, int ctx_, std::mt19937_64& rng)
      : kvh(kvh_), d(d_), bs(bs_), ctx(ctx_), cap(ctx_ + 5), nb((ctx_ + bs_ - 1) / bs_) {
    const int cap_blocks = (cap + bs - 1) / bs;
    const size_t page = resa::cpu::KvLayerView::page_floats(kvh, bs, d);
    pages.assign(page * cap_blocks, 0.f);
    for (int b = 0; b < cap_blocks; ++b) blocks.push_back(pages.data() + b * page);
    view = resa::cpu::KvLayerView{blocks.data(), cap_blocks, bs, d, kvh};
    std::vector<float> kf = bf16_round(randn(size_t(kvh) * cap * d, rng));
    std::vector<float> vf = bf16_round(randn(size_t(kvh) * cap * d, rng));
    for (int h = 0; h < kvh; ++h)
      for (int p = 0; p < ctx; ++p)
        for (int x = 0; x < d; ++x) {
          view.k(p / bs, h)[(p % bs) * d + x] = kf[(size_t(h) * cap + p) * d + x];
          view.v(p / bs, h)[(p % bs) * d + x] = vf[(size_t(h) * cap + p) * d + x];
        }
    for (int b = 0; b < nb; ++b)
      resa::cpu::block_summary_recompute(view, b, std::min(bs, ctx - b * bs));
    k = std::make_unique<Dev<uint16_t>>(kf.size());
    v = std::make_unique<Dev<uint16_t>>(vf.size());
    summ = std::make_unique<Dev<uint16_t>>(size_t(kvh) * cap_blocks * 2 * d);
    k->put(to_bf16(kf));
    v->put(to_bf16(vf));
    dev = resa::cuda::KvLayerDev{k->get(), v->get(), summ->get(), kvh, d, bs, cap, cap_blocks};
    resa::cuda::summaries_recompute(dev, 0, nb - 1, ctx, nullptr);
  }
};

// Positions past the last written one (ctx .. capacity - 1) of every head set to bf16 NaN:
// attention must never read them.
void poison_tail(TwinKv& kv) {
  for (auto* t : {kv.k.get(), kv.v.get()}) {
    std::vector<uint16_t> h = t->take();
    for (int hd = 0; hd < kv.kvh; ++hd)
      for (int p = kv.ctx; p < kv.cap; ++p)
        for (int x = 0; x < kv.d; ++x) h[(size_t(hd) * kv.cap + p) * kv.d + x] = 0x7fc0;
    t->put(h);
  }
}

struct DevState {
  Dev<resa::cuda::PassState> mem{1};
  DevState(int pos0, int n, int ctx_end) { mem.put({resa::cuda::PassState{pos0, n, ctx_end, 0}}); }
  const resa::cuda::PassState* get() const { return mem.get(); }
};

}  // namespace
#endif

class TestGpuKernels : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    std::string why;
    if (!resa::cuda_usable(0, &why)) QSKIP(qPrintable(QString::fromStdString("no CUDA: " + why)));
  }

#if defined(RESA_HAVE_CUDA)
  void gemv_matches_cpu_matmul_data() {
    QTest::addColumn<int>("k");
    QTest::addColumn<int>("m");
    QTest::addColumn<int>("segments");
    // 20000 and 9000 rows: more rows than one wave of resident warps, several rows per warp.
    for (auto [k, m] :
         {std::pair{8, 1}, {64, 3}, {256, 129}, {1000, 37}, {4096, 1024}, {2052, 81}, {64, 20000}, {
            2048,
            9000
          }})
      for (int s : {1, 3}) QTest::addRow("k%d_m%d_seg%d", k, m, s) << k << m << s;
  }
  void gemv_matches_cpu_matmul() {
    QFETCH(int, k);
    QFETCH(int, m);
    QFETCH(int, segments);
    std::mt19937_64 rng(k * 7 + m);
    const std::vector<float> x = randn(k, rng);
    Dev<float> dx(k);
    dx.put(x);
    std::vector<std::unique_ptr<Dev<uint16_t>>> dw;
    std::vector<std::unique_ptr<Dev<float>>> dy, db;
    std::vector<std::vector<float>> ref;
    resa::cuda::GemvSegment seg[4];
    for (int s = 0; s < segments; ++s) {
      const int rows = m + s;
      const std::vector<uint16_t> w = to_bf16(randn(size_t(rows) * k, rng, 0.1f));
      const std::vector<float> bias = randn(rows, rng);
      std::vector<float> y(rows);
      resa::cpu::matmul_bf16(x.data(), 1, k, w.data(), rows, s == 1 ? bias.data() : nullptr,
                             y.data());
      ref.push_back(y);
      dw.push_back(std::make_unique<Dev<uint16_t>>(w.size()));
      dw.back()->put(w);
      dy.push_back(std::make_unique<Dev<float>>(rows));
      db.push_back(std::make_unique<Dev<float>>(rows));
      db.back()->put(bias);
      seg[s] = {dw.back()->get(), s == 1 ? db.back()->get() : nullptr, dy.back()->get(), rows};
    }
    CK(resa::cuda::gemv_bf16(dx.get(), k, seg, segments, nullptr));
    CK(cudaDeviceSynchronize());
    for (int s = 0; s < segments; ++s) {
      const std::vector<float> got = dy[s]->take();
      const double e = rel_l2(got.data(), ref[s].data(), got.size());
      QVERIFY2(e < 1e-5, qPrintable(QString("segment %1: error %2").arg(s).arg(e)));
      QVERIFY2(dy[s]->guards_intact(), "gemv wrote outside its output");
    }
  }

  // The fused epilogues: y += W x (residual add) and silu(Wg x) * (Wu x), against the CPU ops
  // they replace (matmul, then add / silu_mul).
  void gemv_fused_outputs_match_cpu() {
    for (auto [k, m] : {std::pair{64, 3}, {1000, 37}, {4096, 1024}, {2048, 9000}, { 2052, 81 }}) {
      std::mt19937_64 rng(k * 13 + m);
      const std::vector<float> x = randn(k, rng);
      const std::vector<uint16_t> wg = to_bf16(randn(size_t(m) * k, rng, 0.1f));
      const std::vector<uint16_t> wu = to_bf16(randn(size_t(m) * k, rng, 0.1f));
      const std::vector<float> res0 = randn(m, rng);
      Dev<float> dx(k), dres(m), dgate(m), dup(m);
      Dev<uint16_t> dwg(wg.size()), dwu(wu.size());
      dx.put(x), dres.put(res0), dwg.put(wg), dwu.put(wu);
      std::vector<float> g(m), u(m), res = res0;
      resa::cpu::matmul_bf16(x.data(), 1, k, wg.data(), m, nullptr, g.data());
      resa::cpu::matmul_bf16(x.data(), 1, k, wu.data(), m, nullptr, u.data());
      for (int r = 0; r < m; ++r) res[r] += g[r];
      resa::cpu::silu_mul(g.data(), u.data(), m);

      const resa::cuda::GemvSegment acc{dwg.get(), nullptr, dres.get(), m};
      CK(resa::cuda::gemv_bf16(dx.get(), k, &acc, 1, nullptr, resa::cuda::GemvOut::kAccumulate));
      const resa::cuda::GemvSegment glu[2] = {{dwg.get(), nullptr, dgate.get(), m},
                                              { dwu.get(),
                                                nullptr,
                                                dup.get(),
                                                m }};
      CK(resa::cuda::gemv_bf16(dx.get(), k, glu, 2, nullptr, resa::cuda::GemvOut::kSiluMul));
      CK(cudaDeviceSynchronize());
      const std::vector<float> got_res = dres.take(), got_gate = dgate.take();
      const double e_res = rel_l2(got_res.data(), res.data(), m);
      const double e_glu = rel_l2(got_gate.data(), g.data(), m);
      QVERIFY2(e_res < 1e-5,
               qPrintable(QString("k %1 m %2: residual error %3").arg(k).arg(m).arg(e_res)));
      QVERIFY2(e_glu < 1e-5,
               qPrintable(QString("k %1 m %2: silu*up error %3").arg(k).arg(m).arg(e_glu)));
      QVERIFY2(dres.guards_intact() && dgate.guards_intact(), "gemv wrote outside its output");
      // kSiluMul writes only the gate output: up is left as it was (the sentinel).
      const std::vector<float> up_after = dup.take();
      uint32_t bits;
      std::memcpy(&bits, &up_after[0], 4);
      QCOMPARE(bits, kSentinel);
    }
  }

  // The RMSNorm fused into the GEMV (q/k/v, gate/up, lm_head of a decode step): the CPU's
  // rmsnorm then matmul, for each output mode; aligned rows, rows with k % 8 != 0 (the scalar
  // kernel) and the largest k the norm takes. x is scaled so the norm is far from identity.
  void gemv_norm_matches_cpu_rmsnorm_then_matmul() {
    using resa::cuda::GemvOut;
    for (auto [k, m] : {std::pair{64, 3}, {1000, 37}, {2052, 81}, {4096, 1024}, {4096, 9000}, {
                          resa::cuda::kGemvNormMaxK,
                          129
                        }}) {
      std::mt19937_64 rng(k * 17 + m);
      const float eps = 1e-5f;
      const std::vector<float> x = randn(k, rng, 7.f), nw = randn(k, rng);
      std::vector<float> h(k);
      resa::cpu::rmsnorm(x.data(), nw.data(), 1, k, eps, h.data());
      Dev<float> dx(k), dnw(k);
      dx.put(x), dnw.put(nw);
      const resa::cuda::GemvNorm norm{dnw.get(), eps};
      // kStore: three segments (the middle one with a bias), as q/k/v.
      std::vector<std::unique_ptr<Dev<uint16_t>>> dw;
      std::vector<std::unique_ptr<Dev<float>>> dy;
      std::vector<std::vector<float>> ref;
      const std::vector<float> bias = randn(m + 1, rng);
      Dev<float> dbias(bias.size());
      dbias.put(bias);
      resa::cuda::GemvSegment seg[3];
      std::vector<std::vector<uint16_t>> ws;
      for (int s = 0; s < 3; ++s) {
        const int rows = m + s;
        ws.push_back(to_bf16(randn(size_t(rows) * k, rng, 0.1f)));
        std::vector<float> y(rows);
        resa::cpu::matmul_bf16(h.data(), 1, k, ws.back().data(), rows,
                               s == 1 ? bias.data() : nullptr, y.data());
        ref.push_back(y);
        dw.push_back(std::make_unique<Dev<uint16_t>>(ws.back().size()));
        dw.back()->put(ws.back());
        dy.push_back(std::make_unique<Dev<float>>(rows));
        seg[s] = {dw.back()->get(), s == 1 ? dbias.get() : nullptr, dy.back()->get(), rows};
      }
      CK(resa::cuda::gemv_bf16(dx.get(), k, seg, 3, nullptr, GemvOut::kStore, norm));
      // kSiluMul over segments 0 and 0' (same rows), kAccumulate into a residual.
      const std::vector<uint16_t> wu = to_bf16(randn(size_t(m) * k, rng, 0.1f));
      Dev<uint16_t> dwu(wu.size());
      dwu.put(wu);
      Dev<float> dgate(m), dup(m), dres(m);
      const std::vector<float> res0 = randn(m, rng);
      dres.put(res0);
      const resa::cuda::GemvSegment glu[2] = {{dw[0]->get(), nullptr, dgate.get(), m},
                                              { dwu.get(),
                                                nullptr,
                                                dup.get(),
                                                m }};
      CK(resa::cuda::gemv_bf16(dx.get(), k, glu, 2, nullptr, GemvOut::kSiluMul, norm));
      const resa::cuda::GemvSegment acc{dw[0]->get(), nullptr, dres.get(), m};
      CK(resa::cuda::gemv_bf16(dx.get(), k, &acc, 1, nullptr, GemvOut::kAccumulate, norm));
      CK(cudaDeviceSynchronize());
      for (int s = 0; s < 3; ++s) {
        const std::vector<float> got = dy[s]->take();
        const double e = rel_l2(got.data(), ref[s].data(), got.size());
        QVERIFY2(e < 1e-5,
                 qPrintable(QString("k %1 m %2 segment %3: error %4").arg(k).arg(m).arg(s).arg(e)));
        QVERIFY2(dy[s]->guards_intact(), "gemv wrote outside its output");
      }
      std::vector<float> g = ref[0], u(m), res = res0;
      resa::cpu::matmul_bf16(h.data(), 1, k, wu.data(), m, nullptr, u.data());
      for (int r = 0; r < m; ++r) res[r] += g[r];
      resa::cpu::silu_mul(g.data(), u.data(), m);
      const std::vector<float> got_gate = dgate.take(), got_res = dres.take();
      const double e_glu = rel_l2(got_gate.data(), g.data(), m);
      const double e_res = rel_l2(got_res.data(), res.data(), m);
      QVERIFY2(
          e_glu < 1e-5 && e_res < 1e-5,
          qPrintable(
              QString("k %1 m %2: silu*up %3, residual %4").arg(k).arg(m).arg(e_glu).arg(e_res)));
      QVERIFY(dgate.guards_intact() && dres.guards_intact());
    }
    // A row longer than the norm's shared memory is refused, not run.
    const int k = resa::cuda::kGemvNormMaxK + 8;
    Dev<float> dx(k), dnw(k), dy(1);
    Dev<uint16_t> dw(k);
    const resa::cuda::GemvSegment one{dw.get(), nullptr, dy.get(), 1};
    QCOMPARE(
        resa::cuda::gemv_bf16(dx.get(), k, &one, 1, nullptr, GemvOut::kStore, {dnw.get(), 1e-5f}),
        cudaErrorInvalidValue);
  }

  void rowwise_ops_match_cpu() {
    std::mt19937_64 rng(3);
    for (int d : {64, 257, 4096}) {
      const int n = 5;
      std::vector<float> x = randn(size_t(n) * d, rng), w = randn(d, rng);
      std::vector<float> ref(x.size());
      resa::cpu::rmsnorm(x.data(), w.data(), n, d, 1e-5f, ref.data());
      Dev<float> dx(x.size()), dw(d), dout(x.size());
      dx.put(x);
      dw.put(w);
      CK(resa::cuda::rmsnorm(dx.get(), dw.get(), n, d, 1e-5f, dout.get(), nullptr));
      std::vector<float> got = dout.take();
      QVERIFY2(rel_l2(got.data(), ref.data(), ref.size()) < 1e-6, "rmsnorm");
      QVERIFY(dout.guards_intact());
      // silu * up and residual add
      std::vector<float> up = randn(x.size(), rng), g = x;
      resa::cpu::silu_mul(g.data(), up.data(), int64_t(g.size()));
      Dev<float> dup(up.size());
      dup.put(up);
      CK(resa::cuda::silu_mul(dx.get(), dup.get(), int64_t(x.size()), nullptr));
      got = dx.take();
      QVERIFY2(rel_l2(got.data(), g.data(), g.size()) < 1e-6, "silu_mul");
      QVERIFY(dx.guards_intact());
    }
    for (int hd : {64, 128}) {
      const int n = 7, heads = 5, pos0 = 1000;
      std::vector<float> x = randn(size_t(n) * heads * hd, rng), inv(hd / 2);
      for (int i = 0; i < hd / 2; ++i) inv[i] = 1.0f / std::pow(10000.f, float(2 * i) / hd);
      std::vector<int> pos(n);
      for (int i = 0; i < n; ++i) pos[i] = pos0 + i;
      std::vector<float> ref = x;
      resa::cpu::rope(ref.data(), n, heads, hd, pos.data(), inv.data());
      Dev<float> dx(x.size()), dinv(inv.size());
      dx.put(x);
      dinv.put(inv);
      DevState st(pos0, n, pos0 + n);
      CK(resa::cuda::rope(dx.get(), n, heads, hd, st.get(), dinv.get(), nullptr));
      const std::vector<float> got = dx.take();
      const double e = rel_l2(got.data(), ref.data(), ref.size());
      QVERIFY2(e < 1e-5, qPrintable(QString("rope hd %1: %2").arg(hd).arg(e)));
      // q and k (another head count) in one launch: each as rope() alone.
      const int kheads = 2;
      std::vector<float> xk = randn(size_t(n) * kheads * hd, rng), refk = xk;
      resa::cpu::rope(refk.data(), n, kheads, hd, pos.data(), inv.data());
      Dev<float> dq(x.size()), dk(xk.size());
      dq.put(x);
      dk.put(xk);
      CK(resa::cuda::rope_qk(dq.get(), heads, dk.get(), kheads, n, hd, st.get(), dinv.get(),
                             nullptr));
      const std::vector<float> gq = dq.take(), gk = dk.take();
      const double eq = rel_l2(gq.data(), ref.data(), ref.size());
      const double ek = rel_l2(gk.data(), refk.data(), refk.size());
      QVERIFY2(eq < 1e-5 && ek < 1e-5,
               qPrintable(QString("rope_qk hd %1: q %2, k %3").arg(hd).arg(eq).arg(ek)));
      QVERIFY(dq.guards_intact() && dk.guards_intact());
    }
  }

  void attention_matches_cpu_data() {
    QTest::addColumn<int>("ctx");
    QTest::addColumn<int>("group");
    QTest::addColumn<int>("head_dim");
    QTest::addColumn<int>("block");
    for (int ctx : {1, 3, 9, 16, 27, 81, 129, 257, 1000, 3001})
      for (int group : {1, 2, 4, 8})
        for (int hd : {16, 32, 64, 128})
          QTest::addRow("ctx%d_gqa%d_hd%d", ctx, group, hd) << ctx << group << hd << 16;
    QTest::addRow("ctx100_gqa3_hd128_block7") << 100 << 3 << 128 << 7;
    // The other GQA groups, and contexts long enough for many key groups per split.
    for (int group : {3, 5, 6, 7})
      QTest::addRow("ctx2049_gqa%d_hd128", group) << 2049 << group << 128 << 16;
    for (int hd : {16, 128}) QTest::addRow("ctx20011_gqa8_hd%d", hd) << 20011 << 8 << hd << 16;
    QTest::addRow("ctx5000_gqa4_hd64_block13") << 5000 << 4 << 64 << 13;
  }
  // Dense decode, block-sparse decode (FlashInfer's reference: dense attention with the block
  // mask, here the CPU kernel given the same blocks) and chunked prefill, each against the
  // CPU twin on the same bf16 K/V.
  void attention_matches_cpu() {
    QFETCH(int, ctx);
    QFETCH(int, group);
    QFETCH(int, head_dim);
    QFETCH(int, block);
    const int kvh = 2, heads = kvh * group, d = head_dim;
    std::mt19937_64 rng(ctx * 131 + group * 7 + d);
    TwinKv kv(kvh, d, block, ctx, rng);
    poison_tail(kv);  // no kernel may read past the context
    const float scale = 1.0f / std::sqrt(float(d));
    const int splits = resa::cuda::decode_splits(kvh, 132);
    Dev<float> ws(resa::cuda::decode_workspace_floats(heads, d, splits));
    CK(resa::cuda::decode_workspace_init(ws.get(), heads, d, splits, nullptr));

    // Dense decode at position ctx - 1.
    std::vector<float> q = randn(size_t(heads) * d, rng), ref(q.size());
    resa::cpu::AttentionArgs a;
    a.q = q.data(), a.out = ref.data(), a.nq = 1, a.pos0 = ctx - 1, a.n_heads = heads;
    a.kv = kv.view, a.scale = scale;
    resa::cpu::attention(a);
    Dev<float> dq(q.size()), dout(q.size());
    dq.put(q);
    DevState st(ctx - 1, 1, ctx);
    const size_t dout_bytes = q.size() * sizeof(float);
    // Each decode kernel that takes the shape, with the engine's split count, 3 splits (long
    // ranges per split) and one split, twice in a row on the same workspace (the fused combine's
    // counters must be back at zero); the output poisoned before each call, its guard bytes
    // checked after. The 3-split layout's counters lie inside the engine layout's partials:
    // initialised before its calls. The tensor-core kernel on both of its rings.
    using resa::cuda::DecodeKernel;
    using resa::cuda::DecodeRing;
    auto each_decode = [&](const resa::cuda::SelectionDev* sd, const char* what) {
      for (const auto& [kern, ring] :
           {std::pair{DecodeKernel::kSimt, DecodeRing::kAuto},
            std::pair{DecodeKernel::kFast, DecodeRing::kShallow}, std::pair {
              DecodeKernel::kFast,
              DecodeRing::kDeep
            }}) {
        if (!resa::cuda::decode_supported(d, group, kern)) continue;
        const char* kname = kern == DecodeKernel::kSimt    ? "simt"
                            : ring == DecodeRing::kShallow ? "fast (shallow ring)"
                                                           : "fast (deep ring)";
        for (const int sp : {splits, 3, 1}) {
          if (sp == 3 &&
              resa::cuda::decode_workspace_init(ws.get(), heads, d, sp, nullptr) != cudaSuccess)
            return QString("decode_workspace_init failed");
          for (int rep = 0; rep < 2; ++rep) {
            cudaMemset(dout.get(), 0xff, dout_bytes);
            if (resa::cuda::attention_decode(kv.dev, dq.get(), dout.get(), heads, scale, st.get(),
                                             sd, sp, ws.get(), nullptr, kern, ring) != cudaSuccess)
              return QString("%1 %2 decode launch failed").arg(what, kname);
            const std::vector<float> g = dout.take();
            const double err = rel_l2(g.data(), ref.data(), ref.size());
            if (!(err < 2e-5))
              return QString("%1 %2 decode (splits %3, call %4) error %5")
                  .arg(what, kname)
                  .arg(sp)
                  .arg(rep + 1)
                  .arg(err);
            if (!dout.guards_intact())
              return QString("%1 %2 decode wrote outside").arg(what, kname);
            if (!ws.guards_intact())
              return QString("%1 %2 decode wrote outside its workspace").arg(what, kname);
          }
        }
      }
      return QString();
    };
    QString why = each_decode(nullptr, "dense");
    QVERIFY2(why.isEmpty(), qPrintable(why));

    // Sparse decode with every block selected equals dense decode.
    {
      std::vector<int> flat(size_t(kvh) * kv.dev.cap_blocks, 0), count(kvh, kv.nb);
      for (int h = 0; h < kvh; ++h)
        for (int b = 0; b < kv.nb; ++b) flat[size_t(h) * kv.dev.cap_blocks + b] = b;
      Dev<int> dsel(flat.size()), dcount(kvh);
      dsel.put(flat);
      dcount.put(count);
      resa::cuda::SelectionDev sd;
      sd.blocks = dsel.get();
      sd.count = dcount.get();
      why = each_decode(&sd, "sparse (all blocks)");
      QVERIFY2(why.isEmpty(), qPrintable(why));
    }

    // Sparse decode over a random selection per KV head (always the last block).
    std::vector<std::vector<int>> sel(kvh);
    std::vector<int> flat(size_t(kvh) * kv.dev.cap_blocks, 0), count(kvh);
    std::vector<const int*> ptr(kvh);
    for (int h = 0; h < kvh; ++h) {
      for (int b = 0; b < kv.nb; ++b)
        if (b == kv.nb - 1 || rng() % 3 == 0) sel[h].push_back(b);
      ptr[h] = sel[h].data();
      count[h] = int(sel[h].size());
      std::copy(sel[h].begin(), sel[h].end(), flat.begin() + size_t(h) * kv.dev.cap_blocks);
    }
    a.selected = ptr.data();
    a.n_selected = count.data();
    resa::cpu::attention(a);
    Dev<int> dsel(flat.size()), dcount(kvh);
    dsel.put(flat);
    dcount.put(count);
    resa::cuda::SelectionDev sd;
    sd.blocks = dsel.get();
    sd.count = dcount.get();
    why = each_decode(&sd, "sparse");
    QVERIFY2(why.isEmpty(), qPrintable(why));

    // Chunked causal prefill of the last n positions.
    const int n = std::min(ctx, 37), pos0 = ctx - n;
    std::vector<float> qn = randn(size_t(n) * heads * d, rng), refn(qn.size());
    a = {};
    a.q = qn.data(), a.out = refn.data(), a.nq = n, a.pos0 = pos0, a.n_heads = heads;
    a.kv = kv.view, a.scale = scale;
    resa::cpu::attention(a);
    Dev<float> dqn(qn.size()), doutn(qn.size());
    dqn.put(qn);
    DevState stn(pos0, n, ctx);
    // Without and with the key split (a rectification-sized chunk over a long cache), on the
    // f32 SIMT kernel and, where it applies, the tensor-core kernel (bf16 Q and P: kTcRelL2).
    using resa::cuda::PrefillKernel;
    for (PrefillKernel kern : {PrefillKernel::kSimt, PrefillKernel::kTensorCore}) {
      if (kern == PrefillKernel::kTensorCore && !resa::cuda::prefill_tc_supported(d, group))
        continue;
      const double tol = kern == PrefillKernel::kSimt ? 2e-5 : kTcRelL2;
      for (bool split : {false, true}) {
        Dev<float> pws(size_t(1) << 20);
        CK(resa::cuda::attention_prefill(kv.dev, dqn.get(), doutn.get(), n, heads, scale, stn.get(),
                                         ctx, 132, split ? pws.get() : nullptr, size_t(1) << 20,
                                         nullptr, kern));
        CK(cudaDeviceSynchronize());
        const std::vector<float> got = doutn.take();
        const double e = rel_l2(got.data(), refn.data(), refn.size());
        QVERIFY2(e < tol, qPrintable(QString("prefill (%1, split %2) error %3")
                                         .arg(kern == PrefillKernel::kSimt ? "simt" : "tc")
                                         .arg(split)
                                         .arg(e)));
        QVERIFY(doutn.guards_intact());
      }
    }
  }

  void prefill_tc_matches_cpu_data() {
    QTest::addColumn<int>("n");
    QTest::addColumn<int>("pos0");
    QTest::addColumn<int>("group");
    QTest::addColumn<int>("head_dim");
    for (int n : {1, 3, 17, 64, 130})
      for (int pos0 : {0, 5, 1000, 4093})
        for (int group : {1, 4, 6, 8})
          for (int hd : {64, 128})
            QTest::addRow("n%d_pos%d_gqa%d_hd%d", n, pos0, group, hd) << n << pos0 << group << hd;
  }
  // The tensor-core prefill against the CPU twin: n queries at pos0 .. pos0 + n - 1 over a
  // cache of pos0 + n positions whose tail (past the last position, as far as the capacity)
  // holds NaN, which a read past the last needed key would carry into the output. Each shape
  // without a split, with the split of a 132-SM GPU, and with the many splits of a 1024-SM one
  // (short, uneven and empty key ranges per split).
  void prefill_tc_matches_cpu() {
    QFETCH(int, n);
    QFETCH(int, pos0);
    QFETCH(int, group);
    QFETCH(int, head_dim);
    using resa::cuda::PrefillKernel;
    const int kvh = 2, heads = kvh * group, d = head_dim, ctx = pos0 + n;
    std::mt19937_64 rng(n * 7919 + pos0 * 31 + group * 7 + d);
    TwinKv kv(kvh, d, 16, ctx, rng);
    poison_tail(kv);
    const float scale = 1.0f / std::sqrt(float(d));
    std::vector<float> q = randn(size_t(n) * heads * d, rng), ref(q.size());
    resa::cpu::AttentionArgs a;
    a.q = q.data(), a.out = ref.data(), a.nq = n, a.pos0 = pos0, a.n_heads = heads;
    a.kv = kv.view, a.scale = scale;
    resa::cpu::attention(a);
    Dev<float> dq(q.size());
    dq.put(q);
    DevState st(pos0, n, ctx);
    const size_t ws_floats = resa::cuda::prefill_workspace_floats(n, heads, d, 128);
    Dev<float> ws(ws_floats);
    for (int sms : {0, 132, 1024}) {
      const int splits =
          sms ? resa::cuda::prefill_splits(n, heads, d, kvh, ctx, sms, PrefillKernel::kTensorCore)
              : 1;
      if (sms == 1024 && ctx >= 512)
        QVERIFY2(splits > 1, qPrintable(QString("expected a key split, got %1").arg(splits)));
      Dev<float> dout(q.size());  // starts as NaN: an unwritten element fails
      CK(resa::cuda::attention_prefill(kv.dev, dq.get(), dout.get(), n, heads, scale, st.get(), ctx,
                                       sms ? sms : 132, sms ? ws.get() : nullptr, ws_floats,
                                       nullptr, PrefillKernel::kTensorCore));
      CK(cudaDeviceSynchronize());
      const std::vector<float> got = dout.take();
      const double e = rel_l2(got.data(), ref.data(), ref.size());
      const double m = max_abs_rel(got.data(), ref.data(), ref.size());
      QVERIFY2(e < kTcRelL2 && m < kTcMaxAbs,
               qPrintable(QString("splits %1: rel_l2 %2, max-abs %3").arg(splits).arg(e).arg(m)));
      QVERIFY2(dout.guards_intact(), "tensor-core prefill wrote outside its output");
    }
  }

  // The two GPU kernels on a long cache (the 1.5B model's heads: 12 query / 2 KV, rectification
  // of 32 queries over 20,000 positions): tensor cores with and without the key split against
  // the f32 SIMT kernel with its split, within the bf16 tolerance.
  void prefill_tc_matches_simt_long_cache() {
    using resa::cuda::PrefillKernel;
    for (int d : {64, 128}) {
      const int kvh = 2, group = 6, heads = kvh * group, ctx = 20000, n = 32, pos0 = ctx - n;
      std::mt19937_64 rng(20000 + d);
      TwinKv kv(kvh, d, 16, ctx, rng);
      poison_tail(kv);
      const float scale = 1.0f / std::sqrt(float(d));
      const std::vector<float> q = randn(size_t(n) * heads * d, rng);
      Dev<float> dq(q.size());
      dq.put(q);
      DevState st(pos0, n, ctx);
      const size_t ws_floats = resa::cuda::prefill_workspace_floats(n, heads, d, 128);
      Dev<float> ws(ws_floats), dref(q.size());
      CK(resa::cuda::attention_prefill(kv.dev, dq.get(), dref.get(), n, heads, scale, st.get(), ctx,
                                       132, ws.get(), ws_floats, nullptr, PrefillKernel::kSimt));
      CK(cudaDeviceSynchronize());
      const std::vector<float> ref = dref.take();
      for (float x : ref) QVERIFY2(std::isfinite(x), "SIMT prefill gave a non-finite value");
      for (int sms : {0, 132}) {
        Dev<float> dout(q.size());
        CK(resa::cuda::attention_prefill(kv.dev, dq.get(), dout.get(), n, heads, scale, st.get(),
                                         ctx, sms ? sms : 132, sms ? ws.get() : nullptr, ws_floats,
                                         nullptr, PrefillKernel::kTensorCore));
        CK(cudaDeviceSynchronize());
        const std::vector<float> got = dout.take();
        const double e = rel_l2(got.data(), ref.data(), ref.size());
        const double m = max_abs_rel(got.data(), ref.data(), ref.size());
        QVERIFY2(e < kTcRelL2 && m < kTcMaxAbs,
                 qPrintable(QString("d %1 split %2: rel_l2 %3, max-abs %4")
                                .arg(d)
                                .arg(sms != 0)
                                .arg(e)
                                .arg(m)));
        QVERIFY(dout.guards_intact());
      }
    }
  }

  void selection_matches_cpu_data() {
    QTest::addColumn<int>("ctx");
    QTest::addColumn<int>("group");
    QTest::addColumn<int>("head_dim");
    QTest::addColumn<bool>("ties");
    for (int ctx : {1, 16, 17, 81, 257, 1000, 5000, 40000})
      for (int group : {1, 4, 8})
        for (int hd : {16, 64, 128})
          for (bool ties : {false, true})
            QTest::addRow("ctx%d_gqa%d_hd%d%s", ctx, group, hd, ties ? "_ties" : "")
                << ctx << group << hd << ties;
  }
  // Summaries (exact), scores (f32 rounding), and top-k (exact, ties to the lower index) with
  // the CPU's select_top_blocks run on the GPU's scores.
  void selection_matches_cpu() {
    QFETCH(int, ctx);
    QFETCH(int, group);
    QFETCH(int, head_dim);
    QFETCH(bool, ties);
    const int kvh = 2, heads = kvh * group, d = head_dim, bs = 16;
    std::mt19937_64 rng(ctx + group * 1000 + d);
    TwinKv kv(kvh, d, bs, ctx, rng);
    // Summaries written by the GPU equal the CPU's.
    const std::vector<uint16_t> summ = kv.summ->take();
    for (int h = 0; h < kvh; ++h)
      for (int b = 0; b < kv.nb; ++b)
        for (int x = 0; x < d; ++x) {
          const size_t o = (size_t(h) * kv.dev.cap_blocks + b) * 2 * d;
          QCOMPARE(resa::bf16_to_f32(summ[o + x]), kv.view.kmin(b, h)[x]);
          QCOMPARE(resa::bf16_to_f32(summ[o + d + x]), kv.view.kmax(b, h)[x]);
        }
    std::vector<float> q = randn(size_t(heads) * d, rng);
    const float scale = 1.0f / std::sqrt(float(d));
    Dev<float> dq(q.size()), dscores(size_t(kvh) * kv.dev.cap_blocks);
    dq.put(q);
    DevState st(ctx - 1, 1, ctx);
    CK(resa::cuda::block_scores(kv.dev, dq.get(), heads, scale, st.get(), dscores.get(), 132,
                                nullptr));
    std::vector<float> scores = dscores.take();
    QVERIFY(dscores.guards_intact());
    for (int h = 0; h < kvh; ++h) {
      std::vector<float> qsel(d, 0.f), ref(kv.nb);
      for (int j = 0; j < group; ++j)
        for (int x = 0; x < d; ++x) qsel[x] += q[size_t(h * group + j) * d + x];
      for (float& x : qsel) x *= scale / float(group);
      resa::cpu::block_scores(kv.view, h, kv.nb, qsel.data(), ref.data());
      const double e = rel_l2(scores.data() + size_t(h) * kv.dev.cap_blocks, ref.data(), kv.nb);
      QVERIFY2(e < 1e-5, qPrintable(QString("scores head %1: %2").arg(h).arg(e)));
    }
    if (ties) {  // many equal scores: the threshold's ties must go to the lower index
      for (int h = 0; h < kvh; ++h)
        for (int b = 0; b < kv.nb; ++b) scores[size_t(h) * kv.dev.cap_blocks + b] = float(b % 5);
      dscores.put(scores);
    }
    for (auto [ratio, min_blocks, local, sink] : {std::tuple{0.1, 16, 1, true},
                                                  {0.05, 3, 2, false},
                                                  { 0.3,
                                                    1,
                                                    1,
                                                    true }}) {
      resa::cuda::SelectParams sp{ratio, min_blocks, local, sink};
      Dev<int> dblocks(size_t(kvh) * kv.dev.cap_blocks), dcount(kvh);
      Dev<uint32_t> dhits(kv.dev.cap_blocks);
      cudaMemset(dhits.get(), 0, kv.dev.cap_blocks * 4);
      resa::cuda::SelectionDev sd{dscores.get(), dblocks.get(), dcount.get(), dhits.get()};
      CK(resa::cuda::top_blocks(kv.dev, sp, st.get(), sd, nullptr));
      const std::vector<int> blocks = dblocks.take(), count = dcount.take();
      const std::vector<uint32_t> hits = dhits.take();
      resa::ResaParams rp;
      rp.ratio = ratio, rp.min_blocks = min_blocks, rp.local = local, rp.sink = sink;
      const int budget = resa::resa_budget(kv.nb, rp);
      std::vector<uint32_t> ref_hits(kv.nb, 0);
      for (int h = 0; h < kvh; ++h) {
        std::vector<int> out(kv.nb), scratch(kv.nb);
        const int k =
            resa::cpu::select_top_blocks(scores.data() + size_t(h) * kv.dev.cap_blocks, kv.nb,
                                         budget, sink, local, out.data(), scratch.data());
        QCOMPARE(count[h], k);
        for (int i = 0; i < k; ++i) {
          QCOMPARE(blocks[size_t(h) * kv.dev.cap_blocks + i], out[i]);
          ++ref_hits[out[i]];
        }
      }
      for (int b = 0; b < kv.nb; ++b) QCOMPARE(hits[b], ref_hits[b]);
      QVERIFY(dblocks.guards_intact());
      if (ties) continue;  // select_blocks scores the summaries: the ties above are not theirs
      // select_blocks, fused (kAuto with a workspace) and not: the same scores, bit for bit, and
      // the CPU's selection of them.
      SelectWork work(kvh, kv.dev.cap_blocks);
      for (auto kernel : {resa::cuda::TopkKernel::kAuto, resa::cuda::TopkKernel::kFused,
                          resa::cuda::TopkKernel::kSorted, resa::cuda::TopkKernel::kRegisters}) {
        if (!resa::cuda::topk_kernel_applies(kv.dev, kernel, 132)) {
          QVERIFY2(kvh < 8, "a selection kernel refused for 8 KV heads");
          continue;
        }
        Dev<float> dsc(size_t(kvh) * kv.dev.cap_blocks);
        Dev<int> db(size_t(kvh) * kv.dev.cap_blocks), dc(kvh);
        resa::cuda::SelectionDev sel{dsc.get(), db.get(), dc.get(), nullptr, work.d.get()};
        CK(resa::cuda::select_blocks(kv.dev, dq.get(), heads, scale, sp, st.get(), sel, 132,
                                     nullptr, kernel));
        const std::vector<float> sc = dsc.take();
        const std::vector<int> b2 = db.take(), c2 = dc.take();
        for (int h = 0; h < kvh; ++h) {
          for (int b = 0; b < kv.nb; ++b) {
            const size_t o = size_t(h) * kv.dev.cap_blocks + b;
            QVERIFY2(std::memcmp(&sc[o], &scores[o], 4) == 0, "select_blocks' scores differ");
          }
          QCOMPARE(c2[h], count[h]);
          for (int i = 0; i < count[h]; ++i)
            QCOMPARE(b2[size_t(h) * kv.dev.cap_blocks + i],
                     blocks[size_t(h) * kv.dev.cap_blocks + i]);
        }
        QVERIFY(dsc.guards_intact() && db.guards_intact());
        QVERIFY2(work.clean(), "select_blocks left its workspace nonzero");
      }
    }
  }

  void topk_matches_cpu_data() {
    QTest::addColumn<int>("nb");
    QTest::addColumn<int>("kvh");
    QTest::addColumn<int>("cap_blocks");
    for (int nb : {1, 3, 9, 27, 81, 129, 257, 1023, 1024, 1025, 4097, 16384, 20000})
      for (int kvh : {1, 2, 8}) QTest::addRow("nb%d_kvh%d", nb, kvh) << nb << kvh << nb + 3;
    // The register kernel sizes itself by cap_blocks (rows of 1024 blocks): rows past nb, a
    // partial row, every row full, one block in the largest size, and a cache past its reach.
    for (auto [nb, kvh, cap] : {std::tuple{1, 1, 32768},
                                {3000, 3, 8192},
                                {5000, 2, 32768},
                                {16385, 1, 16385},
                                {32767, 1, 32768},
                                {32768, 2, 32768},
                                {40000, 8, 40003},
                                { 40000,
                                  1,
                                  40003 }})
      QTest::addRow("nb%d_kvh%d_cap%d", nb, kvh, cap) << nb << kvh << cap;
  }
  // Every top-k kernel (registers where the cache fits them, the loop, the fused one over many
  // CTAs, whose workspace is reused from call to call and must stay clean) against
  // select_top_blocks on the same scores, with random scores, mass ties, all scores equal, +0 /
  // -0 mixed (equal for the CPU's comparison), and near-ties of either sign that differ only in
  // the last mantissa bits (every radix pass); scores past nb that would win if read. Budgets
  // from ratio 0.1 to every block, exactly min_blocks, nb - 1, nothing forced, and nothing at
  // all. Identical ids and counts, hits counted, no write past the outputs.
  void topk_matches_cpu() {
    QFETCH(int, nb);
    QFETCH(int, kvh);
    QFETCH(int, cap_blocks);
    const int bs = 16, ctx = nb * bs - (nb % 3) * 5;  // partial last block on some rows
    std::mt19937_64 rng(nb * 31 + kvh);
    resa::cuda::KvLayerDev kv{nullptr, nullptr, nullptr, kvh, 16, bs, cap_blocks * bs, cap_blocks};
    DevState st(ctx - 1, 1, ctx);
    Dev<float> dscores(size_t(kvh) * cap_blocks);
    SelectWork work(kvh, cap_blocks);
    {
      resa::cuda::SelectionDev none{};
      if (cap_blocks > 32768)  // past the register kernel's reach: refused, nothing launched
        QCOMPARE(resa::cuda::top_blocks(kv, resa::cuda::SelectParams{}, st.get(), none, nullptr,
                                        resa::cuda::TopkKernel::kRegisters),
                 cudaErrorInvalidValue);
      // The fused kernels without their workspace: refused.
      for (auto kernel : {resa::cuda::TopkKernel::kFused, resa::cuda::TopkKernel::kSorted})
        QCOMPARE(
            resa::cuda::top_blocks(kv, resa::cuda::SelectParams{}, st.get(), none, nullptr, kernel),
            cudaErrorInvalidValue);
    }
    for (int mode = 0; mode < 5; ++mode) {
      std::vector<float> scores(size_t(kvh) * cap_blocks, 1e30f);
      std::normal_distribution<float> nd;
      for (int h = 0; h < kvh; ++h)
        for (int b = 0; b < nb; ++b) {
          float& x = scores[size_t(h) * cap_blocks + b];
          switch (mode) {
            case 0:
              x = nd(rng);
              break;
            case 1:
              x = float((b * 7 + h) % 5) - 2.f;
              break;
            case 2:
              x = 1.5f;
              break;
            case 3:
              x = (rng() % 3 == 0) ? 1.f : ((rng() & 1) ? 0.f : -0.f);
              break;
            default: {
              const uint32_t sign = uint32_t(rng() & 1u) << 31;
              const uint32_t u = (0x3f800000u + uint32_t(rng() % 8)) | sign;
              std::memcpy(&x, &u, 4);
            }
          }
        }
      dscores.put(scores);
      for (auto [ratio, min_blocks, local, sink] : {std::tuple{0.1, 16, 1, true},
                                                    {0.05, 3, 2, false},
                                                    {0.3, 1, 1, true},
                                                    {1.0, 16, 1, true},
                                                    {1e-6, 16, 1, true},
                                                    {0.1, 16, 0, false},
                                                    {0.0, 0, 0, false},
                                                    { 0.0,
                                                      nb - 1,
                                                      1,
                                                      true }}) {
        resa::ResaParams rp;
        rp.ratio = ratio, rp.min_blocks = min_blocks, rp.local = local, rp.sink = sink;
        const int budget = resa::resa_budget(nb, rp);
        std::vector<std::vector<int>> ref(kvh);
        std::vector<uint32_t> ref_hits(nb, 0);
        for (int h = 0; h < kvh; ++h) {
          std::vector<int> out(nb), scratch(nb);
          const int k =
              resa::cpu::select_top_blocks(scores.data() + size_t(h) * cap_blocks, nb, budget, sink,
                                           local, out.data(), scratch.data());
          ref[h].assign(out.begin(), out.begin() + k);
          for (int b : ref[h]) ++ref_hits[b];
        }
        resa::cuda::SelectParams sp{ratio, min_blocks, local, sink};
        for (auto kernel : {resa::cuda::TopkKernel::kRegisters, resa::cuda::TopkKernel::kLoop,
                            resa::cuda::TopkKernel::kFused, resa::cuda::TopkKernel::kSorted}) {
          const bool loop = kernel == resa::cuda::TopkKernel::kLoop;
          if (kernel == resa::cuda::TopkKernel::kRegisters && cap_blocks > 32768) continue;
          // The sorted-runs kernel applies where its runs fit in shared memory: always for the
          // 8 KV heads of the benchmarks; elsewhere it is refused.
          if (kernel == resa::cuda::TopkKernel::kSorted &&
              !resa::cuda::topk_kernel_applies(kv, kernel, 132)) {
            QVERIFY2(kvh < 8, "kSorted refused for 8 KV heads");
            resa::cuda::SelectionDev sd{dscores.get(), nullptr, nullptr, nullptr, work.d.get()};
            QCOMPARE(resa::cuda::top_blocks(kv, sp, st.get(), sd, nullptr, kernel),
                     cudaErrorInvalidValue);
            continue;
          }
          Dev<int> dblocks(size_t(kvh) * cap_blocks), dcount(kvh);
          Dev<uint32_t> dhits(cap_blocks);
          cudaMemset(dhits.get(), 0, cap_blocks * 4);
          resa::cuda::SelectionDev sd{dscores.get(), dblocks.get(), dcount.get(), dhits.get(),
                                      work.d.get()};
          CK(resa::cuda::top_blocks(kv, sp, st.get(), sd, nullptr, kernel));
          CK(cudaDeviceSynchronize());
          const std::vector<int> blocks = dblocks.take(), count = dcount.take();
          const std::vector<uint32_t> hits = dhits.take();
          const QString where = QString("%1 kernel, mode %2 ratio %3 min %4 local %5 sink %6")
                                    .arg(loop                                        ? "loop"
                                         : kernel == resa::cuda::TopkKernel::kFused  ? "fused"
                                         : kernel == resa::cuda::TopkKernel::kSorted ? "sorted"
                                                                                     : "registers")
                                    .arg(mode)
                                    .arg(ratio)
                                    .arg(min_blocks)
                                    .arg(local)
                                    .arg(sink);
          for (int h = 0; h < kvh; ++h) {
            QVERIFY2(count[h] == int(ref[h].size()), qPrintable(where + " count"));
            for (size_t i = 0; i < ref[h].size(); ++i)
              QVERIFY2(blocks[size_t(h) * cap_blocks + i] == ref[h][i], qPrintable(where + " ids"));
            for (size_t i = ref[h].size(); i < size_t(cap_blocks); ++i)  // untouched past k
              QVERIFY2(blocks[size_t(h) * cap_blocks + i] == int(kSentinel),
                       qPrintable(where + " write past the count"));
          }
          for (int b = 0; b < cap_blocks; ++b)
            QVERIFY2(hits[b] == (b < nb ? ref_hits[b] : 0u), qPrintable(where + " hits"));
          QVERIFY2(dblocks.guards_intact(), qPrintable(where + " guards"));
          QVERIFY2(dhits.guards_intact(), qPrintable(where + " hit guards"));
          QVERIFY2(work.clean(), qPrintable(where + " workspace left nonzero"));
        }
      }
    }
  }

  // kv_write stores the pass's K/V and keeps the touched blocks' summaries exact, also for a
  // rewrite inside the cache (rectification) and a partial last block.
  void kv_write_updates_touched_summaries() {
    std::mt19937_64 rng(11);
    const int kvh = 2, d = 64, bs = 16, ctx = 70;
    TwinKv kv(kvh, d, bs, ctx, rng);
    const int pos0 = 29, n = 41;  // rewrites 29..69: blocks 1..4, the last one partial
    std::vector<float> k = bf16_round(randn(size_t(n) * kvh * d, rng));
    std::vector<float> v = bf16_round(randn(size_t(n) * kvh * d, rng));
    Dev<float> dk(k.size()), dv(v.size());
    dk.put(k);
    dv.put(v);
    DevState st(pos0, n, ctx);
    CK(resa::cuda::kv_write(kv.dev, dk.get(), dv.get(), n, st.get(), nullptr));
    for (int i = 0; i < n; ++i)
      for (int h = 0; h < kvh; ++h)
        for (int x = 0; x < d; ++x) {
          const int p = pos0 + i;
          kv.view.k(p / bs, h)[(p % bs) * d + x] = k[(size_t(i) * kvh + h) * d + x];
          kv.view.v(p / bs, h)[(p % bs) * d + x] = v[(size_t(i) * kvh + h) * d + x];
        }
    for (int b = 0; b < kv.nb; ++b)
      resa::cpu::block_summary_recompute(kv.view, b, std::min(bs, ctx - b * bs));
    const std::vector<uint16_t> kd = kv.k->take(), summ = kv.summ->take();
    for (int h = 0; h < kvh; ++h) {
      for (int p = 0; p < ctx; ++p)
        for (int x = 0; x < d; ++x)
          QCOMPARE(resa::bf16_to_f32(kd[(size_t(h) * kv.cap + p) * d + x]),
                   kv.view.k(p / bs, h)[(p % bs) * d + x]);
      for (int b = 0; b < kv.nb; ++b)
        for (int x = 0; x < d; ++x) {
          const size_t o = (size_t(h) * kv.dev.cap_blocks + b) * 2 * d;
          QCOMPARE(resa::bf16_to_f32(summ[o + x]), kv.view.kmin(b, h)[x]);
          QCOMPARE(resa::bf16_to_f32(summ[o + d + x]), kv.view.kmax(b, h)[x]);
        }
    }
    QVERIFY(kv.k->guards_intact());
    QVERIFY(kv.summ->guards_intact());

    // One token (a decode step: the fused write + summary kernel): appended at 70 (block 4 grows
    // to 7 positions), then position 40 rewritten inside a full block.
    for (const auto& [pos, ctx_end] : {std::pair{70, 71}, { 40, 71 }}) {
      const std::vector<float> k1 = bf16_round(randn(size_t(kvh) * d, rng, 3.f));
      const std::vector<float> v1 = bf16_round(randn(size_t(kvh) * d, rng));
      Dev<float> dk1(k1.size()), dv1(v1.size());
      dk1.put(k1);
      dv1.put(v1);
      DevState st1(pos, 1, ctx_end);
      CK(resa::cuda::kv_write(kv.dev, dk1.get(), dv1.get(), 1, st1.get(), nullptr));
      for (int h = 0; h < kvh; ++h)
        for (int x = 0; x < d; ++x) {
          kv.view.k(pos / bs, h)[(pos % bs) * d + x] = k1[size_t(h) * d + x];
          kv.view.v(pos / bs, h)[(pos % bs) * d + x] = v1[size_t(h) * d + x];
        }
      const int b = pos / bs;
      resa::cpu::block_summary_recompute(kv.view, b, std::min(bs, ctx_end - b * bs));
      const std::vector<uint16_t> k2 = kv.k->take(), v2 = kv.v->take(), s2 = kv.summ->take();
      for (int h = 0; h < kvh; ++h)
        for (int x = 0; x < d; ++x) {
          const size_t at = (size_t(h) * kv.cap + pos) * d + x;
          QCOMPARE(resa::bf16_to_f32(k2[at]), k1[size_t(h) * d + x]);
          QCOMPARE(resa::bf16_to_f32(v2[at]), v1[size_t(h) * d + x]);
          const size_t o = (size_t(h) * kv.dev.cap_blocks + b) * 2 * d;
          QCOMPARE(resa::bf16_to_f32(s2[o + x]), kv.view.kmin(b, h)[x]);
          QCOMPARE(resa::bf16_to_f32(s2[o + d + x]), kv.view.kmax(b, h)[x]);
        }
      QVERIFY(kv.k->guards_intact() && kv.v->guards_intact() && kv.summ->guards_intact());
    }
  }

  // A decode step's rope of q and k, K/V write and block summary in one launch: the same as
  // rope_qk then kv_write (the CPU's rope, cache and summary), for GQA groups 1 and 4, a block
  // that grows and a position rewritten inside a full block.
  void rope_kv_write_matches_rope_then_kv_write() {
    for (auto [kvh, group, d] : {std::tuple{2, 4, 64}, {3, 1, 128}, { 8, 4, 128 }}) {
      std::mt19937_64 rng(kvh * 100 + group * 10 + d);
      const int bs = 16, ctx = 70, heads = kvh * group;
      TwinKv kv(kvh, d, bs, ctx, rng);
      std::vector<float> inv(d / 2);
      for (int i = 0; i < d / 2; ++i) inv[i] = 1.0f / std::pow(500000.f, float(2 * i) / d);
      Dev<float> dinv(inv.size());
      dinv.put(inv);
      for (const auto& [pos, ctx_end] : {std::pair{70, 71}, { 40, 71 }}) {
        std::vector<float> q = randn(size_t(heads) * d, rng), k = randn(size_t(kvh) * d, rng, 3.f);
        const std::vector<float> v = bf16_round(randn(size_t(kvh) * d, rng));
        Dev<float> dq(q.size()), dk(k.size()), dv(v.size());
        dq.put(q), dk.put(k), dv.put(v);
        DevState st(pos, 1, ctx_end);
        CK(resa::cuda::rope_kv_write_one(kv.dev, dq.get(), heads, dk.get(), dv.get(), st.get(),
                                         dinv.get(), nullptr));
        resa::cpu::rope(q.data(), 1, heads, d, &pos, inv.data());
        resa::cpu::rope(k.data(), 1, kvh, d, &pos, inv.data());
        const int b = pos / bs;
        const std::vector<float> gq = dq.take(), gk = dk.take();
        const double eq = rel_l2(gq.data(), q.data(), q.size());
        const double ek = rel_l2(gk.data(), k.data(), k.size());
        QVERIFY2(eq < 1e-5 && ek < 1e-5, qPrintable(QString("kvh %1 d %2 pos %3: q %4, k %5")
                                                        .arg(kvh)
                                                        .arg(d)
                                                        .arg(pos)
                                                        .arg(eq)
                                                        .arg(ek)));
        // The cache holds the kernel's own roped k, rounded: compare it with the kernel's k (the
        // CPU's rope may differ in the last bit) and the summary with the CPU's from that cache.
        const std::vector<uint16_t> k2 = kv.k->take(), v2 = kv.v->take(), s2 = kv.summ->take();
        for (int h = 0; h < kvh; ++h)
          for (int x = 0; x < d; ++x) {
            const size_t at = (size_t(h) * kv.cap + pos) * d + x;
            QCOMPARE(k2[at], resa::f32_to_bf16(gk[size_t(h) * d + x]));
            QCOMPARE(resa::bf16_to_f32(v2[at]), v[size_t(h) * d + x]);
            kv.view.k(pos / bs, h)[(pos % bs) * d + x] = resa::bf16_to_f32(k2[at]);
          }
        resa::cpu::block_summary_recompute(kv.view, b, std::min(bs, ctx_end - b * bs));
        for (int h = 0; h < kvh; ++h)
          for (int x = 0; x < d; ++x) {
            const size_t o = (size_t(h) * kv.dev.cap_blocks + b) * 2 * d;
            QCOMPARE(resa::bf16_to_f32(s2[o + x]), kv.view.kmin(b, h)[x]);
            QCOMPARE(resa::bf16_to_f32(s2[o + d + x]), kv.view.kmax(b, h)[x]);
          }
        QVERIFY(dq.guards_intact() && dk.guards_intact());
        QVERIFY(kv.k->guards_intact() && kv.v->guards_intact() && kv.summ->guards_intact());
      }
    }
  }
#else
  void cuda_not_built() { QSKIP("this build has no CUDA backend (RESA_HAVE_CUDA is off)"); }
#endif
};

QTEST_APPLESS_MAIN(TestGpuKernels)
#include "test_gpu_kernels.moc"
