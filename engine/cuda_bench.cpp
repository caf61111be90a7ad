#include "engine/cuda_bench.h"

#include "engine/error.h"

#if defined(RESA_HAVE_CUDA)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/gemv.h"

namespace resa {
namespace {

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(ErrorKind::kDevice,
                std::string("resa-bench op: ") + what + ": " + cudaGetErrorString(e));
}

struct DevMem {
  void* p = nullptr;
  explicit DevMem(size_t bytes) { ck(cudaMalloc(&p, std::max<size_t>(bytes, 16)), "cudaMalloc"); }
  ~DevMem() { cudaFree(p); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// Median / p10 / p90 of `repeats` timed runs of f (each timed with device events) after warm-up.
OpTiming time_op(const std::function<void(cudaStream_t)>& f, int repeats, cudaStream_t s) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < 3; ++i) f(s);
  ck(cudaStreamSynchronize(s), "warm-up");
  std::vector<double> us;
  for (int i = 0; i < repeats; ++i) {
    cudaEventRecord(a, s);
    f(s);
    cudaEventRecord(b, s);
    ck(cudaEventSynchronize(b), "timed run");
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    us.push_back(ms * 1000.0);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(us.begin(), us.end());
  OpTiming t;
  t.us_median = us[us.size() / 2];
  t.us_p10 = us[us.size() / 10];
  t.us_p90 = us[std::min(us.size() - 1, us.size() * 9 / 10)];
  return t;
}

void fill_bf16(uint16_t* p, size_t n, uint64_t seed) {
  std::vector<uint16_t> h(std::min<size_t>(n, size_t(1) << 24));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 0.05f);
  for (auto& x : h) {
    const float f = nd(rng);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    x = uint16_t(u >> 16);
  }
  for (size_t off = 0; off < n; off += h.size())
    ck(cudaMemcpy(p + off, h.data(), std::min(h.size(), n - off) * 2, cudaMemcpyHostToDevice),
       "fill");
}

}  // namespace

double cuda_copy_bandwidth_gbs(size_t bytes, int repeats) {
  DevMem a(bytes), b(bytes);
  ck(cudaMemset(a.p, 1, bytes), "memset");
  cudaStream_t s;
  cudaStreamCreate(&s);
  const OpTiming t = time_op(
      [&](cudaStream_t st) { cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, st); },
      repeats, s);
  cudaStreamDestroy(s);
  return 2.0 * double(bytes) / (t.us_median * 1e3);
}

std::vector<OpTiming> cuda_op_bench(const std::string& op, const std::vector<int>& contexts,
                                    int heads, int kv_heads, int head_dim, int block_size,
                                    double ratio, int min_blocks, int repeats) {
  int dev = 0, count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
    throw Error(ErrorKind::kDevice, "resa-bench --op needs a CUDA device");
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, dev);
  const int sms = prop.multiProcessorCount;
  cudaStream_t s;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  std::vector<OpTiming> out;
  const bool all = op == "all";

  if (all || op == "copy") {
    for (size_t mib : {64, 1024}) {
      OpTiming t;
      t.op = "copy";
      t.shape = std::to_string(mib) + " MiB";
      t.gb_per_s = cuda_copy_bandwidth_gbs(mib << 20, repeats);
      t.bytes = 2.0 * double(mib << 20);
      t.us_median = t.bytes / t.gb_per_s / 1e3;
      out.push_back(t);
    }
  }
  if (all || op == "gemv") {
    // The matrices of a llama-3.1-8b decode step (q/k/v fused, gate/up fused).
    struct M {
      const char* name;
      int rows, k;
    };
    for (const M m : {M{"qkv", 6144, 4096}, M{"o", 4096, 4096}, M{"gate_up", 28672, 4096},
                      M{"down", 4096, 14336}, M{"lm_head", 128256, 4096}}) {
      // Rotate among copies so the stream does not come from L2.
      const size_t bytes = size_t(m.rows) * m.k * 2;
      const int copies = int(std::max<size_t>(1, (size_t(200) << 20) / bytes + 1));
      std::vector<std::unique_ptr<DevMem>> w;
      for (int c = 0; c < copies; ++c) {
        w.push_back(std::make_unique<DevMem>(bytes));
        fill_bf16(w.back()->as<uint16_t>(), size_t(m.rows) * m.k, c + 1);
      }
      DevMem x(size_t(m.k) * 4), y(size_t(m.rows) * 4);
      ck(cudaMemset(x.p, 0x3c, size_t(m.k) * 4), "memset");
      int it = 0;
      OpTiming t = time_op(
          [&](cudaStream_t st) {
            resa::cuda::GemvSegment seg{w[it++ % copies]->as<uint16_t>(), nullptr, y.as<float>(),
                                        m.rows};
            ck(resa::cuda::gemv_bf16(x.as<float>(), m.k, &seg, 1, st), "gemv");
          },
          repeats, s);
      t.op = "gemv";
      t.shape = std::string(m.name) + " " + std::to_string(m.rows) + "x" + std::to_string(m.k);
      t.bytes = double(bytes);
      t.gb_per_s = t.bytes / (t.us_median * 1e3);
      out.push_back(t);
    }
  }
  if (all || op == "attention" || op == "selection") {
    const int d = head_dim, group = heads / kv_heads;
    for (int ctx : contexts) {
      const int cap = ctx + 16, cap_blocks = (cap + block_size - 1) / block_size;
      const size_t kv_elems = size_t(kv_heads) * cap * d;
      DevMem k(kv_elems * 2), v(kv_elems * 2), summ(size_t(kv_heads) * cap_blocks * 2 * d * 2);
      resa::cuda::KvLayerDev L{
          k.as<uint16_t>(), v.as<uint16_t>(), summ.as<uint16_t>(), kv_heads, d, block_size, cap,
          cap_blocks};
      ck(resa::cuda::kv_fill_random(L, ctx, 42, s), "fill");
      DevMem q(size_t(heads) * d * 4), o(size_t(heads) * d * 4), st(sizeof(resa::cuda::PassState));
      {
        std::vector<float> hq(size_t(heads) * d);
        std::mt19937_64 rng(5);
        std::normal_distribution<float> nd;
        for (float& x : hq) x = nd(rng);
        ck(cudaMemcpy(q.p, hq.data(), hq.size() * 4, cudaMemcpyHostToDevice), "q");
        resa::cuda::PassState ps{ctx - 1, 1, ctx, 0};
        ck(cudaMemcpy(st.p, &ps, sizeof ps, cudaMemcpyHostToDevice), "state");
      }
      const auto* state = st.as<resa::cuda::PassState>();
      const int splits = resa::cuda::decode_splits(kv_heads, sms);
      DevMem ws(resa::cuda::decode_workspace_floats(heads, d, splits) * 4);
      DevMem sel_scores(size_t(kv_heads) * cap_blocks * 4),
          sel_blocks(size_t(kv_heads) * cap_blocks * 4), sel_count(size_t(kv_heads) * 4);
      resa::cuda::SelectionDev sel{sel_scores.as<float>(), sel_blocks.as<int>(),
                                   sel_count.as<int>(), nullptr};
      resa::cuda::SelectParams sp{ratio, min_blocks, 1, true};
      const float scale = 1.0f / std::sqrt(float(d));
      const std::string shape = "ctx=" + std::to_string(ctx) + " heads=" + std::to_string(heads) +
                                "/" + std::to_string(kv_heads) + " d=" + std::to_string(d) +
                                " s" + std::to_string(splits);
      const int nb = (ctx + block_size - 1) / block_size;
      const double kv_bytes = double(kv_heads) * ctx * d * 2 * 2;
      const double summ_bytes = double(kv_heads) * nb * 2 * d * 2;
      auto add = [&](OpTiming t, const char* name, double bytes) {
        t.op = name;
        t.shape = shape;
        t.bytes = bytes;
        t.gb_per_s = bytes / (t.us_median * 1e3);
        out.push_back(t);
      };
      (void)group;
      add(time_op(
              [&](cudaStream_t x) {
                ck(resa::cuda::attention_decode(L, q.as<float>(), o.as<float>(), heads, scale,
                                                state, nullptr, splits, ws.as<float>(), x),
                   "decode");
              },
              repeats, s),
          "attn_dense", kv_bytes);
      add(time_op(
              [&](cudaStream_t x) {
                ck(resa::cuda::block_scores(L, q.as<float>(), heads, scale, state, sel.scores, sms,
                                            x),
                   "scores");
              },
              repeats, s),
          "scores", summ_bytes);
      add(time_op([&](cudaStream_t x) { ck(resa::cuda::top_blocks(L, sp, state, sel, x), "topk"); },
                  repeats, s),
          "topk", double(kv_heads) * nb * 4);
      add(time_op(
              [&](cudaStream_t x) {
                ck(resa::cuda::select_blocks(L, q.as<float>(), heads, scale, sp, state, sel, sms,
                                             x),
                   "select");
              },
              repeats, s),
          "select", summ_bytes);
      const int budget =
          std::min(nb, std::max(int(std::ceil(nb * ratio - 1e-9)), std::min(nb, min_blocks)));
      const double sparse_kv = double(kv_heads) * budget * block_size * d * 2 * 2;
      add(time_op(
              [&](cudaStream_t x) {
                ck(resa::cuda::attention_decode(L, q.as<float>(), o.as<float>(), heads, scale,
                                                state, &sel, splits, ws.as<float>(), x),
                   "sparse");
              },
              repeats, s),
          "attn_sparse", sparse_kv);
      add(time_op(
              [&](cudaStream_t x) {
                ck(resa::cuda::select_blocks(L, q.as<float>(), heads, scale, sp, state, sel, sms,
                                             x),
                   "select");
                ck(resa::cuda::attention_decode(L, q.as<float>(), o.as<float>(), heads, scale,
                                                state, &sel, splits, ws.as<float>(), x),
                   "sparse");
              },
              repeats, s),
          "sparse_step", sparse_kv + summ_bytes);
    }
  }
  if (all || op == "prefill") {
    // attention_prefill alone, on both kernels, at the two passes it serves: (a) a prefill chunk
    // of 512 queries ending a 32K context, (b) a rectification of 32 queries ending a 256K one;
    // heads from --op-heads. FLOPs: Q K^T and P V, 4 * head_dim per visible (query head, key)
    // pair, query i seeing pos0 + i + 1 keys (causal). Bytes: K and V of the context read once.
    // OpTiming has no FLOP field: the shape carries the splits and the achieved TFLOP/s.
    const int d = head_dim;
    constexpr size_t kWsFloats = size_t(16) << 20;  // CudaBackend's prefill workspace (64 MiB)
    struct Pass {
      int n, ctx;
    };
    for (const Pass c : {Pass{512, 32768}, Pass{32, 262144}}) {
      const int cap = c.ctx + 16, cap_blocks = (cap + block_size - 1) / block_size;
      const size_t kv_elems = size_t(kv_heads) * cap * d;
      DevMem k(kv_elems * 2), v(kv_elems * 2), summ(size_t(kv_heads) * cap_blocks * 2 * d * 2);
      resa::cuda::KvLayerDev L{
          k.as<uint16_t>(), v.as<uint16_t>(), summ.as<uint16_t>(), kv_heads, d, block_size, cap,
          cap_blocks};
      ck(resa::cuda::kv_fill_random(L, c.ctx, 42, s), "fill");
      const size_t q_floats = size_t(c.n) * heads * d;
      DevMem q(q_floats * 4), o(q_floats * 4), ws(kWsFloats * 4),
          st(sizeof(resa::cuda::PassState));
      const int pos0 = c.ctx - c.n;
      {
        std::vector<float> hq(q_floats);
        std::mt19937_64 rng(7);
        std::normal_distribution<float> nd;
        for (float& x : hq) x = nd(rng);
        ck(cudaMemcpy(q.p, hq.data(), hq.size() * 4, cudaMemcpyHostToDevice), "q");
        resa::cuda::PassState ps{pos0, c.n, c.ctx, 0};
        ck(cudaMemcpy(st.p, &ps, sizeof ps, cudaMemcpyHostToDevice), "state");
      }
      const auto* state = st.as<resa::cuda::PassState>();
      const float scale = 1.0f / std::sqrt(float(d));
      const double pairs = double(heads) * (double(c.n) * (pos0 + 1) + double(c.n) * (c.n - 1) / 2);
      const double flops = 4.0 * d * pairs;
      const double kv_bytes = double(kv_heads) * c.ctx * d * 2 * 2;
      using resa::cuda::PrefillKernel;
      for (const PrefillKernel kern : {PrefillKernel::kTensorCore, PrefillKernel::kSimt}) {
        const bool tc = kern == PrefillKernel::kTensorCore;
        if (tc && !resa::cuda::prefill_tc_supported(d, heads / kv_heads)) continue;
        const size_t per_split = resa::cuda::prefill_workspace_floats(c.n, heads, d, 1);
        const int splits =
            std::max(1, int(std::min<size_t>(size_t(resa::cuda::prefill_splits(
                                                  c.n, heads, d, kv_heads, c.ctx, sms, kern)),
                                              kWsFloats / per_split)));
        OpTiming t = time_op(
            [&](cudaStream_t x) {
              ck(resa::cuda::attention_prefill(L, q.as<float>(), o.as<float>(), c.n, heads, scale,
                                               state, c.ctx, sms, ws.as<float>(), kWsFloats, x,
                                               kern),
                 "prefill");
            },
            repeats, s);
        char shape[128];
        std::snprintf(shape, sizeof shape, "n=%d ctx=%d %d/%d/%d s%d %.1fTF/s", c.n, c.ctx, heads,
                      kv_heads, d, splits, flops / (t.us_median * 1e6));
        t.op = tc ? "prefill_tc" : "prefill_simt";
        t.shape = shape;
        t.bytes = kv_bytes;
        t.gb_per_s = kv_bytes / (t.us_median * 1e3);
        out.push_back(t);
      }
    }
  }
  cudaStreamDestroy(s);
  if (out.empty())
    throw Error(ErrorKind::kInvalidArgument,
                "unknown --op '" + op + "' (copy, gemv, attention, prefill, all)");
  return out;
}

}  // namespace resa

#else

namespace resa {
double cuda_copy_bandwidth_gbs(size_t, int) { return 0; }
std::vector<OpTiming> cuda_op_bench(const std::string&, const std::vector<int>&, int, int, int, int,
                                    double, int, int) {
  throw Error(ErrorKind::kDevice, "resa-bench --op needs the CUDA build (RESA_HAVE_CUDA)");
}
}  // namespace resa

#endif
