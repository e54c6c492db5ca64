// Launchers of fastsep's CUDA kernels. Torch-free on purpose: raw pointers and a cudaStream_t only, so that nvcc
// compiles every .cu file on machines whose torch has no CUDA headers (and CI catches a kernel that does not build).
// Complex arrays are interleaved (re, im) pairs of T. Each launcher returns a LaunchStatus: the launch's own error
// (read right after the launch; the caller makes sure no earlier error is pending), or the limit that kept it from
// launching at all.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace fastsep {
namespace cuda {

struct LaunchStatus {
  cudaError_t error = cudaSuccess;
  // Set when the launcher refused before launching: which limit, the value asked for and the limit (for messages).
  const char* refused = nullptr;
  int64_t value = 0;
  int64_t limit = 0;
  bool ok() const { return error == cudaSuccess; }
};

// The shared memory a block may use without opting in to more (cudaFuncAttributeMaxDynamicSharedMemorySize), on
// every architecture fastsep builds for: static and dynamic shared memory together.
constexpr int64_t kSharedMemoryBudget = 48 * 1024;
// gridDim.y and gridDim.z can be at most 65535 on every compute capability; gridDim.x is read from the device.
constexpr int64_t kMaxGridYZ = 65535;

// out = mag0·exp(-j·phase0)·vd + mag1·exp(-j·phase1)·vg over `planes` planes of `plane` = F·K points;
// mag/phase hold 2 planes per output plane.
template <typename T>
LaunchStatus complex_combine(const T* vd, const T* vg, const T* mag, const T* phase, T* out, int64_t planes,
                            int64_t plane, cudaStream_t stream);

template <typename T>
LaunchStatus complex_combine_backward(const T* grad, const T* vd, const T* vg, const T* mag, const T* phase, T* grad_vd,
                                     T* grad_vg, T* grad_mag, T* grad_phase, int64_t planes, int64_t plane,
                                     cudaStream_t stream);

template <typename T>
LaunchStatus combine_features(const T* vd, const T* vg, T* mag, T* phase, int64_t planes, int64_t plane,
                             cudaStream_t stream);

// Largest n_fft the xcorr kernel takes for T (its shared-memory budget, static arrays included); larger ones go to
// the reference. Python reads it through the op fastsep::cuda_limit, never restates it.
template <typename T>
int64_t xcorr_max_n_fft();

// vd, vg, out: [planes, n_freq, frames] complex; lag: [planes, frames]. n_fft = 2·(n_freq−1), a power of two.
template <typename T>
LaunchStatus xcorr_align(const T* vd, const T* vg, T* out, int64_t* lag, int64_t planes, int64_t n_freq,
                        int64_t frames, int64_t n_fft, cudaStream_t stream);

// Largest residual_channels the fused DiffWave layer kernel takes (its shared-memory tile), and the largest batch
// (batch items run along gridDim.y). Python reads both through fastsep::cuda_limit.
int64_t diffwave_max_channels();
int64_t diffwave_max_batch();

// One fused DiffWave residual layer, float32: x, x_next, skip [B, C, T]; dstep [B, C]; cond [B, 2C, T] or null;
// w_dil [2C, C, 3]; b_dil, b_out [2C]; w_out [2C, C]. skip is overwritten, or added to when accumulate is true.
LaunchStatus diffwave_layer(const float* x, const float* dstep, const float* cond, const float* w_dil,
                           const float* b_dil, const float* w_out, const float* b_out, int64_t batch, int64_t channels,
                           int64_t length, int64_t dilation, float* x_next, float* skip, bool accumulate,
                           cudaStream_t stream);

// DiffSep's predictor / corrector step, T = float or double: x, score, noise (null: no noise terms), out
// [batch, k, length]; out = a_p·m(x) + a_q·(x − m(x)) + b_p·m(s) + b_q·(s − m(s)) + c_p·m(z) + c_q·(z − m(z)), m the
// average over the k sources of a sample.
template <typename T>
LaunchStatus mix_sde_update(const T* x, const T* score, const T* noise, T* out, int64_t batch, int64_t k,
                           int64_t length, T a_p, T a_q, T b_p, T b_q, T c_p, T c_q, cudaStream_t stream);

// Doubles of scratch memory guided_update needs for `rows` rows of `length` samples (the caller allocates it).
int64_t guided_update_scratch(int64_t rows, int64_t length);

// The prior-guided solver's step over `rows` rows of `length` samples: out = coef_x0·x0 + coef_xt·x + noise_std·z −
// f·g with f = radius / max(||g_row||, eps) when normalise, radius otherwise; noise null: no noise term. Two
// launches when normalise (the row norms' partial sums into `scratch`, then the update); deterministic.
template <typename T>
LaunchStatus guided_update(const T* x0, const T* x, const T* grad, const T* noise, T* out, int64_t rows,
                          int64_t length, T coef_x0, T coef_xt, T noise_std, double radius, bool normalise,
                          double eps, double* scratch, cudaStream_t stream);

}  // namespace cuda
}  // namespace fastsep
