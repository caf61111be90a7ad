#include "engine/dtype.h"

namespace resa {

std::string_view dtype_name(DType t) {
  // The spelling of safetensors headers, so messages match what the user sees in the file.
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
  }
  return "?";
}

// IEEE 754 binary16 with round to nearest, ties to even (what torch's .half() and the F16C
// instruction vcvtps2ph do), so converted checkpoints compare bit-exactly with PyTorch.
uint16_t f32_to_f16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;

  if (a > 0x7f800000u) {
    // NaN: keep the top mantissa bits (the payload torch keeps) and force it quiet.
    return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  }
  if (a >= 0x38800000u) {
    // Normal in f16 (|f| >= 2^-14) or too large. Adding the rounding bias to the whole word lets
    // a mantissa carry ripple into the exponent, and an exponent overflow lands on infinity.
    const uint32_t rounded = a + 0x0fffu + ((a >> 13) & 1u);
    const uint32_t h = (rounded - (112u << 23)) >> 13;
    return uint16_t(sign | (h >= 0x7c00u ? 0x7c00u : h));
  }
  // Subnormal in f16 (or zero): the result counts units of 2^-24.
  const int e = int(a >> 23);
  if (e < 102) return sign;  // below half of the smallest subnormal: rounds to zero
  const uint32_t m = (a & 0x7fffffu) | 0x800000u;  // value = m * 2^(e - 150)
  const int shift = 126 - e;                       // value / 2^-24 = m >> shift, in [14, 24]
  uint32_t r = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (r & 1u))) ++r;  // may become 0x400, the smallest normal
  return uint16_t(sign | r);
}

}  // namespace resa
