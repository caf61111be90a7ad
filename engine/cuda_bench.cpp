#include "engine/cuda_bench.h"

#include "engine/error.h"

#if defined(RESA_HAVE_CUDA)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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

// Median / p10 / p90 of `repeats` timed runs of f after warm-up, timed with device events.
// batch > 0 (kernels of a decode step, microseconds each): `batch` calls of f are captured in one
// CUDA graph, as in a decode step, and each replay's time / batch is one sample, so the host's
// launch overhead stays out of the figure. batch == 0: f launched directly (long operations).
OpTiming time_op(const std::function<void(cudaStream_t)>& f, int repeats, cudaStream_t s,
                 int batch = 0) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaGraphExec_t exec = nullptr;
  if (batch > 0) {
    cudaGraph_t g = nullptr;
    ck(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "capture");
    for (int i = 0; i < batch; ++i) f(s);
    ck(cudaStreamEndCapture(s, &g), "capture");
    ck(cudaGraphInstantiate(&exec, g, 0), "graph instantiate");
    cudaGraphDestroy(g);
  }
  auto run = [&] {
    if (exec)
      ck(cudaGraphLaunch(exec, s), "graph launch");
    else
      f(s);
  };
  for (int i = 0; i < 3; ++i) run();
  ck(cudaStreamSynchronize(s), "warm-up");
  std::vector<double> us;
  for (int i = 0; i < repeats; ++i) {
    cudaEventRecord(a, s);
    run();
    cudaEventRecord(b, s);
    ck(cudaEventSynchronize(b), "timed run");
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    us.push_back(ms * 1000.0 / std::max(batch, 1));
  }
  if (exec) cudaGraphExecDestroy(exec);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(us.begin(), us.end());
  OpTiming t;
  t.us_median = us[us.size() / 2];
  t.us_p10 = us[us.size() / 10];
  t.us_p90 = us[std::min(us.size() - 1, us.size() * 9 / 10)];
  return t;
}

// Random bf16 values of N(0, 0.05): one host table of 2^24 made once, copied from an offset that
// depends on the seed (what the values are does not matter for timing; generating 15 GB of them
// took minutes).
void fill_bf16(uint16_t* p, size_t n, uint64_t seed) {
  static const std::vector<uint16_t> table = [] {
    std::vector<uint16_t> h(size_t(1) << 24);
    std::mt19937_64 rng(1);
    std::normal_distribution<float> nd(0.f, 0.05f);
    for (auto& x : h) {
      const float f = nd(rng);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      x = uint16_t(u >> 16);
    }
    return h;
  }();
  const size_t start = size_t(seed * 7919) % (table.size() / 2);
  const size_t span = table.size() - start;
  for (size_t off = 0; off < n; off += span)
    ck(cudaMemcpy(p + off, table.data() + start, std::min(span, n - off) * 2,
                  cudaMemcpyHostToDevice),
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
    // The GEMV launches of a llama-3.1-8b decode step, as CudaBackend issues them: q/k/v as one
    // launch of three segments, o and down with the residual add fused, gate/up with SiLU * up;
    // q/k/v, gate/up and lm_head with the RMSNorm before them fused.
    using resa::cuda::GemvOut;
    struct M {
      const char* name;
      int segs[3];
      int k;
      GemvOut mode;
      bool norm;
    };
    const M step[] = {{"norm+qkv", {4096, 1024, 1024}, 4096, GemvOut::kStore, true},
                      {"o+residual", {4096, 0, 0}, 4096, GemvOut::kAccumulate, false},
                      {"norm+gate_up+silu", {14336, 14336, 0}, 4096, GemvOut::kSiluMul, true},
                      {"down+residual", {4096, 0, 0}, 14336, GemvOut::kAccumulate, false},
                      {"norm+lm_head", {128256, 0, 0}, 4096, GemvOut::kStore, true}};
    auto rows_of = [](const M& m) { return m.segs[0] + m.segs[1] + m.segs[2]; };
    // RESA_STEP_FUSION=0: the norms are separate launches (not timed here), as in CudaBackend.
    const char* fusion = std::getenv("RESA_STEP_FUSION");
    const bool fuse_norm = !(fusion && std::strcmp(fusion, "0") == 0);
    // A set of weights: one matrix per segment, y buffers, x of k random values.
    struct Set {
      std::vector<std::unique_ptr<DevMem>> w;
      std::unique_ptr<DevMem> x, y, norm;
      int count = 0;
    };
    auto make_set = [&](const M& m, uint64_t seed) {
      Set st;
      for (int i = 0; i < 3 && m.segs[i] > 0; ++i, ++st.count) {
        st.w.push_back(std::make_unique<DevMem>(size_t(m.segs[i]) * m.k * 2));
        fill_bf16(st.w.back()->as<uint16_t>(), size_t(m.segs[i]) * m.k, seed * 7 + i);
      }
      st.x = std::make_unique<DevMem>(size_t(m.k) * 4);
      st.y = std::make_unique<DevMem>(size_t(rows_of(m)) * 4);
      fill_bf16(st.x->as<uint16_t>(), size_t(m.k) * 2, seed + 99);  // bf16 pairs read as f32
      st.norm = std::make_unique<DevMem>(size_t(m.k) * 4);
      fill_bf16(st.norm->as<uint16_t>(), size_t(m.k) * 2, seed + 98);
      ck(cudaMemset(st.y->p, 0, size_t(rows_of(m)) * 4), "memset");
      return st;
    };
    auto run_set = [&](const M& m, const Set& st, cudaStream_t x) {
      resa::cuda::GemvSegment seg[3];
      float* y = st.y->as<float>();
      for (int i = 0; i < st.count; ++i) {
        seg[i] = {st.w[i]->as<uint16_t>(), nullptr, y, m.segs[i]};
        y += m.mode == GemvOut::kSiluMul ? 0 : m.segs[i];
      }
      const resa::cuda::GemvNorm norm{m.norm && fuse_norm ? st.norm->as<float>() : nullptr, 1e-5f};
      ck(resa::cuda::gemv_bf16(st.x->as<float>(), m.k, seg, st.count, x, m.mode, norm), "gemv");
    };
    // Each launch alone, 20 to a graph, rotating among copies so the stream does not come from
    // L2.
    for (const M& m : step) {
      const size_t bytes = size_t(rows_of(m)) * m.k * 2;
      const int copies = int(std::max<size_t>(1, (size_t(256) << 20) / bytes + 1));
      std::vector<Set> sets;
      for (int c = 0; c < copies; ++c) sets.push_back(make_set(m, c + 1));
      int it = 0;
      OpTiming t =
          time_op([&](cudaStream_t x) { run_set(m, sets[it++ % copies], x); }, repeats, s, 20);
      t.op = "gemv";
      t.shape = std::string(m.name) + " " + std::to_string(rows_of(m)) + "x" + std::to_string(m.k);
      t.bytes = double(bytes);
      t.gb_per_s = t.bytes / (t.us_median * 1e3);
      out.push_back(t);
    }
    // The whole step's weight streaming: 32 layers of the four launches, then lm_head, in one
    // graph with distinct weights (15 GB), as a decode step reads them.
    {
      std::vector<std::pair<const M*, Set>> chain;
      for (int l = 0; l < 32; ++l)
        for (int i = 0; i < 4; ++i)
          chain.emplace_back(&step[i], make_set(step[i], 1000 + l * 4 + i));
      chain.emplace_back(&step[4], make_set(step[4], 5000));
      double bytes = 0;
      for (const auto& [m, st] : chain) bytes += double(rows_of(*m)) * m->k * 2;
      OpTiming t = time_op(
          [&](cudaStream_t x) {
            for (const auto& [m, st] : chain) run_set(*m, st, x);
          },
          std::min(repeats, 50), s, 1);
      t.op = "gemv_step";
      t.shape =
          "llama-3.1-8b: 32 x (norm+qkv, o+residual, norm+gate_up+silu, down+residual) + "
          "norm+lm_head";
      t.bytes = bytes;
      t.gb_per_s = t.bytes / (t.us_median * 1e3);
      out.push_back(t);
    }
  }
  if (all || op == "attention" || op == "selection") {
    using resa::cuda::DecodeKernel;
    using resa::cuda::DecodeRing;
    using resa::cuda::TopkKernel;
    const int d = head_dim;
    for (int ctx : contexts) {
      const int cap = ctx + 16, cap_blocks = (cap + block_size - 1) / block_size;
      const size_t kv_elems = size_t(kv_heads) * cap * d;
      const double kv_bytes = double(kv_heads) * ctx * d * 2 * 2;
      // Copies of the layer, rotated call by call, so that short contexts stream from memory
      // and not from L2 (the ops run back to back in a graph).
      const int copies = std::clamp(int(std::ceil(400e6 / kv_bytes)), 1, 8);
      std::vector<std::unique_ptr<DevMem>> mem;
      std::vector<resa::cuda::KvLayerDev> layers;
      for (int c = 0; c < copies; ++c) {
        mem.push_back(std::make_unique<DevMem>(kv_elems * 2));
        mem.push_back(std::make_unique<DevMem>(kv_elems * 2));
        mem.push_back(std::make_unique<DevMem>(size_t(kv_heads) * cap_blocks * 2 * d * 2));
        const size_t n = mem.size();
        layers.push_back(resa::cuda::KvLayerDev{
            mem[n - 3]->as<uint16_t>(), mem[n - 2]->as<uint16_t>(), mem[n - 1]->as<uint16_t>(),
            kv_heads, d, block_size, cap, cap_blocks});
        ck(resa::cuda::kv_fill_random(layers.back(), ctx, 42 + c, s), "fill");
      }
      int it = 0;
      auto layer = [&]() -> const resa::cuda::KvLayerDev& { return layers[it++ % copies]; };
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
      ck(resa::cuda::decode_workspace_init(ws.as<float>(), heads, d, splits, s), "ws init");
      DevMem sel_scores(size_t(kv_heads) * cap_blocks * 4),
          sel_blocks(size_t(kv_heads) * cap_blocks * 4), sel_count(size_t(kv_heads) * 4);
      const size_t work_bytes = resa::cuda::select_work_words(kv_heads, cap_blocks) * 4;
      DevMem sel_work(work_bytes);
      ck(cudaMemsetAsync(sel_work.p, 0, work_bytes, s), "select work");
      resa::cuda::SelectionDev sel{sel_scores.as<float>(), sel_blocks.as<int>(),
                                   sel_count.as<int>(), nullptr, sel_work.as<uint32_t>()};
      resa::cuda::SelectParams sp{ratio, min_blocks, 1, true};
      const float scale = 1.0f / std::sqrt(float(d));
      const std::string shape = "ctx=" + std::to_string(ctx) + " heads=" + std::to_string(heads) +
                                "/" + std::to_string(kv_heads) + " d=" + std::to_string(d) + " s" +
                                std::to_string(splits);
      const int nb = (ctx + block_size - 1) / block_size;
      const double summ_bytes = double(kv_heads) * nb * 2 * d * 2;
      const int budget =
          std::min(nb, std::max(int(std::ceil(nb * ratio - 1e-9)), std::min(nb, min_blocks)));
      const double sparse_kv = double(kv_heads) * budget * block_size * d * 2 * 2;
      auto add = [&](OpTiming t, const std::string& name, double bytes) {
        t.op = name;
        t.shape = shape;
        t.bytes = bytes;
        t.gb_per_s = bytes / (t.us_median * 1e3);
        out.push_back(t);
      };
      constexpr int kBatch = 10;
      auto timed = [&](const std::function<void(cudaStream_t)>& f) {
        return time_op(f, repeats, s, kBatch);
      };
      auto select = [&](const resa::cuda::KvLayerDev& L, cudaStream_t x, TopkKernel tk) {
        ck(resa::cuda::select_blocks(L, q.as<float>(), heads, scale, sp, state, sel, sms, x, tk),
           "select");
      };
      // The ring the engine takes for this context unless one is given.
      auto decode = [&](const resa::cuda::KvLayerDev& L, cudaStream_t x, bool sparse,
                        DecodeKernel dk, int n_splits = 0, DecodeRing ring = DecodeRing::kAuto) {
        if (ring == DecodeRing::kAuto) ring = resa::cuda::decode_ring_for(ctx, sparse);
        ck(resa::cuda::attention_decode(L, q.as<float>(), o.as<float>(), heads, scale, state,
                                        sparse ? &sel : nullptr, n_splits ? n_splits : splits,
                                        ws.as<float>(), x, dk, ring),
           "decode");
      };
      // Every decode kernel that takes the shape ("", the default one; "_simt", "_fast").
      struct Variant {
        const char* suffix;
        DecodeKernel kernel;
      };
      std::vector<Variant> variants = {{"", DecodeKernel::kAuto}};
      for (const Variant v :
           {Variant{"_simt", DecodeKernel::kSimt}, Variant{"_fast", DecodeKernel::kFast}})
        if (resa::cuda::decode_supported(d, heads / kv_heads, v.kernel)) variants.push_back(v);
      for (const Variant& v : variants)
        add(timed([&](cudaStream_t x) { decode(layer(), x, false, v.kernel); }),
            std::string("attn_dense") + v.suffix, kv_bytes);
      // The tensor-core kernel on each ring, dense and sparse (the default rows take the
      // engine's choice, decode_ring_for).
      if (resa::cuda::decode_supported(d, heads / kv_heads, DecodeKernel::kFast))
        for (const auto& [suffix, ring] :
             {std::pair{"_shallow", DecodeRing::kShallow}, std::pair{"_deep", DecodeRing::kDeep}})
          for (const bool sparse : {false, true})
            add(timed([&, ring = ring, sparse](cudaStream_t x) {
                  const resa::cuda::KvLayerDev& L = layer();
                  if (sparse) select(L, x, TopkKernel::kAuto);
                  decode(L, x, sparse, DecodeKernel::kFast, 0, ring);
                }),
                std::string(sparse ? "sparse_step" : "attn_dense") + suffix,
                sparse ? sparse_kv + summ_bytes : kv_bytes);
      add(timed([&](cudaStream_t x) {
            ck(resa::cuda::block_scores(layer(), q.as<float>(), heads, scale, state, sel.scores,
                                        sms, x),
               "scores");
          }),
          "scores", summ_bytes);
      for (const auto& [name, tk] :
           {std::pair{"topk", TopkKernel::kAuto}, std::pair{"topk_loop", TopkKernel::kLoop},
            std::pair{"topk_fused", TopkKernel::kFused},
            std::pair{"topk_sorted", TopkKernel::kSorted}})
        add(timed([&, tk = tk](cudaStream_t x) {
              ck(resa::cuda::top_blocks(layer(), sp, state, sel, x, tk), "topk");
            }),
            name, double(kv_heads) * nb * 4);
      for (const auto& [name, tk] :
           {std::pair{"select", TopkKernel::kAuto}, std::pair{"select_fused", TopkKernel::kFused},
            std::pair{"select_sorted", TopkKernel::kSorted},
            std::pair{"select_registers", TopkKernel::kRegisters}})
        add(timed([&, tk = tk](cudaStream_t x) { select(layer(), x, tk); }), name, summ_bytes);
      for (const Variant& v : variants) {
        add(timed([&](cudaStream_t x) { decode(layer(), x, true, v.kernel); }),
            std::string("attn_sparse") + v.suffix, sparse_kv);
        add(timed([&](cudaStream_t x) {
              const resa::cuda::KvLayerDev& L = layer();
              select(L, x, TopkKernel::kAuto);
              decode(L, x, true, v.kernel);
            }),
            std::string("sparse_step") + v.suffix, sparse_kv + summ_bytes);
        // Fewer splits for the sparse read (each split's CTA reads a tenth of a dense one's keys).
        // Each split count has its own counters in the workspace (decode_workspace_init).
        for (int div : {2, 4, 8}) {
          const int n = std::max(1, splits / div);
          ck(resa::cuda::decode_workspace_init(ws.as<float>(), heads, d, n, s), "ws init");
          add(timed([&, n](cudaStream_t x) { decode(layer(), x, true, v.kernel, n); }),
              std::string("attn_sparse") + v.suffix + "_splits" + std::to_string(n), sparse_kv);
        }
      }
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
      DevMem q(q_floats * 4), o(q_floats * 4), ws(kWsFloats * 4), st(sizeof(resa::cuda::PassState));
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
        const int splits = std::max(
            1, int(std::min<size_t>(
                   size_t(resa::cuda::prefill_splits(c.n, heads, d, kv_heads, c.ctx, sms, kern)),
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
