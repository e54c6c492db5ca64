// CUDA kernel of one DiffWave residual layer at inference, fully fused: a block owns a tile of kTile time steps of
// one batch item; it stages the three dilated taps of (x + step) in shared memory, computes the gated activation
// sigmoid(gate)·tanh(filter) of the dilated conv plus the precomputed conditioner, keeps it in shared memory, and
// applies the 1x1 output conv, writing (x + residual)/sqrt(2) and accumulating the skip. Nothing between the two
// convolutions touches global memory. Threads of a warp share an output channel and differ in time, so weight
// reads are warp-wide broadcasts and activation reads are conflict-free.
#include "cuda/kernels.h"
#include "cuda/launch.cuh"

namespace fastsep {
namespace cuda {
namespace {

constexpr int kTile = 32;  // time steps per block = warp size
constexpr int kThreads = 256;
// 4·C·kTile floats of dynamic shared memory (three taps and the gated tile); the kernel has no static shared arrays.
constexpr int64_t kSmemPerChannel = 4 * kTile * sizeof(float);
constexpr int64_t kMaxChannels = kSharedMemoryBudget / kSmemPerChannel;  // 96
static_assert(kMaxChannels == 96, "the documented CUDA channel limit changed: update ops.diffwave_stack's docstring");

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + __expf(-x)); }

__global__ void diffwave_layer_kernel(const float* __restrict__ x, const float* __restrict__ dstep,
                                      const float* __restrict__ cond, const float* __restrict__ w_dil,
                                      const float* __restrict__ b_dil, const float* __restrict__ w_out,
                                      const float* __restrict__ b_out, int C, int64_t T, int64_t dilation,
                                      float* __restrict__ x_next, float* __restrict__ skip, bool accumulate) {
  extern __shared__ float smem[];
  float* taps = smem;                  // [3][C][kTile]: y at t − d, t, t + d (zero outside [0, T), as conv padding)
  float* gated = smem + 3 * C * kTile;  // [C][kTile]
  const int64_t b = blockIdx.y;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const float* xb = x + b * C * T;
  const float* sb = dstep + b * C;

  for (int idx = threadIdx.x; idx < 3 * C * kTile; idx += blockDim.x) {
    const int tap = idx / (C * kTile), rest = idx % (C * kTile);
    const int c = rest / kTile, tt = rest % kTile;
    const int64_t t = t0 + tt + (tap - 1) * dilation;
    taps[idx] = (t >= 0 && t < T) ? xb[c * T + t] + sb[c] : 0.0f;
  }
  __syncthreads();

  for (int idx = threadIdx.x; idx < C * kTile; idx += blockDim.x) {
    const int c = idx / kTile, tt = idx % kTile;
    const int64_t t = t0 + tt;
    float acc_g = b_dil[c], acc_f = b_dil[C + c];
    const float* wg = w_dil + c * C * 3;
    const float* wf = w_dil + (C + c) * C * 3;
    for (int ci = 0; ci < C; ++ci) {
#pragma unroll
      for (int tap = 0; tap < 3; ++tap) {
        const float v = taps[(tap * C + ci) * kTile + tt];
        acc_g = fmaf(wg[ci * 3 + tap], v, acc_g);
        acc_f = fmaf(wf[ci * 3 + tap], v, acc_f);
      }
    }
    if (cond != nullptr && t < T) {
      acc_g += cond[(b * 2 * C + c) * T + t];
      acc_f += cond[(b * 2 * C + C + c) * T + t];
    }
    gated[idx] = sigmoidf(acc_g) * tanhf(acc_f);
  }
  __syncthreads();

  for (int idx = threadIdx.x; idx < C * kTile; idx += blockDim.x) {
    const int c = idx / kTile, tt = idx % kTile;
    const int64_t t = t0 + tt;
    if (t >= T) continue;
    float acc_r = b_out[c], acc_s = b_out[C + c];
    const float* wr = w_out + c * C;
    const float* ws = w_out + (C + c) * C;
    for (int ci = 0; ci < C; ++ci) {
      const float v = gated[ci * kTile + tt];
      acc_r = fmaf(wr[ci], v, acc_r);
      acc_s = fmaf(ws[ci], v, acc_s);
    }
    const int64_t at = (b * C + c) * T + t;
    x_next[at] = (xb[c * T + t] + acc_r) * 0.70710678118654752f;
    skip[at] = accumulate ? skip[at] + acc_s : acc_s;
  }
}

}  // namespace

int64_t diffwave_max_channels() { return kMaxChannels; }
int64_t diffwave_max_batch() { return kMaxGridYZ; }

LaunchStatus diffwave_layer(const float* x, const float* dstep, const float* cond, const float* w_dil,
                           const float* b_dil, const float* w_out, const float* b_out, int64_t batch, int64_t channels,
                           int64_t length, int64_t dilation, float* x_next, float* skip, bool accumulate,
                           cudaStream_t stream) {
  if (batch == 0 || length == 0 || channels == 0) return {};
  if (channels > kMaxChannels) return refuse("residual channels exceed the kernel's limit", channels, kMaxChannels);
  if (dilation < 1) return refuse("dilation must be >= 1", dilation, 1);
  const int64_t tiles = (length + kTile - 1) / kTile;
  LaunchStatus s = check_grid(tiles, batch);
  if (!s.ok()) return s;
  const size_t smem = static_cast<size_t>(kSmemPerChannel * channels);
  static std::atomic<int64_t> static_smem{-1};
  s = check_shared_memory(diffwave_layer_kernel, smem, static_smem);
  if (!s.ok()) return s;
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(batch));
  diffwave_layer_kernel<<<grid, kThreads, smem, stream>>>(x, dstep, cond, w_dil, b_dil, w_out, b_out,
                                                          static_cast<int>(channels), length, dilation, x_next, skip,
                                                          accumulate);
  return launched();
}

}  // namespace cuda
}  // namespace fastsep
