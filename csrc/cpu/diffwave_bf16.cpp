// The CPU DiffWave stack with bfloat16 products (opt-in: DiffWave.generate(precision="bfloat16")).
//
// Same blocking as diffwave_blocks.h, but both convolutions multiply bfloat16 pairs with AVX512-BF16's vdpbf16ps,
// which does two multiply-adds per float32 lane per instruction, twice the float32 FMA rate. Only the convolution
// inputs and weights are rounded to bfloat16: accumulation, gate, residual, skip and conditioner stay float32. The
// convolution inputs (x + step, and the gated activations) are stored as pairs of neighbouring channels per sample,
// one 32-bit word each, which is the operand layout vdpbf16ps multiplies.
#include <ATen/Parallel.h>
#include <torch/library.h>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define FASTSEP_HAVE_BF16_KERNEL 1
#endif

#include <cstring>
#include <vector>

#include "cpu/diffwave_blocks.h"
#include "cpu/diffwave_checks.h"

namespace fastsep {
namespace {

// float -> bfloat16 bits, round to nearest even (inputs are finite).
inline uint32_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

inline uint32_t bf16_pair(float lo, float hi) { return bf16_bits(lo) | (bf16_bits(hi) << 16); }

constexpr int kRows = 8;        // 4 gate (residual) channels and their 4 filter (skip) partners
constexpr int kVecs = 3;        // vectors of 16 samples per block
constexpr int kBlock = 16 * kVecs;

struct Bf16Layer {
  int64_t C, T;
  const uint32_t* y;  // [C/2][y_stride] channel pairs of x + step, zero-padded like the float32 path
  int64_t y_stride, pad, dilation;
  const float* x;     // [C][T]
  const float* cond;  // [2C][T] or null
  const float* b_dil;
  const uint32_t* wp_dil;  // [2C/R][3][C/2][R] weight pairs
  const uint32_t* wp_out;  // [2C/R][C/2][R]
  const float* b_out;
  float* x_next;
  float* skip;
  bool accumulate;
  uint32_t* y_next;  // or null after the last layer
  const float* next_step;
};

#ifdef FASTSEP_HAVE_BF16_KERNEL
#define FASTSEP_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))

// out[r][0:48] = sum over taps and channel pairs of the pair products (vdpbf16ps).
template <int NT>
FASTSEP_BF16_TARGET inline __attribute__((always_inline)) void gemm_block_bf16(const uint32_t* __restrict wp,
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

// One block of 48 samples at t0 through the whole layer. scratch: R·48 floats + (C/2)·48 words + 4·48 floats.
FASTSEP_BF16_TARGET void layer_block_bf16(const Bf16Layer& a, int64_t t0, float* scratch) {
  constexpr int N = kBlock, H = kRows / 2;
  const int64_t C = a.C, C2 = C / 2;
  const int64_t n = a.T - t0 < N ? a.T - t0 : N;
  float* z = scratch;                                               // [R][N]
  float* gf = z + kRows * N;                                        // [H][N] gated rows of one row block
  uint32_t* g = reinterpret_cast<uint32_t*>(gf + H * N);            // [C/2][N] gated channel pairs
  const uint32_t* taps[3] = {a.y + a.pad + t0 - a.dilation, a.y + a.pad + t0, a.y + a.pad + t0 + a.dilation};
  for (int64_t ob = 0; ob < 2 * C / kRows; ++ob) {
    gemm_block_bf16<3>(a.wp_dil + ob * 3 * C2 * kRows, taps, a.y_stride, C2, z);
    for (int h = 0; h < H; ++h) {
      const int64_t cg = ob * H + h, cf = C + cg;
      const float* qg = a.cond ? a.cond + cg * a.T + t0 : nullptr;
      const float* qf = a.cond ? a.cond + cf * a.T + t0 : nullptr;
      dwblock::gate_rows(z + h * N, z + (H + h) * N, a.b_dil[cg], a.b_dil[cf], qg, qf, gf + h * N, n, N);
    }
    for (int p = 0; p < H / 2; ++p) {  // gated channels ob·H + 2p and ob·H + 2p + 1 form pair ob·H/2 + p
      uint32_t* dst = g + (ob * H / 2 + p) * N;
      const float* lo = gf + 2 * p * N;
      const float* hi = gf + (2 * p + 1) * N;
#pragma omp simd
      for (int i = 0; i < N; ++i) dst[i] = bf16_pair(lo[i], hi[i]);
    }
  }
  const uint32_t* gsrc[1] = {g};
  for (int64_t ob = 0; ob < 2 * C / kRows; ++ob) {
    gemm_block_bf16<1>(a.wp_out + ob * C2 * kRows, gsrc, N, C2, z);
    for (int h = 0; h < H; ++h) {
      const int64_t c = ob * H + h;
      dwblock::residual_rows(a.x + c * a.T + t0, z + h * N, z + (H + h) * N, a.b_out[c], a.b_out[C + c],
                             a.x_next + c * a.T + t0, a.skip + c * a.T + t0, a.accumulate, n);
    }
    if (a.y_next) {
      for (int p = 0; p < H / 2; ++p) {
        const int64_t c = ob * H + 2 * p;
        const float s0 = a.next_step[c], s1 = a.next_step[c + 1];
        const float* x0 = a.x_next + c * a.T + t0;
        const float* x1 = x0 + a.T;
        uint32_t* yn = a.y_next + (c / 2) * a.y_stride + a.pad + t0;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) yn[i] = bf16_pair(x0[i] + s0, x1[i] + s1);
      }
    }
  }
}

bool cpu_has_bf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bf16");
}
#else
void layer_block_bf16(const Bf16Layer&, int64_t, float*) {}
bool cpu_has_bf16() { return false; }
#endif

// [L][2C][C][3] -> word pairs [L][2C/R][3][C/2][R]; [L][2C][C] -> [L][2C/R][C/2][R] (row order as the float32 path).
void pack_bf16_weights(const at::Tensor& w_dil, const at::Tensor& w_out, std::vector<uint32_t>& wp_dil,
                       std::vector<uint32_t>& wp_out) {
  const int64_t L = w_dil.size(0), C = w_dil.size(2), C2 = C / 2, H = kRows / 2, OB = 2 * C / kRows;
  const float* wd = w_dil.data_ptr<float>();
  const float* wo = w_out.data_ptr<float>();
  wp_dil.resize(L * OB * 3 * C2 * kRows);
  wp_out.resize(L * OB * C2 * kRows);
  for (int64_t l = 0; l < L; ++l)
    for (int64_t ob = 0; ob < OB; ++ob)
      for (int64_t r = 0; r < kRows; ++r) {
        const int64_t row = r < H ? ob * H + r : C + ob * H + (r - H);
        for (int64_t c2 = 0; c2 < C2; ++c2) {
          for (int64_t j = 0; j < 3; ++j) {
            const float* w = wd + ((l * 2 * C + row) * C + 2 * c2) * 3 + j;
            wp_dil[(((l * OB + ob) * 3 + j) * C2 + c2) * kRows + r] = bf16_pair(w[0], w[3]);
          }
          const float* w = wo + (l * 2 * C + row) * C + 2 * c2;
          wp_out[((l * OB + ob) * C2 + c2) * kRows + r] = bf16_pair(w[0], w[1]);
        }
      }
}

at::Tensor diffwave_stack_bf16_cpu(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond,
                                   const at::Tensor& w_dil, const at::Tensor& b_dil, const at::Tensor& w_out,
                                   const at::Tensor& b_out, at::IntArrayRef dilations) {
  const int64_t L = static_cast<int64_t>(dilations.size());
  TORCH_CHECK(L >= 1, "diffwave_stack_bf16: needs at least one layer");
  check_diffwave_shapes(x, dstep, cond, w_dil, b_dil, w_out, b_out, L, "diffwave_stack_bf16");
  for (auto d : dilations) TORCH_CHECK(d >= 1, "diffwave_stack_bf16: dilations must be >= 1, got ", d);
  TORCH_CHECK(cpu_has_bf16(), "diffwave_stack_bf16: this CPU lacks AVX512-BF16 (use diffwave_stack)");
  TORCH_CHECK(x.size(1) % 4 == 0, "diffwave_stack_bf16: channels must be a multiple of 4, got ", x.size(1));
  at::NoGradGuard no_grad;
  if (x.numel() == 0) return at::zeros_like(x);
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), C2 = C / 2, N = kBlock;
  const int64_t blocks = (T + N - 1) / N;
  int64_t max_d = 1;
  for (auto d : dilations) max_d = std::max<int64_t>(max_d, d);
  const int64_t pad = (max_d + 15) / 16 * 16;
  const int64_t y_stride = pad + blocks * N + pad;
  std::vector<uint32_t> wp_dil, wp_out;
  pack_bf16_weights(w_dil, w_out, wp_dil, wp_out);
  at::Tensor ys = at::zeros({2, B, C2, y_stride}, x.options().dtype(at::kInt));  // raw 32-bit words
  at::Tensor xs = at::empty({2, B, C, T}, x.options());
  at::Tensor skip = at::empty_like(x);
  const float* steps = dstep.data_ptr<float>();
  const float* conds = cond.numel() ? cond.data_ptr<float>() : nullptr;
  auto words = [](const at::Tensor& t) { return reinterpret_cast<uint32_t*>(t.data_ptr<int32_t>()); };
  {  // first layer's input pairs: x + step
    const float* xp = x.data_ptr<float>();
    uint32_t* yp = words(ys);
    at::parallel_for(0, B * C2, 4, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t b = r / C2, c = 2 * (r % C2);
        const float* x0 = xp + (b * C + c) * T;
        const float* x1 = x0 + T;
        const float s0 = steps[b * C + c], s1 = steps[b * C + c + 1];
#pragma omp simd
        for (int64_t t = 0; t < T; ++t) yp[r * y_stride + pad + t] = bf16_pair(x0[t] + s0, x1[t] + s1);
      }
    });
  }
  for (int64_t l = 0; l < L; ++l) {
    const float* x_cur = l == 0 ? x.data_ptr<float>() : xs[(l - 1) % 2].data_ptr<float>();
    float* x_nxt = xs[l % 2].data_ptr<float>();
    const uint32_t* y_cur = words(ys[l % 2]);
    uint32_t* y_nxt = l + 1 < L ? words(ys[(l + 1) % 2]) : nullptr;
    at::parallel_for(0, B * blocks, 1, [&](int64_t lo, int64_t hi) {
      std::vector<float> scratch(kRows * N + (kRows / 2) * N + C2 * N);
      for (int64_t k = lo; k < hi; ++k) {
        const int64_t b = k / blocks;
        Bf16Layer a{C, T, y_cur + b * C2 * y_stride, y_stride, pad, dilations[l], x_cur + b * C * T,
                    conds ? conds + (l * B + b) * 2 * C * T : nullptr, b_dil.data_ptr<float>() + l * 2 * C,
                    wp_dil.data() + l * 2 * C * 3 * C2, wp_out.data() + l * 2 * C * C2,
                    b_out.data_ptr<float>() + l * 2 * C, x_nxt + b * C * T, skip.data_ptr<float>() + b * C * T,
                    l > 0, y_nxt ? y_nxt + b * C2 * y_stride : nullptr,
                    y_nxt ? steps + ((l + 1) * B + b) * C : nullptr};
        layer_block_bf16(a, (k % blocks) * N, scratch.data());
      }
    });
  }
  return skip;
}

}  // namespace

bool diffwave_bf16_available() { return cpu_has_bf16(); }

}  // namespace fastsep

TORCH_LIBRARY_IMPL(fastsep, CPU, m) { m.impl("diffwave_stack_bf16", &fastsep::diffwave_stack_bf16_cpu); }
