// Small complex helpers over CUDA's vector types, shared by the .cu files.
#pragma once
#include <cuda_runtime.h>

namespace fastsep {
namespace cuda {

template <typename T>
struct Vec2;
template <>
struct Vec2<float> {
  using type = float2;
};
template <>
struct Vec2<double> {
  using type = double2;
};
template <typename T>
using vec2_t = typename Vec2<T>::type;

template <typename V>
__device__ __forceinline__ V cmul(V a, V b) {
  return {a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x};
}
template <typename V>
__device__ __forceinline__ V cmul_conj(V a, V b) {  // a·conj(b)
  return {a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y};
}

__device__ __forceinline__ void sincos_any(float x, float* s, float* c) { sincosf(x, s, c); }
__device__ __forceinline__ void sincos_any(double x, double* s, double* c) { sincos(x, s, c); }
// sin/cos of π·x, exact at multiples of 1/2.
__device__ __forceinline__ void sincospi_any(float x, float* s, float* c) { sincospif(x, s, c); }
__device__ __forceinline__ void sincospi_any(double x, double* s, double* c) { sincospi(x, s, c); }

inline unsigned grid_for(int64_t n, int threads, int64_t cap) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < cap ? blocks : cap);
}

}  // namespace cuda
}  // namespace fastsep
