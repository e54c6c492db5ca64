// The DiffWave gate of the bfloat16 CPU stack (diffwave_bf16.cpp), in AVX-512 intrinsics.
//
// Why a gate of its own: with AMX doing the products, the gate sigmoid(g)·tanh(f) is a third of a 32-channel stack's
// time (measured by replacing it with g·f: 85 -> 57 ms per step at 2 x 4 s, one thread), and most of that is the
// division and the int-shift exp of the portable fm::gate. Its output is rounded to bfloat16 for the next product, so
// float32's last bits are not needed: exp here is a degree-5 polynomial scaled by vscalefps (relative error ~3e-6),
// and the division is vrcp14ps with one Newton step (~1e-7), against bfloat16's 4e-3 rounding step. The float32
// stack keeps fm::gate.
#pragma once

#ifdef FASTSEP_HAVE_BF16_KERNEL
#include <immintrin.h>

#include <cstdint>

#include "cpu/diffwave_bf16_gemm.h"  // FASTSEP_BF16_TARGET

namespace fastsep {
namespace {

// e^x for |x| <= 88 (no clamp: the gate's arguments are clamped to [-40, 40] and [-30, 30]).
FASTSEP_BF16_TARGET inline __attribute__((always_inline)) __m512 exp_gate(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // x - n·ln 2, ln 2 in two parts
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(8.3333333e-3f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1666667e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666667e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// sigmoid(g)·tanh(f) = (1 - e^{-2f}) / ((1 + e^{-g})(1 + e^{-2f})), g clamped to [-40, 40] and f to [-15, 15] as in
// fm::gate (so the denominator stays finite).
FASTSEP_BF16_TARGET inline __attribute__((always_inline)) __m512 gate16(__m512 g, __m512 f) {
  g = _mm512_min_ps(_mm512_max_ps(g, _mm512_set1_ps(-40.0f)), _mm512_set1_ps(40.0f));
  f = _mm512_min_ps(_mm512_max_ps(f, _mm512_set1_ps(-15.0f)), _mm512_set1_ps(15.0f));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 eg = exp_gate(_mm512_sub_ps(_mm512_setzero_ps(), g));
  const __m512 ef = exp_gate(_mm512_mul_ps(f, _mm512_set1_ps(-2.0f)));
  const __m512 den = _mm512_mul_ps(_mm512_add_ps(one, eg), _mm512_add_ps(one, ef));
  __m512 inv = _mm512_rcp14_ps(den);
  inv = _mm512_mul_ps(inv, _mm512_fnmadd_ps(den, inv, _mm512_set1_ps(2.0f)));  // Newton: 14 -> ~28 bits
  return _mm512_mul_ps(_mm512_sub_ps(one, ef), inv);
}

// out[0:N] = gate(zg + bg + qg, zf + bf + qf) for the n valid samples, zero past them (qg, qf may be null; they are
// read only below n). N is a multiple of 16.
template <int N>
FASTSEP_BF16_TARGET inline __attribute__((always_inline)) void gate_rows_bf16(const float* zg, const float* zf,
                                                                             float bg, float bf, const float* qg,
                                                                             const float* qf, float* out, int64_t n) {
  static_assert(N % 16 == 0, "blocks of whole vectors");
  const __m512 vbg = _mm512_set1_ps(bg), vbf = _mm512_set1_ps(bf);
#pragma GCC unroll 4
  for (int v = 0; v < N / 16; ++v) {
    const int64_t left = n - 16 * v;
    const __mmask16 m = left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
    __m512 g = _mm512_add_ps(_mm512_loadu_ps(zg + 16 * v), vbg);
    __m512 f = _mm512_add_ps(_mm512_loadu_ps(zf + 16 * v), vbf);
    if (qg) {
      g = _mm512_add_ps(g, _mm512_maskz_loadu_ps(m, qg + 16 * v));
      f = _mm512_add_ps(f, _mm512_maskz_loadu_ps(m, qf + 16 * v));
    }
    _mm512_storeu_ps(out + 16 * v, _mm512_maskz_mov_ps(m, gate16(g, f)));
  }
}

}  // namespace
}  // namespace fastsep
#endif  // FASTSEP_HAVE_BF16_KERNEL
