// CPU kernels of complex_combine (forward, backward) and combine_features: one pass over the inputs, one write.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu/common.h"

namespace fastsep {
namespace {

constexpr int64_t kGrain = 1 << 14;

// Runs body(plane, begin, end) over every [begin, end) slice of the flattened (plane, p) index space, in parallel,
// so that the inner loops are contiguous and free of divisions.
template <typename Body>
void for_each_slice(int64_t planes, int64_t plane, const Body& body) {
  at::parallel_for(0, planes * plane, kGrain, [&](int64_t lo, int64_t hi) {
    while (lo < hi) {
      const int64_t b = lo / plane;
      const int64_t p0 = lo - b * plane;
      const int64_t p1 = std::min(plane, p0 + (hi - lo));
      body(b, p0, p1);
      lo += p1 - p0;
    }
  });
}

template <typename T>
void combine_forward(const c10::complex<T>* vd, const c10::complex<T>* vg, const T* mag, const T* phase,
                     c10::complex<T>* out, int64_t planes, int64_t plane) {
  for_each_slice(planes, plane, [&](int64_t b, int64_t p0, int64_t p1) {
    const T* m0 = mag + b * 2 * plane;
    const T* m1 = m0 + plane;
    const T* ph0 = phase + b * 2 * plane;
    const T* ph1 = ph0 + plane;
    const T* d = reinterpret_cast<const T*>(vd + b * plane);
    const T* g = reinterpret_cast<const T*>(vg + b * plane);
    T* o = reinterpret_cast<T*>(out + b * plane);
#pragma omp simd
    for (int64_t p = p0; p < p1; ++p) {
      T s0, c0, s1, c1;
      sincos_any(ph0[p], &s0, &c0);
      sincos_any(ph1[p], &s1, &c1);
      // a = m0·(c0 − j·s0), b = m1·(c1 − j·s1)
      const T ar = m0[p] * c0, ai = -m0[p] * s0;
      const T br = m1[p] * c1, bi = -m1[p] * s1;
      const T dr = d[2 * p], di = d[2 * p + 1];
      const T gr = g[2 * p], gi = g[2 * p + 1];
      o[2 * p] = ar * dr - ai * di + br * gr - bi * gi;
      o[2 * p + 1] = ar * di + ai * dr + br * gi + bi * gr;
    }
  });
}

template <typename T>
void combine_backward(const c10::complex<T>* grad, const c10::complex<T>* vd, const c10::complex<T>* vg,
                      const T* mag, const T* phase, c10::complex<T>* gvd, c10::complex<T>* gvg, T* gmag, T* gphase,
                      int64_t planes, int64_t plane) {
  for_each_slice(planes, plane, [&](int64_t b, int64_t p0, int64_t p1) {
    const int64_t w = b * 2 * plane;
    const T *m0 = mag + w, *m1 = mag + w + plane, *ph0 = phase + w, *ph1 = phase + w + plane;
    T *gm0 = gmag + w, *gm1 = gmag + w + plane, *gp0 = gphase + w, *gp1 = gphase + w + plane;
    const T* gr_ = reinterpret_cast<const T*>(grad + b * plane);
    const T* d = reinterpret_cast<const T*>(vd + b * plane);
    const T* g = reinterpret_cast<const T*>(vg + b * plane);
    T* od = reinterpret_cast<T*>(gvd + b * plane);
    T* og = reinterpret_cast<T*>(gvg + b * plane);
#pragma omp simd
    for (int64_t p = p0; p < p1; ++p) {
      T s0, c0, s1, c1;
      sincos_any(ph0[p], &s0, &c0);
      sincos_any(ph1[p], &s1, &c1);
      const T yr = gr_[2 * p], yi = gr_[2 * p + 1];
      // grad_vd = y·conj(a) = y·m0·(c0 + j·s0)
      od[2 * p] = m0[p] * (yr * c0 - yi * s0);
      od[2 * p + 1] = m0[p] * (yr * s0 + yi * c0);
      og[2 * p] = m1[p] * (yr * c1 - yi * s1);
      og[2 * p + 1] = m1[p] * (yr * s1 + yi * c1);
      // w = (c − j·s)·v; y·conj(w): grad_mag = Re, grad_phase = −m·Im
      const T dr = d[2 * p], di = d[2 * p + 1];
      const T w0r = c0 * dr + s0 * di, w0i = c0 * di - s0 * dr;
      const T gr = g[2 * p], gi = g[2 * p + 1];
      const T w1r = c1 * gr + s1 * gi, w1i = c1 * gi - s1 * gr;
      gm0[p] = yr * w0r + yi * w0i;
      gp0[p] = -m0[p] * (yi * w0r - yr * w0i);
      gm1[p] = yr * w1r + yi * w1i;
      gp1[p] = -m1[p] * (yi * w1r - yr * w1i);
    }
  });
}

template <typename T>
void features(const c10::complex<T>* vd, const c10::complex<T>* vg, T* mag, T* phase, int64_t planes,
              int64_t plane) {
  for_each_slice(planes, plane, [&](int64_t b, int64_t p0, int64_t p1) {
    const int64_t w = b * 2 * plane;
    const T* d = reinterpret_cast<const T*>(vd + b * plane);
    const T* g = reinterpret_cast<const T*>(vg + b * plane);
#pragma omp simd
    for (int64_t p = p0; p < p1; ++p) {
      const T dr = d[2 * p], di = d[2 * p + 1], gr = g[2 * p], gi = g[2 * p + 1];
      mag[w + p] = std::sqrt(dr * dr + di * di);
      mag[w + plane + p] = std::sqrt(gr * gr + gi * gi);
      phase[w + p] = atan2_any(di, dr);
      // vg·conj(vd)
      phase[w + plane + p] = atan2_any(gi * dr - gr * di, gr * dr + gi * di);
    }
  });
}

at::Tensor complex_combine_cpu(const at::Tensor& vd, const at::Tensor& vg, const at::Tensor& mag,
                               const at::Tensor& phase) {
  check_spectra_pair(vd, vg, "complex_combine");
  check_weights(vd, mag, "mag", "complex_combine");
  check_weights(vd, phase, "phase", "complex_combine");
  auto out = at::empty_like(vd);
  if (vd.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(mag.scalar_type(), "complex_combine_cpu", [&] {
    combine_forward<scalar_t>(vd.data_ptr<c10::complex<scalar_t>>(), vg.data_ptr<c10::complex<scalar_t>>(),
                              mag.data_ptr<scalar_t>(), phase.data_ptr<scalar_t>(),
                              out.data_ptr<c10::complex<scalar_t>>(), plane_count(vd), plane_size(vd));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> complex_combine_backward_cpu(
    const at::Tensor& grad, const at::Tensor& vd, const at::Tensor& vg, const at::Tensor& mag,
    const at::Tensor& phase) {
  check_spectra_pair(vd, vg, "complex_combine_backward");
  check_spectra_pair(grad, vd, "complex_combine_backward");
  check_weights(vd, mag, "mag", "complex_combine_backward");
  check_weights(vd, phase, "phase", "complex_combine_backward");
  auto gvd = at::empty_like(vd), gvg = at::empty_like(vg);
  auto gmag = at::empty_like(mag), gphase = at::empty_like(phase);
  if (vd.numel() == 0) return {gvd, gvg, gmag, gphase};
  AT_DISPATCH_FLOATING_TYPES(mag.scalar_type(), "complex_combine_backward_cpu", [&] {
    using C = c10::complex<scalar_t>;
    combine_backward<scalar_t>(grad.data_ptr<C>(), vd.data_ptr<C>(), vg.data_ptr<C>(), mag.data_ptr<scalar_t>(),
                               phase.data_ptr<scalar_t>(), gvd.data_ptr<C>(), gvg.data_ptr<C>(),
                               gmag.data_ptr<scalar_t>(), gphase.data_ptr<scalar_t>(), plane_count(vd),
                               plane_size(vd));
  });
  return {gvd, gvg, gmag, gphase};
}

std::tuple<at::Tensor, at::Tensor> combine_features_cpu(const at::Tensor& vd, const at::Tensor& vg) {
  check_spectra_pair(vd, vg, "combine_features");
  auto opts = vd.options().dtype(c10::toRealValueType(vd.scalar_type()));
  auto mag = at::empty(paired_shape(vd), opts), phase = at::empty(paired_shape(vd), opts);
  if (vd.numel() == 0) return {mag, phase};
  AT_DISPATCH_FLOATING_TYPES(mag.scalar_type(), "combine_features_cpu", [&] {
    features<scalar_t>(vd.data_ptr<c10::complex<scalar_t>>(), vg.data_ptr<c10::complex<scalar_t>>(),
                       mag.data_ptr<scalar_t>(), phase.data_ptr<scalar_t>(), plane_count(vd), plane_size(vd));
  });
  return {mag, phase};
}

}  // namespace
}  // namespace fastsep

TORCH_LIBRARY_IMPL(fastsep, CPU, m) {
  m.impl("complex_combine", &fastsep::complex_combine_cpu);
  m.impl("complex_combine_backward", &fastsep::complex_combine_backward_cpu);
  m.impl("combine_features", &fastsep::combine_features_cpu);
}
