// Attention over the device KV cache (twins of kernels/cpu/attention.h and block_select.h).
//
// One layer's cache, per KV head, is contiguous over positions:
//   K, V:      [kv_heads][capacity][head_dim] bf16
//   summaries: [kv_heads][capacity_blocks][2][head_dim] bf16, key min then max (RESA.md step 2;
//              min / max of bf16 keys are bf16 values, so they are exact).
// Kernels take head_dim 16, 32, 64 or 128 and GQA groups 1..8 as template parameters; supported()
// answers with the same selector the launchers use.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/elementwise.h"

namespace resa::cuda {

struct KvLayerDev {
  uint16_t* k = nullptr;     // [kv_heads][capacity][head_dim]
  uint16_t* v = nullptr;     // [kv_heads][capacity][head_dim]
  uint16_t* summ = nullptr;  // [kv_heads][cap_blocks][2][head_dim]
  int kv_heads = 0, head_dim = 0, block_size = 0, capacity = 0, cap_blocks = 0;
};

// The selection of one decode step, per KV head (RESA.md steps 3-6).
struct SelectionDev {
  float* scores = nullptr;   // [kv_heads][cap_blocks] workspace
  int* blocks = nullptr;     // [kv_heads][cap_blocks] selected block ids, ascending
  int* count = nullptr;      // [kv_heads]
  uint32_t* hits = nullptr;  // [cap_blocks] or null: selections counted per block
  // select_work_words(kv_heads, cap_blocks) words, zero when first used, or null: the fused
  // selections' histograms, barriers and sorted runs (TopkKernel::kFused, kSorted); every call
  // leaves them ready for the next.
  uint32_t* work = nullptr;
};

// The fused selections' workspace: kSelectWorkPerHead words per KV head, of which the first
// kSelectWorkZeroed (histograms, a barrier's count) are zero between calls; then, per KV head,
// select_sorted_stride(cap_blocks) words for kSorted's sorted runs (any value between calls).
constexpr int kSelectWorkPerHead = 1284;
constexpr int kSelectWorkZeroed = 1025;
constexpr size_t select_sorted_stride(int cap_blocks) { return (size_t(cap_blocks) + 3) / 4 * 4; }
constexpr size_t select_work_words(int kv_heads, int cap_blocks) {
  return size_t(kv_heads) * (kSelectWorkPerHead + select_sorted_stride(cap_blocks));
}

struct SelectParams {
  double ratio = 0.1;
  int min_blocks = 16;
  int local = 1;
  bool sink = true;
};

bool attention_supported(int head_dim, int group);

// K/V of the pass (k, v: [n][kv_heads][head_dim] f32) stored at positions st->pos0 + i, then
// the summaries of every block they touch recomputed from positions < st->ctx_end.
cudaError_t kv_write(const KvLayerDev& kv, const float* k, const float* v, int n,
                     const PassState* st, cudaStream_t s);
// A decode step's (one position) rope_qk() of q [q_heads][head_dim] and k [kv_heads][head_dim], in
// place, then kv_write() of k and v: one launch. q_heads must be a multiple of kv_heads.
cudaError_t rope_kv_write_one(const KvLayerDev& kv, float* q, int q_heads, float* k, const float* v,
                              const PassState* st, const float* inv_freq, cudaStream_t s);
// Summaries of blocks [first, last] recomputed from positions < tokens.
cudaError_t summaries_recompute(const KvLayerDev& kv, int first, int last, int tokens,
                                cudaStream_t s);

// The kernel behind attention_decode.
//   kFast: tensor cores (mma.sync bf16 -> f32, sm_80+, kernels/cuda/decode.cu) for head_dim 32,
//          64 and 128 where the device has the shared memory (decode_supported). Q and the
//          softmax weights are each split into a bf16 value and a bf16 residual, so the result
//          matches the f32 kernel's precision. The split combine is fused into the kernel; it
//          uses at most min(splits, 128, one wave of its CTAs) CTAs per KV head, and on the device
//          no more than one per 256 keys read.
//   kSimt: the f32 CUDA-core kernel (every head_dim) and a separate combine launch.
//   kAuto: kFast where it applies, else kSimt (kFast measured faster on an H200, dense and
//          sparse; attention.cu has the figures); RESA_DECODE_KERNEL=simt or =fast in the
//          environment (read once per process) overrides kAuto (fast still falls back to simt
//          where it does not apply).
// kFast where it does not apply fails with cudaErrorInvalidValue.
enum class DecodeKernel { kAuto, kSimt, kFast };
// kFast's shared-memory ring of K/V copies (kernels/cuda/decode.cu).
//   kShallow: 3 slots of 16 keys per warp for head_dim 128, 2 CTAs per SM, a wave of CTAs per KV
//             head (half a wave for a sparse step).
//   kDeep:    twice the slots, 1 CTA per SM (where the device has the shared memory; else
//             kShallow). On an H200 the dense read of 32K keys x 8 KV heads took 38.0 us against
//             41.1 with kShallow, and 136.3 against 135.5 us at 128K
//             (docs/benchmarks/h200-s14.json); a sparse read at 256K 37.0 against 35.6
//             (h200-s14-ab.json, call1).
//   kAuto:    kShallow.
// RESA_DECODE_RING=shallow or =deep in the environment (read once per process) overrides every
// choice.
enum class DecodeRing { kAuto, kShallow, kDeep };
// The ring for a decode step over a context of ctx keys: kDeep for a dense step up to 65,536 keys,
// else kShallow. The choice is the host's (a recorded step keys on it).
DecodeRing decode_ring_for(int ctx, bool sparse);
// Whether attention_decode takes the shape with this kernel (kAuto: with either).
bool decode_supported(int head_dim, int group, DecodeKernel kernel = DecodeKernel::kAuto);

// Splits of the split-KV decode for a cache of this many KV heads, and the workspace they need:
//   splits * n_heads * (head_dim + 1) floats (partial outputs, then their log2-sum-exp), then
//   n_heads 32-bit counters (kFast's fused combine, one per KV head, zero between calls).
int decode_splits(int kv_heads, int sm_count);
size_t decode_workspace_floats(int n_heads, int head_dim, int splits);
// Zeroes the counters of a decode workspace (stream-ordered). Call it once after allocating the
// workspace, and again whenever the same memory is reused with another (n_heads, head_dim,
// splits); every kFast call leaves them zero again.
cudaError_t decode_workspace_init(float* workspace, int n_heads, int head_dim, int splits,
                                  cudaStream_t s);

// Decode (one query at position st->pos0): q, out [n_heads][head_dim] f32. Dense over positions
// <= pos0, or over the selected blocks when sel is not null. workspace: decode_workspace_floats
// for `splits`, initialised by decode_workspace_init (may be null when splits == 1). Dense with
// kFast: K/V before pos0 must not be written by the kernel launched just before (with
// programmatic dependent launch its first copies go out before it waits for that kernel).
cudaError_t attention_decode(const KvLayerDev& kv, const float* q, float* out, int n_heads,
                             float scale, const PassState* st, const SelectionDev* sel, int splits,
                             float* workspace, cudaStream_t s,
                             DecodeKernel kernel = DecodeKernel::kAuto,
                             DecodeRing ring = DecodeRing::kAuto);
// The kernel behind attention_prefill.
//   kTensorCore: FlashAttention-2 on the tensor cores (mma.sync bf16 -> f32, sm_80+) for
//                head_dim 64 and 128 (prefill_tc_supported). Q is rounded to bf16 after the
//                softmax scale, the softmax weights P to bf16 before P V; f32 everywhere else.
//   kSimt:       the f32 CUDA-core kernel, every head_dim (the reference).
//   kAuto:       kTensorCore where it applies, else kSimt; RESA_PREFILL_KERNEL=simt in the
//                environment (read once per process) forces kSimt.
// kTensorCore where it does not apply fails with cudaErrorInvalidValue.
enum class PrefillKernel { kAuto, kTensorCore, kSimt };
bool prefill_tc_supported(int head_dim, int group);

// Key splits (1: none) attention_prefill chooses for n queries over a cache of ctx positions
// before the workspace cap, and the workspace floats that many splits need:
//   splits * n * n_heads * (head_dim + 1)  (partial outputs, then their log2-sum-exp).
int prefill_splits(int n, int n_heads, int head_dim, int kv_heads, int ctx, int sm_count,
                   PrefillKernel kernel = PrefillKernel::kAuto);
size_t prefill_workspace_floats(int n, int n_heads, int head_dim, int splits);

// Causal attention of n queries at positions st->pos0 + i over the cache (prefill chunks,
// rectification). q, out: [n][n_heads][head_dim] f32. ctx: the cache length after the pass
// (sizes the key split); workspace (may be null: no split) holds the split partials, and the
// split count is capped to what workspace_floats holds.
cudaError_t attention_prefill(const KvLayerDev& kv, const float* q, float* out, int n, int n_heads,
                              float scale, const PassState* st, int ctx, int sm_count,
                              float* workspace, size_t workspace_floats, cudaStream_t s,
                              PrefillKernel kernel = PrefillKernel::kAuto);

// The kernel behind top_blocks and select_blocks (all give identical selections):
//   kFused:     one cooperative grid of many CTAs per KV head (all resident at once), each
//               owning a contiguous share of the blocks: it scores them (in select_blocks;
//               top_blocks reads the given scores) and runs the radix select and the ordered
//               compaction of kRegisters over its share, each pass's counts summed over the
//               head's CTAs (sel.work) behind a barrier of those CTAs. For caches of fewer than
//               65536 blocks per head where the device has the SMs (a CTA holds at most 4096
//               blocks); needs sel.work.
//   kSorted:    the same grid and shares as kFused, one barrier in all: each CTA sorts its
//               share's keys (bitonic) and publishes the sorted run (sel.work); after the head's
//               barrier every CTA reads all the head's runs into shared memory, finds the k-th
//               largest key with binary searches in them (8 bits per round) and writes its own
//               picks at their final slots. Where kFused applies and the runs fit in shared
//               memory. Asked for only: on an H200 it lost to kFused at 16,384 blocks per head
//               (41.4 against 37.1 us) and to kRegisters at 4,096 and fewer
//               (docs/benchmarks/h200-s12-ab.json).
//   kRegisters: one CTA per KV head with the scores in registers (a radix select, then an ordered
//               compaction), same reach; select_blocks runs the scores kernel before it.
//   kLoop:      the CTA re-reads the scores from memory on every radix pass (the reference).
//   kAuto:      select_blocks: kFused where it applies, else kRegisters where it applies, else
//               kLoop; top_blocks: kRegisters, else kLoop. RESA_TOPK_KERNEL=registers or =loop in
//               the environment (read once per process) forces that kernel where it applies.
// A kernel asked for where it does not apply fails with cudaErrorInvalidValue.
enum class TopkKernel { kAuto, kRegisters, kLoop, kFused, kSorted };

// Whether select_blocks / top_blocks take the kernel for this cache (a workspace given).
bool topk_kernel_applies(const KvLayerDev& kv, TopkKernel kernel, int sm_count);

// Block scores of the group-mean queries, then the top blocks per KV head (sink and local
// forced, ties to the lower index), for a decode step at st->pos0. q: [n_heads][head_dim].
cudaError_t select_blocks(const KvLayerDev& kv, const float* q, int n_heads, float scale,
                          const SelectParams& p, const PassState* st, const SelectionDev& sel,
                          int sm_count, cudaStream_t s, TopkKernel kernel = TopkKernel::kAuto);
// Only the scores (for --op timing and the twin test): scores[h][b] for b < ceil(ctx/B).
cudaError_t block_scores(const KvLayerDev& kv, const float* q, int n_heads, float scale,
                         const PassState* st, float* scores, int sm_count, cudaStream_t s);
// Only the top-k over given scores [kv_heads][cap_blocks].
cudaError_t top_blocks(const KvLayerDev& kv, const SelectParams& p, const PassState* st,
                       const SelectionDev& sel, cudaStream_t s,
                       TopkKernel kernel = TopkKernel::kAuto);

// Benchmarks: positions [0, tokens) of the layer get pseudo-random K/V and exact summaries.
cudaError_t kv_fill_random(const KvLayerDev& kv, int tokens, uint64_t seed, cudaStream_t s);

}  // namespace resa::cuda
