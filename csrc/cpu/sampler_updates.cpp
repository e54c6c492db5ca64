// CPU kernels of the samplers' per-step updates (fastsep/sampling/diffsep.py and priors.py): one read of each input,
// one write of the output, instead of the five to ten elementwise passes of the eager code.
//
// mix_sde_update (DiffSep's predictor and corrector steps): x, score, noise [B, K, T]. Every operator of the mixing
// SDE is a combination of P (the average over the K sources) and Pbar = I - P, so with m(v) the source average of v:
//   out = a_p·m(x) + a_q·(x − m(x)) + b_p·m(s) + b_q·(s − m(s)) + c_p·m(z) + c_q·(z − m(z)).
// The kernel takes a tile of samples of one item, sums the K rows of the tile (in L1), then writes the K outputs.
//
// guided_update (the prior-guided solver's step): x0, x, grad, noise [B, C, T]; per row (item, source):
//   out = coef_x0·x0 + coef_xt·x + noise_std·z − radius·g / max(||g||, eps)   (normalise)
//   out = coef_x0·x0 + coef_xt·x + noise_std·z − radius·g                     (otherwise: DPS)
// ||g|| is summed in double over fixed chunks whose partial sums are added in order, so the result does not depend
// on the number of threads.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "cpu/common.h"

namespace fastsep {
namespace {

// Samples per tile of mix_sde_update: the K rows of x, s and z of a tile (3·20·256·8 B = 120 KiB at worst, 12 KiB
// for K = 2 in float32) stay in L1/L2 between the sums and the write.
constexpr int64_t kTile = 256;
// Fixed chunk of the guided norm's partial sums (independent of the thread count: deterministic results).
constexpr int64_t kNormChunk = 4096;

void check_update_tensor(const at::Tensor& t, const at::Tensor& like, const char* name, const char* op) {
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " must be on ", like.device(), ", got ", t.device());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), op, ": ", name, " must be ", like.scalar_type(), ", got ",
              t.scalar_type());
  TORCH_CHECK(t.sizes() == like.sizes(), op, ": ", name, " must have shape ", like.sizes(), ", got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

void check_first(const at::Tensor& x, const char* name, const char* op) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(x.dim() == 3, op, ": ", name, " must be [batch, sources, time], got ", x.sizes());
  TORCH_CHECK(x.is_contiguous(), op, ": ", name, " must be contiguous");
}

template <typename T>
void mix_sde_kernel(const T* x, const T* s, const T* z, T* out, int64_t batch, int64_t k, int64_t length, T a_p,
                    T a_q, T b_p, T b_q, T c_p, T c_q) {
  const int64_t tiles = (length + kTile - 1) / kTile;
  const T inv_k = T(1) / static_cast<T>(k);
  // The average term of each input: a_p·m(x) + a_q·(x − m(x)) = a_q·x + (a_p − a_q)·m(x), so one output is
  // a_q·x + b_q·s + c_q·z + [(a_p − a_q)·m(x) + (b_p − b_q)·m(s) + (c_p − c_q)·m(z)], the bracket shared by the K
  // sources of a sample.
  const T da = a_p - a_q, db = b_p - b_q, dc = c_p - c_q;
  at::parallel_for(0, batch * tiles, 1, [&](int64_t lo, int64_t hi) {
    T shared[kTile];
    for (int64_t job = lo; job < hi; ++job) {
      const int64_t b = job / tiles;
      const int64_t t0 = (job - b * tiles) * kTile;
      const int64_t n = std::min(kTile, length - t0);
      const int64_t base = b * k * length + t0;
      T sx[kTile], ss[kTile], sz[kTile];
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) sx[i] = ss[i] = sz[i] = T(0);
      for (int64_t r = 0; r < k; ++r) {
        const T* xr = x + base + r * length;
        const T* sr = s + base + r * length;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) {
          sx[i] += xr[i];
          ss[i] += sr[i];
        }
        if (z != nullptr) {
          const T* zr = z + base + r * length;
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) sz[i] += zr[i];
        }
      }
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) shared[i] = (da * sx[i] + db * ss[i] + dc * sz[i]) * inv_k;
      for (int64_t r = 0; r < k; ++r) {
        const T* xr = x + base + r * length;
        const T* sr = s + base + r * length;
        T* o = out + base + r * length;
        if (z != nullptr) {
          const T* zr = z + base + r * length;
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) o[i] = a_q * xr[i] + b_q * sr[i] + c_q * zr[i] + shared[i];
        } else {
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) o[i] = a_q * xr[i] + b_q * sr[i] + shared[i];
        }
      }
    }
  });
}

at::Tensor mix_sde_update_cpu(const at::Tensor& x, const at::Tensor& score, const std::optional<at::Tensor>& noise,
                              double a_p, double a_q, double b_p, double b_q, double c_p, double c_q) {
  const char* op = "mix_sde_update";
  check_first(x, "x", op);
  check_update_tensor(score, x, "score", op);
  const bool has_noise = noise.has_value() && noise->defined();
  if (has_noise) check_update_tensor(*noise, x, "noise", op);
  auto out = at::empty_like(x);
  if (x.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mix_sde_update_cpu", [&] {
    using T = scalar_t;
    mix_sde_kernel<T>(x.data_ptr<T>(), score.data_ptr<T>(), has_noise ? noise->data_ptr<T>() : nullptr,
                      out.data_ptr<T>(), x.size(0), x.size(1), x.size(2), static_cast<T>(a_p), static_cast<T>(a_q),
                      static_cast<T>(b_p), static_cast<T>(b_q), static_cast<T>(has_noise ? c_p : 0.0),
                      static_cast<T>(has_noise ? c_q : 0.0));
  });
  return out;
}

template <typename T>
void guided_kernel(const T* x0, const T* x, const T* g, const T* z, T* out, int64_t rows, int64_t length, T coef_x0,
                   T coef_xt, T noise_std, double radius, bool normalise, double eps) {
  // Per-row step factor: radius / max(||g||, eps) (normalise) or radius (DPS).
  std::vector<double> factor(rows, radius);
  if (normalise) {
    const int64_t chunks = (length + kNormChunk - 1) / kNormChunk;
    std::vector<double> partial(rows * chunks, 0.0);
    at::parallel_for(0, rows * chunks, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t job = lo; job < hi; ++job) {
        const int64_t row = job / chunks;
        const int64_t c0 = (job - row * chunks) * kNormChunk;
        const int64_t n = std::min(kNormChunk, length - c0);
        const T* gr = g + row * length + c0;
        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(gr[i]) * static_cast<double>(gr[i]);
        partial[job] = acc;
      }
    });
    for (int64_t row = 0; row < rows; ++row) {
      double sum = 0.0;
      for (int64_t c = 0; c < chunks; ++c) sum += partial[row * chunks + c];
      factor[row] = radius / std::max(std::sqrt(sum), eps);
    }
  }
  at::parallel_for(0, rows * length, 1 << 14, [&](int64_t lo, int64_t hi) {
    while (lo < hi) {
      const int64_t row = lo / length;
      const int64_t i0 = lo - row * length;
      const int64_t i1 = std::min(length, i0 + (hi - lo));
      const T f = static_cast<T>(factor[row]);
      const int64_t off = row * length;
      if (z != nullptr) {
#pragma omp simd
        for (int64_t i = i0; i < i1; ++i)
          out[off + i] = coef_x0 * x0[off + i] + coef_xt * x[off + i] + noise_std * z[off + i] - f * g[off + i];
      } else {
#pragma omp simd
        for (int64_t i = i0; i < i1; ++i) out[off + i] = coef_x0 * x0[off + i] + coef_xt * x[off + i] - f * g[off + i];
      }
      lo += i1 - i0;
    }
  });
}

at::Tensor guided_update_cpu(const at::Tensor& x0, const at::Tensor& x, const at::Tensor& grad,
                             const std::optional<at::Tensor>& noise, double coef_x0, double coef_xt, double noise_std,
                             double radius, bool normalise, double eps) {
  const char* op = "guided_update";
  check_first(x0, "x0", op);
  check_update_tensor(x, x0, "x", op);
  check_update_tensor(grad, x0, "grad", op);
  const bool has_noise = noise.has_value() && noise->defined();
  if (has_noise) check_update_tensor(*noise, x0, "noise", op);
  TORCH_CHECK(eps > 0, op, ": eps must be positive, got ", eps);
  auto out = at::empty_like(x0);
  if (x0.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x0.scalar_type(), "guided_update_cpu", [&] {
    using T = scalar_t;
    guided_kernel<T>(x0.data_ptr<T>(), x.data_ptr<T>(), grad.data_ptr<T>(), has_noise ? noise->data_ptr<T>() : nullptr,
                     out.data_ptr<T>(), x0.size(0) * x0.size(1), x0.size(2), static_cast<T>(coef_x0),
                     static_cast<T>(coef_xt), static_cast<T>(has_noise ? noise_std : 0.0), radius, normalise, eps);
  });
  return out;
}

}  // namespace
}  // namespace fastsep

TORCH_LIBRARY_IMPL(fastsep, CPU, m) {
  m.impl("mix_sde_update", &fastsep::mix_sde_update_cpu);
  m.impl("guided_update", &fastsep::guided_update_cpu);
}
