// CUDA kernels of the samplers' per-step updates (the twins of csrc/cpu/sampler_updates.cpp). Memory-bound passes:
// each input read once, the output written once.
//
// mix_sde_update: one thread per (item, sample); it sums the K sources of its sample, then writes the K outputs
// (the second read of a source hits the cache). Adjacent threads take adjacent samples, so every access coalesces.
//
// guided_update: the per-row norm of the gradient needs a reduction over the row first. Launch 1 writes, for each
// row, kNormBlocks partial sums of squares (double); launch 2 adds a row's partials in a fixed order and applies the
// update. No atomics, so the result is the same on every run.
#include "cuda/complex.cuh"
#include "cuda/kernels.h"
#include "cuda/launch.cuh"

namespace fastsep {
namespace cuda {
namespace {

constexpr int kThreads = 256;
// Blocks per row of the norm's first pass: enough to spread one long row over many SMs, few enough that launch 2
// adds them in a moment. Fixed (not read from the device) so that results do not depend on the GPU.
constexpr int64_t kMaxNormBlocks = 32;

int64_t norm_blocks(int64_t length) {
  const int64_t want = (length + kThreads - 1) / kThreads;
  return want < 1 ? 1 : (want < kMaxNormBlocks ? want : kMaxNormBlocks);
}

template <typename T>
__global__ void mix_sde_kernel(const T* __restrict__ x, const T* __restrict__ s, const T* __restrict__ z,
                               T* __restrict__ out, int64_t batch, int64_t k, int64_t length, T a_q, T b_q, T c_q,
                               T da, T db, T dc, T inv_k) {
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const int64_t base = b * k * length;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < length; i += (int64_t)blockDim.x * gridDim.x) {
      T sx = 0, ss = 0, sz = 0;
      for (int64_t r = 0; r < k; ++r) {
        const int64_t at = base + r * length + i;
        sx += x[at];
        ss += s[at];
        if (z != nullptr) sz += z[at];
      }
      // a_p·m(x) + a_q·(x − m(x)) = a_q·x + (a_p − a_q)·m(x), likewise for s and z: the bracket is shared by the K
      // outputs of this sample.
      const T shared = (da * sx + db * ss + dc * sz) * inv_k;
      for (int64_t r = 0; r < k; ++r) {
        const int64_t at = base + r * length + i;
        T v = a_q * x[at] + b_q * s[at] + shared;
        if (z != nullptr) v += c_q * z[at];
        out[at] = v;
      }
    }
  }
}

template <typename T>
__global__ void norm_partials_kernel(const T* __restrict__ g, double* __restrict__ partial, int64_t rows,
                                     int64_t length, int64_t blocks_per_row) {
  __shared__ double red[kThreads];
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const T* gr = g + row * length;
    double acc = 0.0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < length; i += (int64_t)blockDim.x * gridDim.x) {
      const double v = static_cast<double>(gr[i]);
      acc += v * v;
    }
    red[threadIdx.x] = acc;
    __syncthreads();
    for (int width = kThreads / 2; width > 0; width /= 2) {
      if (threadIdx.x < width) red[threadIdx.x] += red[threadIdx.x + width];
      __syncthreads();
    }
    if (threadIdx.x == 0) partial[row * blocks_per_row + blockIdx.x] = red[0];
    __syncthreads();  // red is reused by the next row
  }
}

template <typename T>
__global__ void guided_kernel(const T* __restrict__ x0, const T* __restrict__ x, const T* __restrict__ g,
                              const T* __restrict__ z, T* __restrict__ out, int64_t rows, int64_t length, T coef_x0,
                              T coef_xt, T noise_std, double radius, const double* __restrict__ partial,
                              int64_t blocks_per_row, double eps) {
  __shared__ T factor;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    if (threadIdx.x == 0) {
      double f = radius;
      if (partial != nullptr) {
        double sum = 0.0;
        for (int64_t c = 0; c < blocks_per_row; ++c) sum += partial[row * blocks_per_row + c];
        const double norm = sqrt(sum);
        f = radius / (norm > eps ? norm : eps);
      }
      factor = static_cast<T>(f);
    }
    __syncthreads();
    const T f = factor;
    const int64_t off = row * length;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < length; i += (int64_t)blockDim.x * gridDim.x) {
      T v = coef_x0 * x0[off + i] + coef_xt * x[off + i] - f * g[off + i];
      if (z != nullptr) v += noise_std * z[off + i];
      out[off + i] = v;
    }
    __syncthreads();  // factor is rewritten for the next row
  }
}

dim3 row_grid(int64_t rows, int64_t length) {
  // Blocks along the samples (capped below every device's maxGridDimX; the kernels loop over the rest), rows along y
  // (capped at 65535; the kernels loop over the rest).
  return dim3(grid_for(length, kThreads, 1 << 16), static_cast<unsigned>(rows < kMaxGridYZ ? rows : kMaxGridYZ));
}

}  // namespace

int64_t guided_update_scratch(int64_t rows, int64_t length) { return rows * norm_blocks(length); }

template <typename T>
LaunchStatus mix_sde_update(const T* x, const T* score, const T* noise, T* out, int64_t batch, int64_t k,
                           int64_t length, T a_p, T a_q, T b_p, T b_q, T c_p, T c_q, cudaStream_t stream) {
  if (batch == 0 || k == 0 || length == 0) return {};
  const T dc = noise != nullptr ? c_p - c_q : T(0);
  mix_sde_kernel<T><<<row_grid(batch, length), kThreads, 0, stream>>>(
      x, score, noise, out, batch, k, length, a_q, b_q, c_q, a_p - a_q, b_p - b_q, dc, T(1) / static_cast<T>(k));
  return launched();
}

template <typename T>
LaunchStatus guided_update(const T* x0, const T* x, const T* grad, const T* noise, T* out, int64_t rows,
                          int64_t length, T coef_x0, T coef_xt, T noise_std, double radius, bool normalise,
                          double eps, double* scratch, cudaStream_t stream) {
  if (rows == 0 || length == 0) return {};
  const int64_t per_row = norm_blocks(length);
  if (normalise) {
    const dim3 grid(static_cast<unsigned>(per_row), static_cast<unsigned>(rows < kMaxGridYZ ? rows : kMaxGridYZ));
    norm_partials_kernel<T><<<grid, kThreads, 0, stream>>>(grad, scratch, rows, length, per_row);
    const LaunchStatus first = launched();
    if (!first.ok()) return first;
  }
  guided_kernel<T><<<row_grid(rows, length), kThreads, 0, stream>>>(x0, x, grad, noise, out, rows, length, coef_x0,
                                                                     coef_xt, noise_std, radius,
                                                                     normalise ? scratch : nullptr, per_row, eps);
  return launched();
}

#define FASTSEP_INSTANTIATE(T)                                                                                      \
  template LaunchStatus mix_sde_update<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t, T, T, T, T, \
                                         T, T, cudaStream_t);                                                      \
  template LaunchStatus guided_update<T>(const T*, const T*, const T*, const T*, T*, int64_t, int64_t, T, T, T,    \
                                        double, bool, double, double*, cudaStream_t);
FASTSEP_INSTANTIATE(float)
FASTSEP_INSTANTIATE(double)
#undef FASTSEP_INSTANTIATE

}  // namespace cuda
}  // namespace fastsep
