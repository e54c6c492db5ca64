// Shared checks and helpers of the CPU kernels. The Python wrappers in fastsep/ops.py validate inputs first; these
// TORCH_CHECKs are the second line, for callers that reach torch.ops.fastsep directly.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/complex.h>

#include <cmath>
#include <cstdint>

#include "cpu/fast_math.h"

// Elementwise loops are compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at load time (GCC function
// multi-versioning): the extension is built for any x86-64, but these loops are where time goes between the GEMMs.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FASTSEP_ISA_CLONES __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define FASTSEP_ISA_CLONES
#endif

namespace fastsep {

inline void check_spectra_pair(const at::Tensor& vd, const at::Tensor& vg, const char* op) {
  TORCH_CHECK(vd.is_complex() && vd.scalar_type() == vg.scalar_type(), op,
              ": vd and vg must be complex tensors of one dtype, got ", vd.scalar_type(), " and ", vg.scalar_type());
  TORCH_CHECK(vd.dim() >= 2 && vd.sizes() == vg.sizes(), op, ": vd and vg must share a shape [..., F, K], got ",
              vd.sizes(), " and ", vg.sizes());
  TORCH_CHECK(vd.is_contiguous() && vg.is_contiguous(), op, ": vd and vg must be contiguous");
}

// [..., F, K] -> [..., 2, F, K]
inline std::vector<int64_t> paired_shape(const at::Tensor& spec) {
  std::vector<int64_t> shape(spec.sizes().begin(), spec.sizes().end());
  shape.insert(shape.end() - 2, 2);
  return shape;
}

inline void check_weights(const at::Tensor& vd, const at::Tensor& w, const char* name, const char* op) {
  TORCH_CHECK(w.scalar_type() == c10::toRealValueType(vd.scalar_type()), op, ": ", name, " must be ",
              c10::toRealValueType(vd.scalar_type()), ", got ", w.scalar_type());
  TORCH_CHECK(w.sizes() == at::IntArrayRef(paired_shape(vd)), op, ": ", name, " must have shape ",
              at::IntArrayRef(paired_shape(vd)), ", got ", w.sizes());
  TORCH_CHECK(w.is_contiguous(), op, ": ", name, " must be contiguous");
}

inline void sincos_any(float x, float* s, float* c) { fm::sincos(x, s, c); }
inline void sincos_any(double x, double* s, double* c) {
  *s = std::sin(x);
  *c = std::cos(x);
}

inline float atan2_any(float y, float x) { return fm::atan2(y, x); }
inline double atan2_any(double y, double x) { return std::atan2(y, x); }

// Number of leading "batch" planes and the F·K plane size of a [..., F, K] spectrum.
inline int64_t plane_size(const at::Tensor& spec) { return spec.size(-1) * spec.size(-2); }
inline int64_t plane_count(const at::Tensor& spec) {
  const int64_t p = plane_size(spec);
  return p == 0 ? 0 : spec.numel() / p;
}

}  // namespace fastsep
