// CPU kernel of xcorr_align: per frame, the circular cross-correlation irfft(vd·conj(vg)) by a real inverse FFT
// (packed into a complex FFT of n/2 points), its first argmax, and vg times the phase ramp of that lag, in one pass.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "cpu/common.h"

namespace fastsep {
namespace {

constexpr int64_t kFramesPerTask = 8;  // consecutive frames share cache lines of the [F, K] layout

template <typename T>
struct RealIfftPlan {
  int64_t n, m;
  std::vector<c10::complex<T>> twiddle;  // exp(+j·2π·i/n), i < n
  std::vector<int64_t> bitrev;           // bit reversal permutation of m points

  explicit RealIfftPlan(int64_t n_fft) : n(n_fft), m(n_fft / 2), twiddle(n_fft), bitrev(n_fft / 2) {
    for (int64_t i = 0; i < n; ++i) {
      const double a = 2.0 * M_PI * static_cast<double>(i) / static_cast<double>(n);
      twiddle[i] = c10::complex<T>(static_cast<T>(std::cos(a)), static_cast<T>(std::sin(a)));
    }
    int64_t bits = 0;
    while ((int64_t(1) << bits) < m) ++bits;
    for (int64_t i = 0; i < m; ++i) {
      int64_t r = 0;
      for (int64_t b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
      bitrev[i] = r;
    }
  }

  // Returns argmax over t of the (unnormalised) inverse real FFT of the half spectrum x[0..m]; the first on ties.
  // z is scratch of m points. The imaginary parts of x[0] and x[m] are ignored, as a c2r transform does.
  int64_t argmax_irfft(const c10::complex<T>* x, c10::complex<T>* z) const {
    using C = c10::complex<T>;
    // z_even + j·z_odd packing: Z[k] = Xe[k] + j·Xo[k], Xe = X[k] + conj(X[m−k]), Xo = (X[k] − conj(X[m−k]))·e^{j2πk/n}
    for (int64_t k = 0; k < m; ++k) {
      C a = x[k];
      C b = std::conj(x[m - k]);
      if (k == 0) {
        a = C(a.real(), 0);
        b = C(x[m].real(), 0);
      }
      const C xe = a + b;
      const C xo = (a - b) * twiddle[k];
      z[bitrev[k]] = C(xe.real() - xo.imag(), xe.imag() + xo.real());
    }
    for (int64_t len = 2; len <= m; len <<= 1) {
      const int64_t half = len / 2, stride = n / len;
      for (int64_t s = 0; s < m; s += len) {
        for (int64_t i = 0; i < half; ++i) {
          const C w = twiddle[i * stride];
          const C u = z[s + i];
          const C v = z[s + i + half] * w;
          z[s + i] = u + v;
          z[s + i + half] = u - v;
        }
      }
    }
    int64_t best = 0;
    T best_val = z[0].real();
    for (int64_t i = 0; i < m; ++i) {
      if (z[i].real() > best_val) best_val = z[i].real(), best = 2 * i;
      if (z[i].imag() > best_val) best_val = z[i].imag(), best = 2 * i + 1;
    }
    return best;
  }
};

template <typename T>
void xcorr_kernel(const c10::complex<T>* vd, const c10::complex<T>* vg, c10::complex<T>* out, int64_t* lag,
                  int64_t planes, int64_t n_freq, int64_t frames, int64_t n_fft) {
  using C = c10::complex<T>;
  const RealIfftPlan<T> plan(n_fft);
  const int64_t blocks = (frames + kFramesPerTask - 1) / kFramesPerTask;
  at::parallel_for(0, planes * blocks, 1, [&](int64_t lo, int64_t hi) {
    std::vector<C> spectrum(kFramesPerTask * n_freq), scratch(plan.m);
    int64_t shift[kFramesPerTask];
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t b = task / blocks, k0 = (task % blocks) * kFramesPerTask;
      const int64_t kb = std::min(kFramesPerTask, frames - k0);
      const C* d = vd + b * n_freq * frames;
      const C* g = vg + b * n_freq * frames;
      for (int64_t f = 0; f < n_freq; ++f)
        for (int64_t j = 0; j < kb; ++j) spectrum[j * n_freq + f] = d[f * frames + k0 + j] * std::conj(g[f * frames + k0 + j]);
      for (int64_t j = 0; j < kb; ++j) {
        const int64_t tau = plan.argmax_irfft(&spectrum[j * n_freq], scratch.data());
        const int64_t signed_tau = tau > n_fft / 2 ? tau - n_fft : tau;
        lag[b * frames + k0 + j] = -signed_tau;
        shift[j] = (-signed_tau % n_fft + n_fft) % n_fft;  // ramp index step, in [0, n)
      }
      C* o = out + b * n_freq * frames;
      int64_t idx[kFramesPerTask] = {0};
      for (int64_t f = 0; f < n_freq; ++f) {
        for (int64_t j = 0; j < kb; ++j) {
          const int64_t at = f * frames + k0 + j;
          o[at] = g[at] * plan.twiddle[idx[j]];
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
