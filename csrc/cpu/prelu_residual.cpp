// out = prelu(y, a) + residual, one pass: the elementwise step between the convolutions of F's residual heads
// (fastsep.models.combiner.ResNetHead). As two ATen ops it reads and writes [N, 64, F, K] activations twice (PReLU,
// then the add), and on bfloat16 activations each pass converts every element; at 4 s the heads' PReLUs and adds
// took as long as their convolutions. Any dense layout (the heads run channels-last): y and residual must share
// their strides, and the output gets them too.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>

#include <cstdint>

#include "cpu/bf16.h"
#include "cpu/common.h"

namespace fastsep {
namespace {

FASTSEP_ISA_CLONES
void prelu_residual_f32(const float* y, const float* res, float a, float* out, int64_t lo, int64_t hi) {
#pragma omp simd
  for (int64_t i = lo; i < hi; ++i) out[i] = (y[i] > 0.0f ? y[i] : a * y[i]) + res[i];
}

// bfloat16 as raw bits (the inputs are finite activations).
FASTSEP_ISA_CLONES
void prelu_residual_bf16(const uint16_t* y, const uint16_t* res, float a, uint16_t* out, int64_t lo, int64_t hi) {
#pragma omp simd
  for (int64_t i = lo; i < hi; ++i) {
    const float v = bf16_float(y[i]);
    out[i] = static_cast<uint16_t>(bf16_bits((v > 0.0f ? v : a * v) + bf16_float(res[i])));
  }
}

at::Tensor prelu_residual_cpu(const at::Tensor& y, const at::Tensor& weight, const at::Tensor& residual) {
  TORCH_CHECK(y.scalar_type() == at::kFloat || y.scalar_type() == at::kBFloat16,
              "prelu_residual: y must be float32 or bfloat16, got ", y.scalar_type());
  TORCH_CHECK(residual.scalar_type() == y.scalar_type() && residual.sizes() == y.sizes() &&
                  residual.strides() == y.strides(),
              "prelu_residual: residual must match y's dtype, shape and strides, got ", residual.scalar_type(), " ",
              residual.sizes(), " for ", y.scalar_type(), " ", y.sizes());
  TORCH_CHECK(y.is_non_overlapping_and_dense(), "prelu_residual: y must be dense (a contiguous or channels-last "
              "layout)");
  TORCH_CHECK(weight.numel() == 1 && weight.scalar_type() == at::kFloat,
              "prelu_residual: weight must be one float32 slope (PReLU with num_parameters=1), got ",
              weight.scalar_type(), " ", weight.sizes());
  at::Tensor out = at::empty_like(y);  // keeps y's strides (dense)
  const float a = weight.item<float>();
  // Dense with equal strides: the three tensors are the same permutation of one flat buffer.
  const bool f32 = y.scalar_type() == at::kFloat;
  at::parallel_for(0, y.numel(), 1 << 16, [&](int64_t lo, int64_t hi) {
    if (f32)
      prelu_residual_f32(y.data_ptr<float>(), residual.data_ptr<float>(), a, out.data_ptr<float>(), lo, hi);
    else
      prelu_residual_bf16(reinterpret_cast<const uint16_t*>(y.data_ptr<c10::BFloat16>()),
                          reinterpret_cast<const uint16_t*>(residual.data_ptr<c10::BFloat16>()), a,
                          reinterpret_cast<uint16_t*>(out.data_ptr<c10::BFloat16>()), lo, hi);
  });
  return out;
}

}  // namespace
}  // namespace fastsep

TORCH_LIBRARY_IMPL(fastsep, CPU, m) { m.impl("prelu_residual", &fastsep::prelu_residual_cpu); }
