// Matrix products of activations with weight matrices: y[n][m] = x[n][k] . W[m][k]^T (+ bias).
// Weights stay in their storage type (f32 or bf16) and are widened to f32 in registers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace resa::cpu {

// x: [n][k] f32, w: [m][k] f32, bias: [m] or null, y: [n][m] f32.
void matmul_f32(const float* x, int n, int k, const float* w, int m, const float* bias, float* y);
// x: [n][k] f32, w: [m][k] bf16 bits, bias: [m] or null, y: [n][m] f32.
void matmul_bf16(const float* x, int n, int k, const uint16_t* w, int m, const float* bias,
                 float* y);

}  // namespace resa::cpu
