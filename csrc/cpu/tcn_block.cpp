// One Conv-TasNet TCN block at inference (gLN, one-slope PReLUs), updating the network's running state in place.
// The state is [x; skips] stacked along the channels, [B, R, T] float32, held as state + offset[..., None]: the
// per-row constants (the convolutions' biases and gLN's shifts) are carried in offset [B, R] rather than added to
// every frame. The block
//   h = prelu(w_in·x + b_in);  d = prelu(dwconv(gLN(h)));  m = gLN(d);  [x; skips][last R_out rows] += w_out·m + b_out
// (w_out stacks the residual and skip convolutions, or is the skip convolution alone for the network's last block).
// As ATen ops each block makes ~16 passes over its [B, H, T] activations (bias, PReLU, gLN's mean, subtract, square,
// mean, divide, scale, shift, twice, and the depthwise convolution), and those passes cost three times the block's
// GEMMs on one core. Here the block is two GEMMs and two passes:
//   GEMM 1: h = w_in·x_stored, the offset entering as a per-item bias w_in·offset_x;
//   pass 1: PReLU(h + bias) in place, with h's sum and sum of squares;
//   pass 2: the depthwise convolution of the normalised h (gLN is a per-channel affine map once its two statistics
//           are known, so it is applied to each tap as it is read) and its PReLU, with d's statistics, written over h;
//   GEMM 2: state += rstd·(w_out·diag(gamma))·d straight into the state's rows (beta = 1, alpha = gLN's 1/std), and
//           the rest of gLN and the bias, constants per row, into offset.
// So no pass copies x or the skips, and the residual and skip convolutions are one GEMM.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/common.h"

namespace fastsep {
namespace {

// Row sums are accumulated in float over blocks of kBlock frames (vectorised) and the blocks' sums in double: a
// gLN's variance is E[v²] − E[v]², and long inputs (tens of thousands of frames per row) would lose digits of it in
// one float sum.
constexpr int64_t kBlock = 512;

// Adds the sum and sum of squares of value(t), t in [lo, hi), to *sum and *sumsq; value may also store what it
// returns, so that a pass takes the moments of what it writes. Always inlined, so that it is vectorised for each ISA
// clone of its callers.
template <typename Value>
[[gnu::always_inline]] inline void add_moments(int64_t lo, int64_t hi, Value value, double* sum, double* sumsq) {
  double s = 0.0, q = 0.0;
  for (int64_t t0 = lo; t0 < hi; t0 += kBlock) {
    const int64_t t1 = t0 + kBlock < hi ? t0 + kBlock : hi;
    float bs = 0.0f, bq = 0.0f;
#pragma omp simd reduction(+ : bs, bq)
    for (int64_t t = t0; t < t1; ++t) {
      const float p = value(t);
      bs += p;
      bq += p * p;
    }
    s += bs;
    q += bq;
  }
  *sum += s;
  *sumsq += q;
}

FASTSEP_ISA_CLONES
void bias_prelu_row(float* v, int64_t n, float bias, float a, double* sum, double* sumsq) {
  *sum = 0.0;
  *sumsq = 0.0;
  add_moments(
      0, n,
      [=](int64_t t) {
        const float u = v[t] + bias;
        return v[t] = u > 0.0f ? u : a * u;
      },
      sum, sumsq);
}

// d[t] = prelu(bias + Σ_k w[k]·n(t + (k − half)·dil)), n(s) = scale·h[s] + shift inside the row and 0 outside (the
// convolution's zero padding is applied to the normalised signal, as in the module); d's sum and sum of squares.
FASTSEP_ISA_CLONES
void norm_dwconv_prelu_row(const float* h, float* d, int64_t n, const float* w, int64_t k_size, int64_t dil,
                           float scale, float shift, float bias, float a, double* sum, double* sumsq) {
  const int64_t half = (k_size - 1) / 2;
  const int64_t reach = half * dil;  // taps reach this far to either side
  float wsum = 0.0f;
  for (int64_t k = 0; k < k_size; ++k) wsum += w[k];
  const float inner_bias = bias + shift * wsum;
  auto edge = [&](int64_t t) {
    float acc = bias;
    for (int64_t k = 0; k < k_size; ++k) {
      const int64_t src = t + (k - half) * dil;
      if (src >= 0 && src < n) acc += w[k] * (scale * h[src] + shift);
    }
    d[t] = acc > 0.0f ? acc : a * acc;
  };
  const int64_t lo = reach < n ? reach : n;
  const int64_t hi = n - reach > lo ? n - reach : lo;
  for (int64_t t = 0; t < lo; ++t) edge(t);
  for (int64_t t = hi; t < n; ++t) edge(t);
  double s = 0.0, q = 0.0;
  auto stored = [=](int64_t t) { return d[t]; };
  add_moments(0, lo, stored, &s, &q);
  add_moments(hi, n, stored, &s, &q);
  if (k_size == 3) {  // the default kernel: three taps unrolled, the moments taken as each block is written
    const float w0 = w[0], w1 = w[1], w2 = w[2];
    const float* hl = h - dil;
    const float* hr = h + dil;
    add_moments(
        lo, hi,
        [=](int64_t t) {
          const float acc = scale * (w0 * hl[t] + w1 * h[t] + w2 * hr[t]) + inner_bias;
          return d[t] = acc > 0.0f ? acc : a * acc;
        },
        &s, &q);
  } else {
    for (int64_t t = lo; t < hi; ++t) d[t] = 0.0f;
    for (int64_t k = 0; k < k_size; ++k) {
      const float wk = w[k];
      const float* src = h + (k - half) * dil;
#pragma omp simd
      for (int64_t t = lo; t < hi; ++t) d[t] += wk * src[t];
    }
#pragma omp simd
    for (int64_t t = lo; t < hi; ++t) {
      const float acc = scale * d[t] + inner_bias;
      d[t] = acc > 0.0f ? acc : a * acc;
    }
    add_moments(lo, hi, stored, &s, &q);
  }
  *sum = s;
  *sumsq = q;
}

// gLN's mean and 1/std of one batch item from its rows' sums.
void gln_moments(const double* sum, const double* sumsq, int64_t channels, int64_t frames, double eps, double* mean,
                 double* rstd) {
  const double count = static_cast<double>(channels) * static_cast<double>(frames);
  double s = 0.0, q = 0.0;
  for (int64_t c = 0; c < channels; ++c) {
    s += sum[c];
    q += sumsq[c];
  }
  *mean = s / count;
  const double var = std::max(q / count - *mean * *mean, 0.0);
  *rstd = 1.0 / std::sqrt(var + eps);
}

void check_param(const at::Tensor& t, int64_t numel, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.device().is_cpu() && t.is_contiguous(), "tcn_block_: ", name,
              " must be a contiguous float32 CPU tensor");
  TORCH_CHECK(t.numel() == numel, "tcn_block_: ", name, " must have ", numel, " elements, got ", t.sizes());
}

void tcn_block_cpu_(at::Tensor& state, at::Tensor& offset, const at::Tensor& w_in, const at::Tensor& b_in,
                    const at::Tensor& a_in, const at::Tensor& g_in, const at::Tensor& beta_in, const at::Tensor& w_dw,
                    const at::Tensor& b_dw, const at::Tensor& a_dw, const at::Tensor& g_dw,
                    const at::Tensor& beta_dw, const at::Tensor& w_out, const at::Tensor& b_out, int64_t dilation,
                    double eps) {
  TORCH_CHECK(state.dim() == 3 && state.scalar_type() == at::kFloat && state.is_contiguous() &&
                  state.device().is_cpu(),
              "tcn_block_: state must be a contiguous float32 CPU tensor [B, R, T], got ", state.sizes());
  const int64_t batch = state.size(0), rows_all = state.size(1), frames = state.size(2);
  TORCH_CHECK(frames >= 1, "tcn_block_: state must hold at least one frame");
  TORCH_CHECK(offset.dim() == 2 && offset.size(0) == batch && offset.size(1) == rows_all &&
                  offset.scalar_type() == at::kFloat && offset.is_contiguous() && offset.device().is_cpu(),
              "tcn_block_: offset must be a contiguous float32 CPU tensor [B, R] = [", batch, ", ", rows_all,
              "], got ", offset.sizes());
  TORCH_CHECK(w_in.dim() == 2 && w_in.size(1) >= 1 && w_in.size(1) < rows_all,
              "tcn_block_: w_in must be [H, C] with 1 <= C < R = ", rows_all, ", got ", w_in.sizes());
  const int64_t chan = w_in.size(1), hid = w_in.size(0);
  TORCH_CHECK(w_dw.dim() == 2 && w_dw.size(1) % 2 == 1, "tcn_block_: w_dw must be [H, K] with K odd, got ",
              w_dw.sizes());
  TORCH_CHECK(dilation >= 1, "tcn_block_: dilation must be >= 1, got ", dilation);
  TORCH_CHECK(w_out.dim() == 2 && w_out.size(1) == hid &&
                  (w_out.size(0) == rows_all || w_out.size(0) == rows_all - chan),
              "tcn_block_: w_out must be [R, H] or [R - C, H] with R = ", rows_all, ", C = ", chan, ", H = ", hid,
              ", got ", w_out.sizes());
  const int64_t k_size = w_dw.size(1), out_rows = w_out.size(0), first_out = rows_all - out_rows;
  check_param(w_in, hid * chan, "w_in");
  check_param(b_in, hid, "b_in");
  check_param(a_in, 1, "a_in");
  check_param(g_in, hid, "g_in");
  check_param(beta_in, hid, "beta_in");
  check_param(w_dw, hid * k_size, "w_dw");
  check_param(b_dw, hid, "b_dw");
  check_param(a_dw, 1, "a_dw");
  check_param(g_dw, hid, "g_dw");
  check_param(beta_dw, hid, "beta_dw");
  check_param(w_out, out_rows * hid, "w_out");
  check_param(b_out, out_rows, "b_out");

  // x's offset enters GEMM 1 as a per-item bias of h; GEMM 2 adds w_out·gLN(d) + b_out as
  // rstd·(w_out·diag(g))·d into the state and [w_out·beta + b_out − mean·rstd·(w_out·g)] into the offset
  const at::Tensor bias_in = at::addmm(b_in.unsqueeze(0), offset.narrow(1, 0, chan), w_in.t()).contiguous();
  const at::Tensor w_g = w_out * g_dw.unsqueeze(0);
  const at::Tensor w_beta = at::mv(w_out, beta_dw) + b_out;  // [R_out]
  const at::Tensor w_gsum = at::mv(w_out, g_dw);             // [R_out]
  at::Tensor h = at::empty({batch, hid, frames}, state.options());
  std::vector<double> sum(batch * hid), sumsq(batch * hid);
  float* hp = h.data_ptr<float>();
  float* off = offset.data_ptr<float>();
  const float *bin = bias_in.data_ptr<float>(), *g1 = g_in.data_ptr<float>(), *be1 = beta_in.data_ptr<float>();
  const float *wdw = w_dw.data_ptr<float>(), *bdw = b_dw.data_ptr<float>();
  const float *wb = w_beta.data_ptr<float>(), *wgs = w_gsum.data_ptr<float>();
  const float a1 = a_in.item<float>(), a2 = a_dw.item<float>();

  auto run_item = [&](int64_t b) {
    at::NoGradGuard no_grad;  // grad mode is thread-local: a worker of the parallel region below starts with it on
    at::Tensor hb = h[b];
    at::mm_out(hb, w_in, state[b].narrow(0, 0, chan));
    const int64_t r0 = b * hid;
    at::parallel_for(r0, r0 + hid, 8, [&](int64_t lo, int64_t hi) {  // pass 1
      for (int64_t r = lo; r < hi; ++r) bias_prelu_row(hp + r * frames, frames, bin[r], a1, &sum[r], &sumsq[r]);
    });
    double mean, rstd;
    gln_moments(&sum[r0], &sumsq[r0], hid, frames, eps, &mean, &rstd);
    std::vector<float> scale1(hid), shift1(hid);  // the first gLN as a per-channel affine map
    for (int64_t c = 0; c < hid; ++c) {
      const double sc = g1[c] * rstd;
      scale1[c] = static_cast<float>(sc);
      shift1[c] = static_cast<float>(be1[c] - mean * sc);
    }
    // pass 2, d written over h: each row is copied to a scratch row first (L1-sized), so that the item's
    // activations are one [H, T] buffer and stay in a core's L2 with its state
    at::parallel_for(r0, r0 + hid, 8, [&](int64_t lo, int64_t hi) {
      std::vector<float> row(frames);
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t c = r - r0;
        std::memcpy(row.data(), hp + r * frames, frames * sizeof(float));
        norm_dwconv_prelu_row(row.data(), hp + r * frames, frames, wdw + c * k_size, k_size, dilation,
                              scale1[c], shift1[c], bdw[c], a2, &sum[r], &sumsq[r]);
      }
    });
    gln_moments(&sum[r0], &sumsq[r0], hid, frames, eps, &mean, &rstd);
    const float mr = static_cast<float>(mean * rstd);
    for (int64_t o = 0; o < out_rows; ++o) off[b * rows_all + first_out + o] += wb[o] - mr * wgs[o];
    at::Tensor dst = state[b].narrow(0, first_out, out_rows);
    dst.addmm_(w_g, h[b], 1.0, rstd);
  };
  // Batches whose items share the threads evenly run an item per thread (GEMMs and passes single-threaded inside
  // the parallel region): one synchronisation per block instead of one per GEMM and pass. Otherwise the items run
  // one after the other, each GEMM and pass split across the threads.
  const int64_t threads = at::get_num_threads();
  if (threads > 1 && batch >= threads && (batch % threads == 0 || batch >= 4 * threads)) {
    at::parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) run_item(b);
    });
  } else {
    for (int64_t b = 0; b < batch; ++b) run_item(b);
  }
}
}  // namespace
}  // namespace fastsep

TORCH_LIBRARY_IMPL(fastsep, CPU, m) { m.impl("tcn_block_", &fastsep::tcn_block_cpu_); }
