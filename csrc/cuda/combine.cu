// CUDA kernels of complex_combine (forward, backward) and combine_features. Memory-bound elementwise passes: each
// input is read once and each output written once; planes run along grid.y so the inner index needs no division.
#include "cuda/complex.cuh"
#include "cuda/kernels.h"
#include "cuda/launch.cuh"

namespace fastsep {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void combine_forward_kernel(const vec2_t<T>* __restrict__ vd, const vec2_t<T>* __restrict__ vg,
                                       const T* __restrict__ mag, const T* __restrict__ phase,
                                       vec2_t<T>* __restrict__ out, int64_t planes, int64_t plane) {
  for (int64_t b = blockIdx.y; b < planes; b += gridDim.y) {
    const T* m = mag + b * 2 * plane;
    const T* ph = phase + b * 2 * plane;
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < plane; p += (int64_t)blockDim.x * gridDim.x) {
      T s0, c0, s1, c1;
      sincos_any(ph[p], &s0, &c0);
      sincos_any(ph[plane + p], &s1, &c1);
      const T m0 = m[p], m1 = m[plane + p];
      const vec2_t<T> d = vd[b * plane + p], g = vg[b * plane + p];
      const vec2_t<T> a = {m0 * c0, -m0 * s0}, bb = {m1 * c1, -m1 * s1};
      const vec2_t<T> x = cmul(a, d), y = cmul(bb, g);
      out[b * plane + p] = {x.x + y.x, x.y + y.y};
    }
  }
}

template <typename T>
__global__ void combine_backward_kernel(const vec2_t<T>* __restrict__ grad, const vec2_t<T>* __restrict__ vd,
                                        const vec2_t<T>* __restrict__ vg, const T* __restrict__ mag,
                                        const T* __restrict__ phase, vec2_t<T>* __restrict__ gvd,
                                        vec2_t<T>* __restrict__ gvg, T* __restrict__ gmag, T* __restrict__ gphase,
                                        int64_t planes, int64_t plane) {
  for (int64_t b = blockIdx.y; b < planes; b += gridDim.y) {
    const int64_t w = b * 2 * plane;
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < plane; p += (int64_t)blockDim.x * gridDim.x) {
      T s0, c0, s1, c1;
      sincos_any(phase[w + p], &s0, &c0);
      sincos_any(phase[w + plane + p], &s1, &c1);
      const T m0 = mag[w + p], m1 = mag[w + plane + p];
      const vec2_t<T> y = grad[b * plane + p], d = vd[b * plane + p], g = vg[b * plane + p];
      // grad_v = y·conj(a) with conj(a) = m·(c + j·s)
      const vec2_t<T> gd = cmul(y, vec2_t<T>{m0 * c0, m0 * s0});
      const vec2_t<T> gg = cmul(y, vec2_t<T>{m1 * c1, m1 * s1});
      gvd[b * plane + p] = gd;
      gvg[b * plane + p] = gg;
      // w = (c − j·s)·v; y·conj(w): grad_mag = Re, grad_phase = −m·Im
      const vec2_t<T> w0 = cmul(vec2_t<T>{c0, -s0}, d), w1 = cmul(vec2_t<T>{c1, -s1}, g);
      const vec2_t<T> q0 = cmul_conj(y, w0), q1 = cmul_conj(y, w1);
      gmag[w + p] = q0.x;
      gmag[w + plane + p] = q1.x;
      gphase[w + p] = -m0 * q0.y;
      gphase[w + plane + p] = -m1 * q1.y;
    }
  }
}

template <typename T>
__global__ void features_kernel(const vec2_t<T>* __restrict__ vd, const vec2_t<T>* __restrict__ vg,
                                T* __restrict__ mag, T* __restrict__ phase, int64_t planes, int64_t plane) {
  for (int64_t b = blockIdx.y; b < planes; b += gridDim.y) {
    const int64_t w = b * 2 * plane;
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < plane; p += (int64_t)blockDim.x * gridDim.x) {
      const vec2_t<T> d = vd[b * plane + p], g = vg[b * plane + p];
      const vec2_t<T> rel = cmul_conj(g, d);
      mag[w + p] = sqrt(d.x * d.x + d.y * d.y);
      mag[w + plane + p] = sqrt(g.x * g.x + g.y * g.y);
      phase[w + p] = atan2(d.y, d.x);
      phase[w + plane + p] = atan2(rel.y, rel.x);
    }
  }
}

dim3 plane_grid(int64_t planes, int64_t plane) {
  // Enough blocks in x to fill the device for one plane, planes along y. Both are capped below the device limits
  // (2^16 < maxGridDimX on every GPU, kMaxGridYZ for y) and the kernels loop over what the grid does not cover, so
  // no input size can ask for a grid the device refuses.
  return dim3(grid_for(plane, kThreads, 1 << 16), static_cast<unsigned>(planes < kMaxGridYZ ? planes : kMaxGridYZ));
}

}  // namespace

template <typename T>
LaunchStatus complex_combine(const T* vd, const T* vg, const T* mag, const T* phase, T* out, int64_t planes,
                            int64_t plane, cudaStream_t stream) {
  if (planes == 0 || plane == 0) return {};
  combine_forward_kernel<T><<<plane_grid(planes, plane), kThreads, 0, stream>>>(
      reinterpret_cast<const vec2_t<T>*>(vd), reinterpret_cast<const vec2_t<T>*>(vg), mag, phase,
      reinterpret_cast<vec2_t<T>*>(out), planes, plane);
  return launched();
}

template <typename T>
LaunchStatus complex_combine_backward(const T* grad, const T* vd, const T* vg, const T* mag, const T* phase, T* grad_vd,
                                     T* grad_vg, T* grad_mag, T* grad_phase, int64_t planes, int64_t plane,
                                     cudaStream_t stream) {
  if (planes == 0 || plane == 0) return {};
  using V = vec2_t<T>;
  combine_backward_kernel<T><<<plane_grid(planes, plane), kThreads, 0, stream>>>(
      reinterpret_cast<const V*>(grad), reinterpret_cast<const V*>(vd), reinterpret_cast<const V*>(vg), mag, phase,
      reinterpret_cast<V*>(grad_vd), reinterpret_cast<V*>(grad_vg), grad_mag, grad_phase, planes, plane);
  return launched();
}

template <typename T>
LaunchStatus combine_features(const T* vd, const T* vg, T* mag, T* phase, int64_t planes, int64_t plane,
                             cudaStream_t stream) {
  if (planes == 0 || plane == 0) return {};
  features_kernel<T><<<plane_grid(planes, plane), kThreads, 0, stream>>>(
      reinterpret_cast<const vec2_t<T>*>(vd), reinterpret_cast<const vec2_t<T>*>(vg), mag, phase, planes, plane);
  return launched();
}

#define FASTSEP_INSTANTIATE(T)                                                                                      \
  template LaunchStatus complex_combine<T>(const T*, const T*, const T*, const T*, T*, int64_t, int64_t,            \
                                          cudaStream_t);                                                           \
  template LaunchStatus complex_combine_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*,   \
                                                   T*, int64_t, int64_t, cudaStream_t);                            \
  template LaunchStatus combine_features<T>(const T*, const T*, T*, T*, int64_t, int64_t, cudaStream_t);
FASTSEP_INSTANTIATE(float)
FASTSEP_INSTANTIATE(double)
#undef FASTSEP_INSTANTIATE

}  // namespace cuda
}  // namespace fastsep
