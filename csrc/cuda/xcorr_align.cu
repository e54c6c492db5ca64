// CUDA kernel of xcorr_align. One block takes FR consecutive frames of one plane (so that its loads of the [F, K]
// layout are runs of FR neighbours), forms R = vd·conj(vg) in shared memory, computes the inverse real FFT of each
// frame packed into a complex FFT of n/2 points, finds the first argmax per frame with warp reductions, and writes
// vg times the phase ramp of the lag. Nothing is written but the outputs; the lag never leaves the device.
#include "cuda/complex.cuh"
#include "cuda/kernels.h"
#include "cuda/launch.cuh"

namespace fastsep {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxFrames = 8;
// The kernel's static shared array (shift[kMaxFrames]) comes out of the same 48 KiB as the dynamic buffer.
constexpr int64_t kStaticSmem = sizeof(int) * kMaxFrames;
constexpr int64_t kDynamicSmemBudget = kSharedMemoryBudget - kStaticSmem;

template <typename T>
int frames_per_block(int64_t n) {
  const int64_t m = n / 2;
  const int64_t room = kDynamicSmemBudget / static_cast<int64_t>(sizeof(vec2_t<T>)) - n;  // after the twiddle table
  int64_t fr = room / (2 * m + 1);
  return static_cast<int>(fr > kMaxFrames ? kMaxFrames : fr);
}

template <typename T>
__global__ void xcorr_kernel(const vec2_t<T>* __restrict__ vd, const vec2_t<T>* __restrict__ vg,
                             vec2_t<T>* __restrict__ out, int64_t* __restrict__ lag, int64_t n_freq, int64_t frames,
                             int n, int log2m, int fr, int64_t blocks_per_plane) {
  using V = vec2_t<T>;
  // Reinterpreted as float2/double2 below: declare the alignment the widest of them needs (16 bytes), which an
  // unsigned char array does not promise.
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int m = n / 2;
  V* tw = reinterpret_cast<V*>(smem_raw);  // exp(+j·2π·i/n), i < n
  V* X = tw + n;                           // fr half spectra of m + 1 bins
  V* Z = X + fr * (m + 1);                 // fr packed sequences of m points
  __shared__ int shift[kMaxFrames];  // counted in kStaticSmem

  const int64_t plane = blockIdx.x / blocks_per_plane;
  const int64_t k0 = (blockIdx.x % blocks_per_plane) * fr;
  const V* d = vd + plane * n_freq * frames;
  const V* g = vg + plane * n_freq * frames;
  const int tid = threadIdx.x;

  for (int i = tid; i < n; i += blockDim.x) {
    T s, c;
    sincospi_any(static_cast<T>(2 * i) / static_cast<T>(n), &s, &c);
    tw[i] = V{c, s};
  }
  for (int64_t idx = tid; idx < n_freq * fr; idx += blockDim.x) {
    const int64_t f = idx / fr;
    const int j = static_cast<int>(idx % fr);
    const int64_t k = k0 + j;
    X[j * (m + 1) + f] = k < frames ? cmul_conj(d[f * frames + k], g[f * frames + k]) : V{0, 0};
  }
  __syncthreads();

  // Z[k] = Xe[k] + j·Xo[k], stored bit-reversed for the in-place decimation-in-time passes below.
  for (int idx = tid; idx < fr * m; idx += blockDim.x) {
    const int j = idx / m, k = idx % m;
    const V* x = X + j * (m + 1);
    V a = x[k];
    V b = {x[m - k].x, -x[m - k].y};
    if (k == 0) {  // a c2r transform ignores the imaginary parts of DC and Nyquist
      a.y = 0;
      b = V{x[m].x, 0};
    }
    const V xe = {a.x + b.x, a.y + b.y};
    const V xo = cmul(V{a.x - b.x, a.y - b.y}, tw[k]);
    const int r = log2m > 0 ? static_cast<int>(__brev(static_cast<unsigned>(k)) >> (32 - log2m)) : 0;
    Z[j * m + r] = V{xe.x - xo.y, xe.y + xo.x};
  }
  __syncthreads();

  for (int len = 2; len <= m; len <<= 1) {
    const int half = len >> 1, stride = n / len;
    for (int idx = tid; idx < fr * (m / 2); idx += blockDim.x) {
      const int j = idx / (m / 2), q = idx % (m / 2);
      const int s = (q / half) * len, i = q % half;
      V* z = Z + j * m + s;
      const V u = z[i];
      const V v = cmul(z[i + half], tw[i * stride]);
      z[i] = V{u.x + v.x, u.y + v.y};
      z[i + half] = V{u.x - v.x, u.y - v.y};
    }
    __syncthreads();
  }

  // First argmax per frame: warp w takes frames w, w + warps, ...; x[2i] = Re z[i], x[2i + 1] = Im z[i].
  const int warp = tid / 32, lane = tid % 32, warps = blockDim.x / 32;
  for (int j = warp; j < fr; j += warps) {
    T best = -INFINITY;
    int best_at = n;
    for (int i = lane; i < m; i += 32) {
      const V z = Z[j * m + i];
      if (z.x > best) best = z.x, best_at = 2 * i;
      if (z.y > best) best = z.y, best_at = 2 * i + 1;
    }
    for (int off = 16; off > 0; off >>= 1) {
      const T other = __shfl_down_sync(0xffffffffu, best, off);
      const int other_at = __shfl_down_sync(0xffffffffu, best_at, off);
      if (other > best || (other == best && other_at < best_at)) best = other, best_at = other_at;
    }
    if (lane == 0) {
      if (best_at >= n) best_at = 0;  // all-NaN frame: no maximum, take lag 0
      const int signed_tau = best_at > n / 2 ? best_at - n : best_at;
      const int64_t k = k0 + j;
      if (k < frames) lag[plane * frames + k] = -signed_tau;
      shift[j] = ((-signed_tau) % n + n) % n;
    }
  }
  __syncthreads();

  V* o = out + plane * n_freq * frames;
  for (int64_t idx = tid; idx < n_freq * fr; idx += blockDim.x) {
    const int64_t f = idx / fr;
    const int j = static_cast<int>(idx % fr);
    const int64_t k = k0 + j;
    if (k < frames) o[f * frames + k] = cmul(g[f * frames + k], tw[(f * shift[j]) % n]);
  }
}

}  // namespace

template <typename T>
int64_t xcorr_max_n_fft() {
  int64_t n = 4;
  while (frames_per_block<T>(2 * n) >= 1) n *= 2;
  return n;
}

template <typename T>
LaunchStatus xcorr_align(const T* vd, const T* vg, T* out, int64_t* lag, int64_t planes, int64_t n_freq,
                         int64_t frames, int64_t n_fft, cudaStream_t stream) {
  if (planes == 0 || frames == 0) return {};
  if (n_fft < 4 || (n_fft & (n_fft - 1)) != 0 || n_fft != 2 * (n_freq - 1))
    return refuse("n_fft must be a power of two >= 4 equal to 2*(n_freq-1)", n_fft, 2 * (n_freq - 1));
  if (n_fft > xcorr_max_n_fft<T>()) return refuse("n_fft exceeds the kernel's limit", n_fft, xcorr_max_n_fft<T>());
  const int fr = frames_per_block<T>(n_fft);
  int log2m = 0;
  while ((int64_t(1) << log2m) < n_fft / 2) ++log2m;
  const int64_t per_plane = (frames + fr - 1) / fr;
  const size_t smem = sizeof(vec2_t<T>) * static_cast<size_t>(n_fft + fr * (n_fft + 1));
  // planes * per_plane cannot overflow int64 (both are element counts of an allocated tensor) but can exceed
  // gridDim.x, which an unsigned cast would wrap silently.
  LaunchStatus s = check_grid(planes * per_plane, 1);
  if (!s.ok()) return s;
  static std::atomic<int64_t> static_smem{-1};
  s = check_shared_memory(xcorr_kernel<T>, smem, static_smem);
  if (!s.ok()) return s;
  using V = vec2_t<T>;
  xcorr_kernel<T><<<static_cast<unsigned>(planes * per_plane), kThreads, smem, stream>>>(
      reinterpret_cast<const V*>(vd), reinterpret_cast<const V*>(vg), reinterpret_cast<V*>(out), lag, n_freq, frames,
      static_cast<int>(n_fft), log2m, fr, per_plane);
  return launched();
}

template int64_t xcorr_max_n_fft<float>();
template int64_t xcorr_max_n_fft<double>();
template LaunchStatus xcorr_align<float>(const float*, const float*, float*, int64_t*, int64_t, int64_t, int64_t,
                                         int64_t, cudaStream_t);
template LaunchStatus xcorr_align<double>(const double*, const double*, double*, int64_t*, int64_t, int64_t,
                                          int64_t, int64_t, cudaStream_t);

}  // namespace cuda
}  // namespace fastsep
