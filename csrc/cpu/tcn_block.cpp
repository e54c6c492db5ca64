// One Conv-TasNet TCN block at inference (gLN, one-slope PReLUs), float32 [B, C, T]:
//   h = prelu(w_in·x + b_in);  d = prelu(dwconv(gLN(h)));  m = gLN(d)
//   x_out = x + w_res·m + b_res (x unchanged where the block has no residual conv);  skips_out = skips + w_skip·m + b_skip
// As ATen ops each block makes ~16 passes over its [B, H, T] activations (bias, PReLU, gLN's mean, subtract, square,
// mean, divide, scale, shift, twice, and the depthwise convolution), and those passes cost three times the block's
// two GEMMs on one core. Here the block is two GEMMs and two passes:
//   pass 1: PReLU(h + b_in) in place, with h's sum and sum of squares;
//   pass 2: the depthwise convolution of the normalised h (gLN is a per-channel affine map once its two statistics
//           are known, so it is applied to each tap as it is read) and its PReLU, with d's statistics;
// and the second gLN is folded into the output convolutions' weights (w·diag(scale), w·shift + b: per batch item,
// [out, H] numbers instead of [H, T]).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#include "cpu/common.h"

namespace fastsep {
namespace {

// Row sums are accumulated in float over blocks of kBlock frames (vectorised) and the blocks' sums in double: a
// gLN's variance is E[v²] − E[v]², and long inputs (tens of thousands of frames per row) would lose digits of it in
// one float sum.
constexpr int64_t kBlock = 512;

FASTSEP_ISA_CLONES
void bias_prelu_row(float* v, int64_t n, float bias, float a, double* sum, double* sumsq) {
  double s = 0.0, q = 0.0;
  for (int64_t t0 = 0; t0 < n; t0 += kBlock) {
    const int64_t t1 = t0 + kBlock < n ? t0 + kBlock : n;
    float bs = 0.0f, bq = 0.0f;
#pragma omp simd reduction(+ : bs, bq)
    for (int64_t t = t0; t < t1; ++t) {
      const float u = v[t] + bias;
      const float p = u > 0.0f ? u : a * u;
      v[t] = p;
      bs += p;
      bq += p * p;
    }
    s += bs;
    q += bq;
  }
  *sum = s;
  *sumsq = q;
}

// Sum and sum of squares of v[lo, hi), as bias_prelu_row accumulates them.
FASTSEP_ISA_CLONES
void row_moments(const float* v, int64_t lo, int64_t hi, double* sum, double* sumsq) {
  double s = 0.0, q = 0.0;
  for (int64_t t0 = lo; t0 < hi; t0 += kBlock) {
    const int64_t t1 = t0 + kBlock < hi ? t0 + kBlock : hi;
    float bs = 0.0f, bq = 0.0f;
#pragma omp simd reduction(+ : bs, bq)
    for (int64_t t = t0; t < t1; ++t) {
      bs += v[t];
      bq += v[t] * v[t];
    }
    s += bs;
    q += bq;
  }
  *sum += s;
  *sumsq += q;
}

// d[t] = prelu(bias + Σ_k w[k]·n(t + (k − half)·dil)), n(s) = scale·h[s] + shift inside the row and 0 outside (the
// convolution's zero padding is applied to the normalised signal, as in the module).
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
  if (k_size == 3) {  // the default kernel: three taps unrolled
    const float w0 = w[0], w1 = w[1], w2 = w[2];
    const float* hl = h - dil;
    const float* hr = h + dil;
#pragma omp simd
    for (int64_t t = lo; t < hi; ++t) {
      const float acc = scale * (w0 * hl[t] + w1 * h[t] + w2 * hr[t]) + inner_bias;
      d[t] = acc > 0.0f ? acc : a * acc;
    }
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
  }
  for (int64_t t = hi; t < n; ++t) edge(t);
  // the row was just written: its moments are read back from L1/L2
  *sum = 0.0;
  *sumsq = 0.0;
  row_moments(d, 0, n, sum, sumsq);
}

FASTSEP_ISA_CLONES
void add_bias_row(const float* src, float bias, float* dst, int64_t n) {
#pragma omp simd
  for (int64_t t = 0; t < n; ++t) dst[t] = src[t] + bias;
}

// Per batch item: gLN's per-channel (scale, shift) from the rows' sums: gLN(v)[c] = scale[c]·v[c] + shift[c].
void gln_affine(const std::vector<double>& sum, const std::vector<double>& sumsq, int64_t batch, int64_t channels,
                int64_t frames, const float* gamma, const float* beta, double eps, float* scale, float* shift) {
  const double count = static_cast<double>(channels) * static_cast<double>(frames);
  for (int64_t b = 0; b < batch; ++b) {
    double s = 0.0, q = 0.0;
    for (int64_t c = 0; c < channels; ++c) {
      s += sum[b * channels + c];
      q += sumsq[b * channels + c];
    }
    const double mean = s / count;
    const double var = std::max(q / count - mean * mean, 0.0);
    const double rstd = 1.0 / std::sqrt(var + eps);
    for (int64_t c = 0; c < channels; ++c) {
      const double sc = gamma[c] * rstd;
      scale[b * channels + c] = static_cast<float>(sc);
      shift[b * channels + c] = static_cast<float>(beta[c] - mean * sc);
    }
  }
}

// out[b] = base[b] + bias_b + (w·diag(scale_b))·m[b], bias_b = w·shift_b + b_conv: a 1x1 convolution of gLN(m) with
// the norm folded into its weights.
at::Tensor folded_conv_add(const at::Tensor& base, const at::Tensor& m, const at::Tensor& w, const at::Tensor& bias,
                           const at::Tensor& scale, const at::Tensor& shift) {
  const int64_t batch = m.size(0), frames = m.size(2), out_ch = w.size(0);
  const at::Tensor w_b = w.unsqueeze(0) * scale.unsqueeze(1);                     // [B, out, H]
  const at::Tensor bias_b = at::matmul(shift, w.t()) + bias.unsqueeze(0);          // [B, out]
  at::Tensor out = at::empty_like(base);
  const float* src = base.data_ptr<float>();
  const float* bb = bias_b.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, batch * out_ch, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) add_bias_row(src + r * frames, bb[r], dst + r * frames, frames);
  });
  if (batch == 1)
    out[0].addmm_(w_b[0], m[0]);
  else
    out.baddbmm_(w_b, m);
  return out;
}

void check_param(const at::Tensor& t, int64_t numel, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.device().is_cpu() && t.is_contiguous(), "tcn_block: ", name,
              " must be a contiguous float32 CPU tensor");
  TORCH_CHECK(t.numel() == numel, "tcn_block: ", name, " must have ", numel, " elements, got ", t.sizes());
}

std::tuple<at::Tensor, at::Tensor> tcn_block_cpu(
    const at::Tensor& x, const at::Tensor& skips, const at::Tensor& w_in, const at::Tensor& b_in,
    const at::Tensor& a_in, const at::Tensor& g_in, const at::Tensor& beta_in, const at::Tensor& w_dw,
    const at::Tensor& b_dw, const at::Tensor& a_dw, const at::Tensor& g_dw, const at::Tensor& beta_dw,
    const c10::optional<at::Tensor>& w_res, const c10::optional<at::Tensor>& b_res, const at::Tensor& w_skip,
    const at::Tensor& b_skip, int64_t dilation, double eps) {
  TORCH_CHECK(x.dim() == 3 && skips.dim() == 3 && x.size(0) == skips.size(0) && x.size(2) == skips.size(2),
              "tcn_block: x and skips must be [B, C, T] of one batch and length, got ", x.sizes(), " and ",
              skips.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat && skips.scalar_type() == at::kFloat && x.is_contiguous() &&
                  skips.is_contiguous() && x.device().is_cpu() && skips.device().is_cpu(),
              "tcn_block: x and skips must be contiguous float32 CPU tensors");
  TORCH_CHECK(w_in.dim() == 2 && w_in.size(1) == x.size(1), "tcn_block: w_in must be [H, C] with C = x.size(1) = ",
              x.size(1), ", got ", w_in.sizes());
  TORCH_CHECK(w_dw.dim() == 2 && w_dw.size(1) % 2 == 1, "tcn_block: w_dw must be [H, K] with K odd, got ",
              w_dw.sizes());
  TORCH_CHECK(dilation >= 1, "tcn_block: dilation must be >= 1, got ", dilation);
  TORCH_CHECK(w_res.has_value() == b_res.has_value(), "tcn_block: give both w_res and b_res or neither");
  const int64_t batch = x.size(0), chan = x.size(1), frames = x.size(2), hid = w_in.size(0);
  const int64_t k_size = w_dw.size(1);
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
  TORCH_CHECK(w_skip.dim() == 2 && w_skip.size(0) == skips.size(1) && w_skip.size(1) == hid,
              "tcn_block: w_skip must be [S, H] with S = skips.size(1), got ", w_skip.sizes());
  check_param(w_skip, skips.size(1) * hid, "w_skip");
  check_param(b_skip, skips.size(1), "b_skip");
  if (w_res.has_value()) {
    TORCH_CHECK(w_res->dim() == 2 && w_res->size(0) == chan && w_res->size(1) == hid,
                "tcn_block: w_res must be [C, H], got ", w_res->sizes());
    check_param(*w_res, chan * hid, "w_res");
    check_param(*b_res, chan, "b_res");
  }

  // h = w_in·x, then pass 1 in place
  // one GEMM per batch item: at::matmul's broadcast of [H, C] over [B, C, T] transposes x and its result through
  // copies (a third of the block's time at batch 8)
  at::Tensor h = at::empty({batch, hid, frames}, x.options());
  for (int64_t b = 0; b < batch; ++b) {
    at::Tensor row = h[b];
    at::mm_out(row, w_in, x[b]);
  }
  const int64_t rows = batch * hid;
  std::vector<double> sum(rows), sumsq(rows);
  float* hp = h.data_ptr<float>();
  const float* bin = b_in.data_ptr<float>();
  const float a1 = a_in.item<float>(), a2 = a_dw.item<float>();
  at::parallel_for(0, rows, 8, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r)
      bias_prelu_row(hp + r * frames, frames, bin[r % hid], a1, &sum[r], &sumsq[r]);
  });
  std::vector<float> scale1(rows), shift1(rows);
  gln_affine(sum, sumsq, batch, hid, frames, g_in.data_ptr<float>(), beta_in.data_ptr<float>(), eps, scale1.data(),
             shift1.data());

  // pass 2
  at::Tensor d = at::empty_like(h);
  float* dp = d.data_ptr<float>();
  const float* wdw = w_dw.data_ptr<float>();
  const float* bdw = b_dw.data_ptr<float>();
  at::parallel_for(0, rows, 8, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t c = r % hid;
      norm_dwconv_prelu_row(hp + r * frames, dp + r * frames, frames, wdw + c * k_size, k_size, dilation, scale1[r],
                            shift1[r], bdw[c], a2, &sum[r], &sumsq[r]);
    }
  });
  at::Tensor scale2 = at::empty({batch, hid}, x.options());
  at::Tensor shift2 = at::empty({batch, hid}, x.options());
  gln_affine(sum, sumsq, batch, hid, frames, g_dw.data_ptr<float>(), beta_dw.data_ptr<float>(), eps,
             scale2.data_ptr<float>(), shift2.data_ptr<float>());

  at::Tensor skips_out = folded_conv_add(skips, d, w_skip, b_skip, scale2, shift2);
  // a block without a residual conv (the network's last) returns x as a new tensor: an op's outputs never alias
  // its inputs
  at::Tensor x_out = w_res.has_value() ? folded_conv_add(x, d, *w_res, *b_res, scale2, shift2) : x.clone();
  return {x_out, skips_out};
}

}  // namespace
}  // namespace fastsep

TORCH_LIBRARY_IMPL(fastsep, CPU, m) { m.impl("tcn_block", &fastsep::tcn_block_cpu); }
