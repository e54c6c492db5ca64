// CPU kernel of xcorr_align: per frame, the circular cross-correlation irfft(vd·conj(vg)) by a real inverse FFT
// (packed into a complex FFT of n/2 points), its first argmax, and vg times the phase ramp of that lag, in one pass.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "cpu/common.h"

namespace fastsep {
namespace {

// A task takes kLanes consecutive frames of one plane. They sit side by side in memory in the [F, K] layout, and
// their FFTs run in lock step: every array below is [point][lane] (real and imaginary parts apart), so each butterfly
// is one SIMD operation across the frames.
constexpr int64_t kLanes = 8;

template <typename T>
struct RealIfftPlan {
  int64_t n, m;
  std::vector<T> cos_, sin_;    // exp(+j·2π·i/n), i < n
  std::vector<int64_t> bitrev;  // bit reversal permutation of m points

  explicit RealIfftPlan(int64_t n_fft) : n(n_fft), m(n_fft / 2), cos_(n_fft), sin_(n_fft), bitrev(n_fft / 2) {
    for (int64_t i = 0; i < n; ++i) {
      const double a = 2.0 * M_PI * static_cast<double>(i) / static_cast<double>(n);
      cos_[i] = static_cast<T>(std::cos(a));
      sin_[i] = static_cast<T>(std::sin(a));
    }
    int64_t bits = 0;
    while ((int64_t(1) << bits) < m) ++bits;
    for (int64_t i = 0; i < m; ++i) {
      int64_t r = 0;
      for (int64_t b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
      bitrev[i] = r;
    }
  }
};

// Scratch of one task: the half spectra X [m + 1][kLanes] and the packed sequences Z [m][kLanes].
template <typename T>
struct Lanes {
  std::vector<T> xr, xi, zr, zi;
  explicit Lanes(int64_t m) : xr((m + 1) * kLanes), xi((m + 1) * kLanes), zr(m * kLanes), zi(m * kLanes) {}
};

// First argmax over t of the unnormalised inverse real FFT of each lane's half spectrum X[0..m]. The imaginary parts
// of X[0] and X[m] are ignored, as a c2r transform does.
template <typename T>
void argmax_irfft(const RealIfftPlan<T>& plan, Lanes<T>& s, int64_t* best) {
  const int64_t m = plan.m, n = plan.n;
  T *xr = s.xr.data(), *xi = s.xi.data(), *zr = s.zr.data(), *zi = s.zi.data();
  // z_even + j·z_odd packing: Z[k] = Xe[k] + j·Xo[k], Xe = X[k] + conj(X[m−k]), Xo = (X[k] − conj(X[m−k]))·e^{j2πk/n}
  for (int64_t k = 0; k < m; ++k) {
    const T c = plan.cos_[k], sn = plan.sin_[k];
    const int64_t at = plan.bitrev[k] * kLanes, lo = k * kLanes, hi = (m - k) * kLanes;
    const bool edge = k == 0;
#pragma omp simd
    for (int64_t j = 0; j < kLanes; ++j) {
      const T ar = xr[lo + j], ai = edge ? T(0) : xi[lo + j];
      const T br = xr[hi + j], bi = edge ? T(0) : -xi[hi + j];
      const T er = ar + br, ei = ai + bi;
      const T dr = ar - br, di = ai - bi;
      const T or_ = dr * c - di * sn, oi = dr * sn + di * c;
      zr[at + j] = er - oi;
      zi[at + j] = ei + or_;
    }
  }
  for (int64_t len = 2; len <= m; len <<= 1) {
    const int64_t half = len / 2, stride = n / len;
    for (int64_t start = 0; start < m; start += len) {
      for (int64_t i = 0; i < half; ++i) {
        const T c = plan.cos_[i * stride], sn = plan.sin_[i * stride];
        const int64_t u = (start + i) * kLanes, v = (start + i + half) * kLanes;
#pragma omp simd
        for (int64_t j = 0; j < kLanes; ++j) {
          const T vr = zr[v + j] * c - zi[v + j] * sn, vi = zr[v + j] * sn + zi[v + j] * c;
          const T ur = zr[u + j], ui = zi[u + j];
          zr[u + j] = ur + vr;
          zi[u + j] = ui + vi;
          zr[v + j] = ur - vr;
          zi[v + j] = ui - vi;
        }
      }
    }
  }
  T top[kLanes];
  int64_t arg[kLanes];
#pragma omp simd
  for (int64_t j = 0; j < kLanes; ++j) top[j] = zr[j], arg[j] = 0;
  for (int64_t i = 0; i < m; ++i) {
#pragma omp simd
    for (int64_t j = 0; j < kLanes; ++j) {
      const T re = zr[i * kLanes + j], im = zi[i * kLanes + j];
      // x[2i] = Re z[i], x[2i + 1] = Im z[i]; strict > keeps the first maximum
      const bool take_re = re > top[j];
      top[j] = take_re ? re : top[j];
      arg[j] = take_re ? 2 * i : arg[j];
      const bool take_im = im > top[j];
      top[j] = take_im ? im : top[j];
      arg[j] = take_im ? 2 * i + 1 : arg[j];
    }
  }
  for (int64_t j = 0; j < kLanes; ++j) best[j] = arg[j];
}

template <typename T>
void xcorr_kernel(const c10::complex<T>* vd, const c10::complex<T>* vg, c10::complex<T>* out, int64_t* lag,
                  int64_t planes, int64_t n_freq, int64_t frames, int64_t n_fft) {
  using C = c10::complex<T>;
  const RealIfftPlan<T> plan(n_fft);
  const int64_t blocks = (frames + kLanes - 1) / kLanes;
  at::parallel_for(0, planes * blocks, 1, [&](int64_t lo, int64_t hi) {
    Lanes<T> s(plan.m);
    int64_t tau[kLanes], shift[kLanes];
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t b = task / blocks, k0 = (task % blocks) * kLanes;
      const int64_t kb = std::min(kLanes, frames - k0);
      const T* d = reinterpret_cast<const T*>(vd + b * n_freq * frames);
      const T* g = reinterpret_cast<const T*>(vg + b * n_freq * frames);
      for (int64_t f = 0; f < n_freq; ++f) {
        const int64_t row = 2 * (f * frames + k0);
        for (int64_t j = 0; j < kb; ++j) {  // X = vd·conj(vg)
          const T dr = d[row + 2 * j], di = d[row + 2 * j + 1], gr = g[row + 2 * j], gi = g[row + 2 * j + 1];
          s.xr[f * kLanes + j] = dr * gr + di * gi;
          s.xi[f * kLanes + j] = di * gr - dr * gi;
        }
        for (int64_t j = kb; j < kLanes; ++j) s.xr[f * kLanes + j] = s.xi[f * kLanes + j] = T(0);
      }
      argmax_irfft(plan, s, tau);
      for (int64_t j = 0; j < kb; ++j) {
        const int64_t signed_tau = tau[j] > n_fft / 2 ? tau[j] - n_fft : tau[j];
        lag[b * frames + k0 + j] = -signed_tau;
        shift[j] = (-signed_tau % n_fft + n_fft) % n_fft;  // ramp index step, in [0, n)
      }
      C* o = out + b * n_freq * frames;
      const C* gc = vg + b * n_freq * frames;
      int64_t idx[kLanes] = {0};
      for (int64_t f = 0; f < n_freq; ++f) {
        for (int64_t j = 0; j < kb; ++j) {
          const int64_t at = f * frames + k0 + j;
          o[at] = gc[at] * C(plan.cos_[idx[j]], plan.sin_[idx[j]]);
          idx[j] += shift[j];
          if (idx[j] >= n_fft) idx[j] -= n_fft;
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> xcorr_align_cpu(const at::Tensor& vd, const at::Tensor& vg, int64_t n_fft) {
  check_spectra_pair(vd, vg, "xcorr_align");
  const int64_t n_freq = vd.size(-2), frames = vd.size(-1);
  TORCH_CHECK(n_fft >= 4 && (n_fft & (n_fft - 1)) == 0 && n_fft == 2 * (n_freq - 1), "xcorr_align: the kernel needs ",
              "n_fft = 2·(F−1) and a power of two, got n_fft=", n_fft, " for F=", n_freq);
  auto out = at::empty_like(vg);
  std::vector<int64_t> lag_shape(vd.sizes().begin(), vd.sizes().end() - 2);
  lag_shape.push_back(frames);
  auto lag = at::empty(lag_shape, vd.options().dtype(at::kLong));
  if (vd.numel() == 0) return {out, lag};
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(vd.scalar_type()), "xcorr_align_cpu", [&] {
    using C = c10::complex<scalar_t>;
    xcorr_kernel<scalar_t>(vd.data_ptr<C>(), vg.data_ptr<C>(), out.data_ptr<C>(), lag.data_ptr<int64_t>(),
                           plane_count(vd), n_freq, frames, n_fft);
  });
  return {out, lag};
}

}  // namespace
}  // namespace fastsep

TORCH_LIBRARY_IMPL(fastsep, CPU, m) { m.impl("xcorr_align", &fastsep::xcorr_align_cpu); }
