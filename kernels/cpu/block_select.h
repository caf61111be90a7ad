// ReSA block selection (RESA.md steps 2-6): key min/max summaries per block, Quest-style upper
// bound scores, and top-k with forced blocks.
#pragma once

#include "kernels/cpu/attention.h"

namespace resa::cpu {

// Recomputes the summaries of block `b` (all KV heads) from its first `tokens` keys.
void block_summary_recompute(const KvLayerView& kv, int b, int tokens);

// scores[b] = sum_d max(q_d * kmax_d, q_d * kmin_d) for b < num_blocks (RESA.md step 4).
// q: [head_dim], the selection query of KV head `h` (group mean, already scaled).
void block_scores(const KvLayerView& kv, int h, int num_blocks, const float* q, float* scores);

// Picks `budget` blocks of the highest score; the first block (when `sink`) and the last
// `local` blocks are always picked and count inside the budget (RESA.md step 5). Ties go to
// the lower index. Writes the picked block ids ascending to `out`, returns how many.
// `scratch` holds num_blocks ints.
int select_top_blocks(const float* scores, int num_blocks, int budget, bool sink, int local,
                      int* out, int* scratch);

}  // namespace resa::cpu
