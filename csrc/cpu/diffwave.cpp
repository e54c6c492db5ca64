// CPU kernels of the DiffWave residual layer at inference. The two convolutions go to ATen's tuned GEMM/conv
// (oneDNN); everything between them (conditioner add, gate, residual, skip, next layer's step add) is fused into
// single passes, and a whole stack runs in one call without returning to Python.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu/common.h"

namespace fastsep {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;

// The row loops below are compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at load time (GCC function
// multi-versioning): the extension is built for any x86-64, but the rows are where the time between the GEMMs goes.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FASTSEP_ROW_CLONES __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define FASTSEP_ROW_CLONES
#endif

FASTSEP_ROW_CLONES
void gate_row(const float* gate, const float* filt, const float* cg, const float* cf, float* out, int64_t T) {
  if (cg) {
#pragma omp simd
    for (int64_t t = 0; t < T; ++t) out[t] = fm::sigmoid(gate[t] + cg[t]) * fm::tanh(filt[t] + cf[t]);
  } else {
#pragma omp simd
    for (int64_t t = 0; t < T; ++t) out[t] = fm::sigmoid(gate[t]) * fm::tanh(filt[t]);
  }
}

// x_next = (x + res + br)/sqrt(2); skip (+)= sk + bs; y_next = x_next + next_step when y_next is given.
FASTSEP_ROW_CLONES
void residual_row(const float* x, const float* res, const float* sk, float br, float bs, float* x_next, float* skip,
                  bool accumulate, float* y_next, float next_step, int64_t T) {
#pragma omp simd
  for (int64_t t = 0; t < T; ++t) x_next[t] = (x[t] + res[t] + br) * kInvSqrt2;
  if (accumulate) {
#pragma omp simd
    for (int64_t t = 0; t < T; ++t) skip[t] += sk[t] + bs;
  } else {
#pragma omp simd
    for (int64_t t = 0; t < T; ++t) skip[t] = sk[t] + bs;
  }
  if (y_next) {
#pragma omp simd
    for (int64_t t = 0; t < T; ++t) y_next[t] = x_next[t] + next_step;
  }
}

void check_layer_shapes(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond, const at::Tensor& w_dil,
                        const at::Tensor& b_dil, const at::Tensor& w_out, const at::Tensor& b_out, int64_t layers) {
  const char* op = layers < 0 ? "diffwave_layer" : "diffwave_stack";
  TORCH_CHECK(x.dim() == 3 && x.scalar_type() == at::kFloat, op, ": x must be float32 [B, C, T], got ",
              x.scalar_type(), " ", x.sizes());
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2);
  std::vector<int64_t> lead;
  if (layers >= 0) lead.push_back(layers);
  auto shape = [&](std::initializer_list<int64_t> tail) {
    std::vector<int64_t> s = lead;
    s.insert(s.end(), tail);
    return s;
  };
  auto expect = [&](const at::Tensor& t, std::vector<int64_t> s, const char* name) {
    TORCH_CHECK(t.scalar_type() == at::kFloat && t.sizes() == at::IntArrayRef(s) && t.is_contiguous(), op, ": ", name,
                " must be contiguous float32 ", at::IntArrayRef(s), ", got ", t.scalar_type(), " ", t.sizes());
  };
  expect(dstep, shape({B, C}), "dstep");
  expect(w_dil, shape({2 * C, C, 3}), "w_dil");
  expect(b_dil, shape({2 * C}), "b_dil");
  expect(w_out, shape({2 * C, C}), "w_out");
  expect(b_out, shape({2 * C}), "b_out");
  if (cond.numel() > 0) expect(cond, shape({B, 2 * C, T}), "cond");
  TORCH_CHECK(x.is_contiguous(), op, ": x must be contiguous");
}

// y = x + dstep[b, c] broadcast over time.
void add_step(const at::Tensor& x, const float* dstep, at::Tensor& y) {
  const int64_t rows = x.size(0) * x.size(1), T = x.size(2);
  const float* xs = x.data_ptr<float>();
  float* ys = y.data_ptr<float>();
  at::parallel_for(0, rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(T, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float s = dstep[r];
#pragma omp simd
      for (int64_t t = 0; t < T; ++t) ys[r * T + t] = xs[r * T + t] + s;
    }
  });
}

// One layer: reads x and y = x + dstep; writes x_next, adds (or writes) skip, and, when next_dstep is given, leaves
// y = x_next + next_dstep ready for the following layer.
void layer(const at::Tensor& x, at::Tensor& y, const float* cond, const at::Tensor& w_dil, const at::Tensor& b_dil,
           const at::Tensor& w_out, const float* b_out, int64_t dilation, at::Tensor& x_next, at::Tensor& skip,
           bool accumulate, const float* next_dstep) {
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2);
  const at::Tensor z = at::conv1d(y, w_dil, b_dil, /*stride=*/1, /*padding=*/dilation, /*dilation=*/dilation);
  at::Tensor gated = at::empty({B, C, T}, x.options());
  const float* zs = z.data_ptr<float>();
  float* gs = gated.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(T, 1));
  at::parallel_for(0, B * C, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t b = r / C, c = r % C;
      const float* gate = zs + (b * 2 * C + c) * T;
      const float* filt = zs + (b * 2 * C + C + c) * T;
      const float* cg = cond ? cond + (b * 2 * C + c) * T : nullptr;
      const float* cf = cond ? cond + (b * 2 * C + C + c) * T : nullptr;
      gate_row(gate, filt, cg, cf, gs + r * T, T);
    }
  });
  // The 1x1 convolution through oneDNN like the dilated one: faster here than a batched matmul.
  const at::Tensor o = at::conv1d(gated, w_out.unsqueeze(-1));  // [B, C, T] -> [B, 2C, T]
  const float* os = o.data_ptr<float>();
  const float* xs = x.data_ptr<float>();
  float* xn = x_next.data_ptr<float>();
  float* ss = skip.data_ptr<float>();
  float* ys = y.data_ptr<float>();
  at::parallel_for(0, B * C, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t b = r / C, c = r % C;
      const float* res = os + (b * 2 * C + c) * T;
      const float* sk = os + (b * 2 * C + C + c) * T;
      const float br = b_out[c], bs = b_out[C + c];
      residual_row(xs + r * T, res, sk, br, bs, xn + r * T, ss + r * T, accumulate,
                   next_dstep ? ys + r * T : nullptr, next_dstep ? next_dstep[r] : 0.0f, T);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> diffwave_layer_cpu(const at::Tensor& x, const at::Tensor& dstep,
                                                      const at::Tensor& cond, const at::Tensor& w_dil,
                                                      const at::Tensor& b_dil, const at::Tensor& w_out,
                                                      const at::Tensor& b_out, int64_t dilation) {
  check_layer_shapes(x, dstep, cond, w_dil, b_dil, w_out, b_out, -1);
  TORCH_CHECK(dilation >= 1, "diffwave_layer: dilation must be >= 1, got ", dilation);
  at::NoGradGuard no_grad;
  at::Tensor y = at::empty_like(x), x_next = at::empty_like(x), skip = at::empty_like(x);
  if (x.numel() == 0) return {x_next, skip};
  add_step(x, dstep.data_ptr<float>(), y);
  layer(x, y, cond.numel() ? cond.data_ptr<float>() : nullptr, w_dil, b_dil, w_out, b_out.data_ptr<float>(), dilation,
        x_next, skip, /*accumulate=*/false, nullptr);
  return {x_next, skip};
}

at::Tensor diffwave_stack_cpu(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond,
                              const at::Tensor& w_dil, const at::Tensor& b_dil, const at::Tensor& w_out,
                              const at::Tensor& b_out, at::IntArrayRef dilations) {
  const int64_t L = static_cast<int64_t>(dilations.size());
  TORCH_CHECK(L >= 1, "diffwave_stack: needs at least one layer");
  check_layer_shapes(x, dstep, cond, w_dil, b_dil, w_out, b_out, L);
  for (auto d : dilations) TORCH_CHECK(d >= 1, "diffwave_stack: dilations must be >= 1, got ", d);
  at::NoGradGuard no_grad;
  at::Tensor skip = at::zeros_like(x);
  if (x.numel() == 0) return skip;
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2);
  at::Tensor y = at::empty_like(x), ping = at::empty_like(x), pong = at::empty_like(x);
  const float* steps = dstep.data_ptr<float>();
  const float* conds = cond.numel() ? cond.data_ptr<float>() : nullptr;
  const float* biases = b_out.data_ptr<float>();
  add_step(x, steps, y);
  const at::Tensor* cur = &x;
  for (int64_t l = 0; l < L; ++l) {
    at::Tensor& next = (l % 2 == 0) ? ping : pong;
    layer(*cur, y, conds ? conds + l * B * 2 * C * T : nullptr, w_dil[l], b_dil[l], w_out[l], biases + l * 2 * C,
          dilations[l], next, skip, /*accumulate=*/l > 0, l + 1 < L ? steps + (l + 1) * B * C : nullptr);
    cur = &next;
  }
  return skip;
}

}  // namespace
}  // namespace fastsep

TORCH_LIBRARY_IMPL(fastsep, CPU, m) {
  m.impl("diffwave_layer", &fastsep::diffwave_layer_cpu);
  m.impl("diffwave_stack", &fastsep::diffwave_stack_cpu);
}
