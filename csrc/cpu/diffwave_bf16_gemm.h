// The two bfloat16 GEMM policies of the CPU DiffWave stack (diffwave_bf16.cpp).
//
// A policy multiplies a row block of R output rows (R/2 gate or residual channels and their R/2 filter or skip
// partners) by channel-pair inputs for a block of 48 samples: Dp with AVX512-BF16's vdpbf16ps in registers, Amx with
// the tile unit. Each packs its weights in the order its inner loop reads them. Only for translation units that
// define FASTSEP_HAVE_BF16_KERNEL (GCC on x86-64) after including <immintrin.h>.
#pragma once
#include <cstdint>

#include "cpu/bf16.h"
#include "cpu/diffwave_blocks.h"

namespace fastsep {
namespace {

constexpr int kVecs = 3;  // vectors (tiles) of 16 samples per block
constexpr int kBlock = 16 * kVecs;

#ifdef FASTSEP_HAVE_BF16_KERNEL
// One target for both GEMMs: enabling AMX in the compiler emits no tile instruction unless the Amx intrinsics are
// used, so the vdpbf16ps instantiation still runs on CPUs without AMX.
#define FASTSEP_BF16_TARGET \
  __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))

// Input channels c and c + 1 of row `row` and tap j of w [2C][Cin][taps] as a bfloat16 pair, zero past the Cin real
// channels (padding).
inline uint32_t weight_pair(const float* w, int64_t row, int64_t c, int j, int64_t Cin, int taps) {
  auto at = [&](int64_t k) { return k < Cin ? w[(row * Cin + k) * taps + j] : 0.0f; };
  return bf16_pair(at(c), at(c + 1));
}

// vdpbf16ps: 8 rows (4 gate or residual channels and their 4 filter or skip partners) x 48 samples in registers.
// Weights [2C/8][NT][C/2][8] words (the 8 rows' pairs of one input pair contiguous).

struct Dp {
  static constexpr int kRows = 8;
  static int64_t padded(int64_t Cin) { return (Cin + 1) / 2 * 2; }  // whole channel pairs
  static int64_t weight_words(int64_t C, int64_t Cin, int taps) { return 2 * C * taps * (padded(Cin) / 2); }
  // w [2C][Cin][taps] -> [NT][Cin/2][8] words for row block ob.
  static void pack(const float* w, int64_t C, int64_t Cin, int taps, int64_t ob, uint32_t* dst) {
    const int64_t C2 = padded(Cin) / 2;
    for (int r = 0; r < kRows; ++r) {
      const int64_t row = dwblock::block_row(ob, r, kRows, C);
      for (int j = 0; j < taps; ++j)
        for (int64_t c2 = 0; c2 < C2; ++c2) dst[(j * C2 + c2) * kRows + r] = weight_pair(w, row, 2 * c2, j, Cin, taps);
    }
  }
  static void begin() {}
  static void end() {}
  // out[r][0:48] = sum over taps and channel pairs of the pair products.
  template <int NT>
  FASTSEP_BF16_TARGET static inline __attribute__((always_inline)) void gemm(const uint32_t* __restrict wp,
                                                                            const uint32_t* const* src,
                                                                            int64_t stride, int64_t C2,
                                                                            float* __restrict out) {
    __m512 acc[kRows][kVecs];
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 3
      for (int v = 0; v < kVecs; ++v) acc[r][v] = _mm512_setzero_ps();
    for (int j = 0; j < NT; ++j) {
      const uint32_t* base = src[j];
      const uint32_t* w = wp + j * C2 * kRows;
      for (int64_t c = 0; c < C2; ++c) {
        __m512i s[kVecs];
#pragma GCC unroll 3
        for (int v = 0; v < kVecs; ++v) s[v] = _mm512_loadu_si512(base + c * stride + v * 16);
#pragma GCC unroll 8
        for (int r = 0; r < kRows; ++r) {
          const __m512i b = _mm512_set1_epi32(static_cast<int>(w[c * kRows + r]));
#pragma GCC unroll 3
          for (int v = 0; v < kVecs; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], (__m512bh)s[v], (__m512bh)b);
        }
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 3
      for (int v = 0; v < kVecs; ++v) _mm512_storeu_ps(out + r * kBlock + v * 16, acc[r][v]);
  }
  // out = the NT-tap product plus a second, one-tap product (the conditioner from the mel pairs); tmp: R·48 floats.
  template <int NT>
  FASTSEP_BF16_TARGET static inline __attribute__((always_inline)) void gemm_plus(
      const uint32_t* wp, const uint32_t* const* src, int64_t stride, int64_t C2, const uint32_t* wq,
      const uint32_t* const* qsrc, int64_t qstride, int64_t Q2, float* out, float* tmp) {
    gemm<NT>(wp, src, stride, C2, out);
    gemm<1>(wq, qsrc, qstride, Q2, tmp);
#pragma omp simd
    for (int i = 0; i < kRows * kBlock; ++i) out[i] += tmp[i];
  }
};

// AMX: 16 rows (8 + 8 partners) x 48 samples in three accumulator tiles (tmm0-2), the weight tile in tmm3, the
// sample tiles in tmm4-6. Weights [2C/16][NT][C/32][16 rows][16 pairs] words: one 1 KiB A tile per tap and K chunk.
// Palette 1; colsb[0..7] = 64 (uint16 at bytes 16..31), rows[0..7] = 16 (bytes 48..55).
alignas(64) const unsigned char kTileConfig[64] = {
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,            //
    64, 0, 64, 0, 64, 0, 64, 0, 64, 0, 64, 0, 64, 0, 64, 0,    //
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,            //
    16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0};

struct Amx {
  static constexpr int kRows = 16;
  static int64_t padded(int64_t Cin) { return (Cin + 31) / 32 * 32; }  // whole K tiles of 16 pairs
  static int64_t weight_words(int64_t C, int64_t Cin, int taps) { return 2 * C * taps * (padded(Cin) / 2); }
  static void pack(const float* w, int64_t C, int64_t Cin, int taps, int64_t ob, uint32_t* dst) {
    const int64_t K = padded(Cin) / 32;
    for (int r = 0; r < kRows; ++r) {
      const int64_t row = dwblock::block_row(ob, r, kRows, C);
      for (int j = 0; j < taps; ++j)
        for (int64_t kc = 0; kc < K; ++kc)
          for (int k = 0; k < 16; ++k)
            dst[((j * K + kc) * kRows + r) * 16 + k] = weight_pair(w, row, kc * 32 + 2 * k, j, Cin, taps);
    }
  }
  // Every tile 16 rows x 64 bytes; a thread loads the configuration before its first tile instruction. A constant
  // in memory: GCC 12 drops stores into a local configuration as dead (it does not see ldtilecfg read them).
  FASTSEP_BF16_TARGET static void begin() { _tile_loadconfig(kTileConfig); }
  FASTSEP_BF16_TARGET static void end() { _tile_release(); }
  // tmm0-2 += the NT-tap product of C2 input pairs.
  template <int NT>
  FASTSEP_BF16_TARGET static inline __attribute__((always_inline)) void accumulate(const uint32_t* __restrict wp,
                                                                                  const uint32_t* const* src,
                                                                                  int64_t stride, int64_t C2) {
    const int64_t K = C2 / 16;
    const int64_t bytes = stride * int64_t(sizeof(uint32_t));
    for (int j = 0; j < NT; ++j)
      for (int64_t kc = 0; kc < K; ++kc) {
        const uint32_t* b = src[j] + kc * 16 * stride;
        _tile_loadd(3, wp + (j * K + kc) * kRows * 16, 64);
        _tile_loadd(4, b, bytes);
        _tile_loadd(5, b + 16, bytes);
        _tile_loadd(6, b + 32, bytes);
        _tile_dpbf16ps(0, 3, 4);
        _tile_dpbf16ps(1, 3, 5);
        _tile_dpbf16ps(2, 3, 6);
      }
  }
  FASTSEP_BF16_TARGET static inline __attribute__((always_inline)) void zero() {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
  }
  FASTSEP_BF16_TARGET static inline __attribute__((always_inline)) void store(float* out) {
    _tile_stored(0, out, kBlock * sizeof(float));
    _tile_stored(1, out + 16, kBlock * sizeof(float));
    _tile_stored(2, out + 32, kBlock * sizeof(float));
  }
  template <int NT>
  FASTSEP_BF16_TARGET static inline __attribute__((always_inline)) void gemm(const uint32_t* __restrict wp,
                                                                            const uint32_t* const* src,
                                                                            int64_t stride, int64_t C2,
                                                                            float* __restrict out) {
    zero();
    accumulate<NT>(wp, src, stride, C2);
    store(out);
  }
  // Both products summed in the accumulator tiles (tmp unused).
  template <int NT>
  FASTSEP_BF16_TARGET static inline __attribute__((always_inline)) void gemm_plus(
      const uint32_t* wp, const uint32_t* const* src, int64_t stride, int64_t C2, const uint32_t* wq,
      const uint32_t* const* qsrc, int64_t qstride, int64_t Q2, float* out, float*) {
    zero();
    accumulate<NT>(wp, src, stride, C2);
    accumulate<1>(wq, qsrc, qstride, Q2);
    store(out);
  }
};

#endif  // FASTSEP_HAVE_BF16_KERNEL

}  // namespace
}  // namespace fastsep
