// bfloat16 as raw bits, for the CPU kernels that store it themselves (the DiffWave stack's channel pairs, F's
// prelu_residual): conversions the compiler vectorises inside their loops.
#pragma once
#include <cstdint>
#include <cstring>

namespace fastsep {

// float -> bfloat16 bits, round to nearest even (inputs are finite).
inline uint32_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

// bfloat16 bits -> float32 (exact).
inline float bf16_float(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// Two floats as one 32-bit word of bfloat16 bits, lo in the low half: the operand layout of vdpbf16ps and AMX tiles.
inline uint32_t bf16_pair(float lo, float hi) { return bf16_bits(lo) | (bf16_bits(hi) << 16); }

// n bfloat16 values widened to float32.
inline void widen_bf16(const uint16_t* src, float* dst, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_float(src[i]);
}

}  // namespace fastsep
