// Register-blocked inner kernels of the CPU DiffWave stack (torch-free).
//
// Why not ATen's convolutions: at inference a residual layer is two small GEMMs (2C x 3C and 2C x C against the time
// axis) with elementwise work between them. Run as separate ATen calls, every stage streams [B, 2C, T] tensors
// through memory and the GEMMs reach ~40% of the FMA peak on small channel counts. Here a block of V·W samples goes
// through the whole layer while it sits in L1: the dilated convolution reads its three taps straight from a
// zero-padded copy of the input (no im2col), the gate is applied to the accumulators' block, and the output
// projection, residual, skip and the next layer's step offset follow before the block leaves the cache.
//
// Rows are blocked R at a time: R/2 gate channels with their R/2 filter partners (so the gate's two halves meet in
// one block), or R/2 residual channels with their R/2 skip partners. Weights are repacked by the caller so that the
// R weights of one input channel are contiguous.
#pragma once
#include <cstdint>

#include "cpu/fast_math.h"

// The vector helpers below are always inlined into callers compiled for the matching ISA; GCC's note that passing
// such vectors between functions of different ISAs would change the ABI does not apply.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace fastsep {
namespace dwblock {

#if defined(__GNUC__)
#define FASTSEP_INLINE inline __attribute__((always_inline))
#else
#define FASTSEP_INLINE inline
#endif

// Row r of row block ob (R rows): gate (residual) channel ob·R/2 + r for r < R/2, else its filter (skip) partner
// C + ob·R/2 + (r - R/2). Every packing of the stack's weights orders its rows so.
FASTSEP_INLINE int64_t block_row(int64_t ob, int64_t r, int64_t R, int64_t C) {
  const int64_t H = R / 2;
  return r < H ? ob * H + r : C + ob * H + (r - H);
}

// W floats per vector (GCC vector extension, so one source serves SSE, AVX2 and AVX-512 builds of the caller).
template <int W>
struct Vec {
  typedef float type __attribute__((vector_size(W * sizeof(float))));
};

template <int W>
FASTSEP_INLINE typename Vec<W>::type load(const float* p) {
  typename Vec<W>::type v;
  __builtin_memcpy(&v, p, sizeof(v));  // unaligned load
  return v;
}

template <int W>
FASTSEP_INLINE void store(float* p, typename Vec<W>::type v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

// *p in every lane, for the multiply-adds' weights. Not `vec{} + *p`: 0 + x is not x for x = -0, so the compiler
// must add before it broadcasts (two floating-point ops in the pipes the multiply-adds need). Filled lane by lane,
// GCC 12 builds 256- and 512-bit vectors from broadcast halves (a shuffle per weight); one broadcast from memory
// costs a load only.
template <int W>
FASTSEP_INLINE typename Vec<W>::type splat(const float* p) {
  typename Vec<W>::type v;
#if defined(__GNUC__) && defined(__x86_64__)
  if constexpr (W == 8 || W == 16) {
    asm("vbroadcastss %1, %0" : "=v"(v) : "m"(*p));
    return v;
  }
#endif
  for (int i = 0; i < W; ++i) v[i] = *p;
  return v;
}

// out[r][0:V·W] = sum over taps j and channels c of wp[(j·C + c)·R + r] · src[j][c·stride + 0:V·W].
template <int W, int R, int V, int NT>
FASTSEP_INLINE void gemm_block(const float* __restrict wp, const float* const* src, int64_t stride, int64_t C,
                               float* __restrict out) {
  using vec = typename Vec<W>::type;
  vec acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc[r][v] = vec{};
  for (int j = 0; j < NT; ++j) {
    const float* base = src[j];
    const float* w = wp + j * C * R;
    for (int64_t c = 0; c < C; ++c) {
      vec s[V];
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) s[v] = load<W>(base + c * stride + v * W);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const vec b = splat<W>(w + c * R + r);
#pragma GCC unroll 8
        for (int v = 0; v < V; ++v) acc[r][v] += b * s[v];
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) store<W>(out + r * V * W + v * W, acc[r][v]);
}

// The two epilogues, shared with the bfloat16 kernel (diffwave_bf16.cpp). n valid samples of an N-sample block.
// out = sigmoid(gate + bias + cond) · tanh(filter + bias + cond), zero past n (cond rows may be null).
FASTSEP_INLINE void gate_rows(const float* zg, const float* zf, float bg, float bf, const float* qg, const float* qf,
                              float* out, int64_t n, int64_t N) {
  if (qg) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = fm::gate(zg[i] + bg + qg[i], zf[i] + bf + qf[i]);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = fm::gate(zg[i] + bg, zf[i] + bf);
  }
#pragma omp simd
  for (int64_t i = n; i < N; ++i) out[i] = 0.0f;
}

// x_next = (x + residual + br)/sqrt(2); skip (+)= skip part + bs.
FASTSEP_INLINE void residual_rows(const float* x, const float* zr, const float* zs, float br, float bs, float* xn,
                                  float* sk, bool accumulate, int64_t n) {
  constexpr float kInvSqrt2 = 0.70710678118654752f;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) xn[i] = (x[i] + zr[i] + br) * kInvSqrt2;
  if (accumulate) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) sk[i] += zs[i] + bs;
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) sk[i] = zs[i] + bs;
  }
}

// The conditioner is 2C rows a whole signal apart, read N samples at a time: more streams than the hardware
// prefetcher follows, so each block would wait on memory for its rows. Ask for the next block's rows now (two blocks
// ahead measured no better): every cache line of samples [t0 + N, t0 + 2N) of `count` rows. Rows of E (float or
// bfloat16 bits), stride in elements. N samples need not start on a line: the lines are those of the first and last
// sample and everything between.
template <typename E>
FASTSEP_INLINE void prefetch_next_block(const E* rows, int64_t stride, int64_t count, int64_t t0, int64_t N,
                                        int64_t T) {
  constexpr uintptr_t kLine = 64;
  const int64_t ahead = t0 + N;
  if (ahead >= T) return;
  const int64_t last = (ahead + N < T ? ahead + N : T) - 1;
  for (int64_t r = 0; r < count; ++r) {
    const uintptr_t first = reinterpret_cast<uintptr_t>(rows + r * stride + ahead) & ~(kLine - 1);
    const uintptr_t end = reinterpret_cast<uintptr_t>(rows + r * stride + last);
    for (uintptr_t line = first; line <= end; line += kLine) __builtin_prefetch(reinterpret_cast<const void*>(line), 0, 3);
  }
}

// Everything one layer needs, for one batch item. Row strides in floats.
struct LayerArgs {
  int64_t C;           // residual channels
  int64_t T;           // valid samples
  const float* y;      // [C][y_stride] input + step offset, zero-padded: sample t at y[c·y_stride + pad + t]
  int64_t y_stride, pad, dilation;
  const float* x;      // [C][x_stride] layer input
  int64_t x_stride;
  const float* cond;   // [2C][cond_stride] conditioner (bias included) or null
  int64_t cond_stride;
  const float* b_dil;  // [2C]
  const float* wp_dil;  // packed [2C/R][3][C][R]
  const float* wp_out;  // packed [2C/R][C][R]
  const float* b_out;   // [2C]
  float* x_next;        // [C][x_stride]; may be x itself (each block reads only its own samples of x)
  float* skip;          // [C][x_stride]
  bool accumulate;      // skip += (else skip =)
  float* y_next;        // [C][y_stride] (same padding as y) or null after the last layer
  const float* next_step;  // [C] next layer's step offset
};

// One block of V·W samples starting at t0 through the whole layer. scratch: (R + C)·V·W floats.
template <int W, int R, int V>
FASTSEP_INLINE void layer_block(const LayerArgs& a, int64_t t0, float* __restrict scratch) {
  constexpr int N = V * W;
  constexpr int H = R / 2;
  const int64_t C = a.C;
  const int64_t n = a.T - t0 < N ? a.T - t0 : N;  // valid samples of this block
  float* z = scratch;          // [R][N]
  float* g = scratch + R * N;  // [C][N] gated activations of the block
  const float* taps[3] = {a.y + a.pad + t0 - a.dilation, a.y + a.pad + t0, a.y + a.pad + t0 + a.dilation};
  for (int64_t ob = 0; ob < 2 * C / R; ++ob) {
    if (a.cond) {  // the next block's rows of this row block's channels: a few lines at a time, not 2C rows at once
      prefetch_next_block(a.cond + ob * H * a.cond_stride, a.cond_stride, H, t0, N, a.T);
      prefetch_next_block(a.cond + (C + ob * H) * a.cond_stride, a.cond_stride, H, t0, N, a.T);
    }
    gemm_block<W, R, V, 3>(a.wp_dil + ob * 3 * C * R, taps, a.y_stride, C, z);
    for (int h = 0; h < H; ++h) {
      const int64_t cg = ob * H + h, cf = C + cg;  // gate channel and its filter partner
      const float* qg = a.cond ? a.cond + cg * a.cond_stride + t0 : nullptr;
      const float* qf = a.cond ? a.cond + cf * a.cond_stride + t0 : nullptr;
      gate_rows(z + h * N, z + (H + h) * N, a.b_dil[cg], a.b_dil[cf], qg, qf, g + cg * N, n, N);
    }
  }
  const float* gsrc[1] = {g};
  for (int64_t ob = 0; ob < 2 * C / R; ++ob) {
    gemm_block<W, R, V, 1>(a.wp_out + ob * C * R, gsrc, N, C, z);
    for (int h = 0; h < H; ++h) {
      const int64_t c = ob * H + h;
      float* xn = a.x_next + c * a.x_stride + t0;
      residual_rows(a.x + c * a.x_stride + t0, z + h * N, z + (H + h) * N, a.b_out[c], a.b_out[C + c], xn,
                    a.skip + c * a.x_stride + t0, a.accumulate, n);
      if (a.y_next) {
        const float s = a.next_step[c];
        float* yn = a.y_next + c * a.y_stride + a.pad + t0;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) yn[i] = xn[i] + s;
      }
    }
  }
}

}  // namespace dwblock
}  // namespace fastsep

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
