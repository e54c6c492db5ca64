// The CUDA kernels' torch face: checks, output allocation, device guard and current stream, then the torch-free
// launchers of csrc/cuda/*.cu. Compiled only against a CUDA build of torch (setup.py / CMake decide from the torch
// build, not from a visible GPU).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "cuda/kernels.h"

namespace fastsep {

// The limits of the CUDA kernels, by name, for Python (fastsep._ext.cuda_limits); the numbers live in the .cu files.
int64_t cuda_limit(const std::string& name) {
  if (name == "xcorr_max_n_fft_float32") return cuda::xcorr_max_n_fft<float>();
  if (name == "xcorr_max_n_fft_float64") return cuda::xcorr_max_n_fft<double>();
  if (name == "diffwave_max_channels") return cuda::diffwave_max_channels();
  if (name == "diffwave_max_batch") return cuda::diffwave_max_batch();
  TORCH_CHECK(false, "fastsep::cuda_limit: unknown limit '", name, "' (known: xcorr_max_n_fft_float32, "
              "xcorr_max_n_fft_float64, diffwave_max_channels, diffwave_max_batch)");
  return -1;  // not reached: TORCH_CHECK(false) throws
}

namespace {

// FASTSEP_CUDA_SYNC_CHECK=1: synchronise after every launch so that a failure inside a kernel (an illegal address,
// say) is reported by the op that launched it rather than by whatever synchronises next. Debugging only: it stalls
// the host on every op. Read once.
bool sync_check_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("FASTSEP_CUDA_SYNC_CHECK");
    return v != nullptr && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
  }();
  return on;
}

// Fails when an earlier CUDA call left an error that nobody read: launched now, its error would come back from this
// op's cudaGetLastError and be blamed on this kernel. Reading it here (cudaGetLastError) clears a non-sticky error,
// so it is reported once, as what it is; a sticky one (a faulted context) cannot be cleared and fails every op.
void check_nothing_pending(const char* op) {
  if (cudaPeekAtLastError() == cudaSuccess) return;
  const cudaError_t earlier = cudaGetLastError();
  TORCH_CHECK(false, "fastsep.", op, ": a CUDA error from an earlier call (not from this op) was pending before its "
              "kernel launched: ", cudaGetErrorString(earlier),
              ". Run with CUDA_LAUNCH_BLOCKING=1 to find the call that failed.");
}

void check_launch(const cuda::LaunchStatus& st, const char* op, cudaStream_t stream) {
  if (st.refused != nullptr) {
    TORCH_CHECK(false, "fastsep.", op, ": the CUDA kernel cannot take this input: ", st.refused, " (", st.value,
                " > ", st.limit, ")");
  }
  TORCH_CHECK(st.ok(), "fastsep.", op, ": CUDA kernel launch failed: ", cudaGetErrorString(st.error));
  if (!sync_check_enabled()) return;
  // Synchronising a capturing stream would invalidate the capture: the check is skipped while capturing.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &capture) == cudaSuccess && capture != cudaStreamCaptureStatusNone) return;
  const cudaError_t err = cudaStreamSynchronize(stream);
  TORCH_CHECK(err == cudaSuccess, "fastsep.", op, ": the CUDA kernel failed while running (found by "
              "FASTSEP_CUDA_SYNC_CHECK=1): ", cudaGetErrorString(err));
}

void check_cuda(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK(t.is_cuda() && t.is_contiguous(), op, ": ", name, " must be a contiguous CUDA tensor");
}

void check_pair(const at::Tensor& vd, const at::Tensor& vg, const char* op) {
  check_cuda(vd, "vd", op);
  check_cuda(vg, "vg", op);
  TORCH_CHECK(vd.is_complex() && vd.scalar_type() == vg.scalar_type() && vd.dim() >= 2 && vd.sizes() == vg.sizes(),
              op, ": vd and vg must be complex tensors of one dtype and shape [..., F, K]");
  TORCH_CHECK(vd.get_device() == vg.get_device(), op, ": vd and vg must be on one device");
}

std::vector<int64_t> paired_shape(const at::Tensor& spec) {
  std::vector<int64_t> shape(spec.sizes().begin(), spec.sizes().end());
  shape.insert(shape.end() - 2, 2);
  return shape;
}

void check_weights(const at::Tensor& vd, const at::Tensor& w, const char* name, const char* op) {
  check_cuda(w, name, op);
  TORCH_CHECK(w.scalar_type() == c10::toRealValueType(vd.scalar_type()) && w.sizes() == at::IntArrayRef(paired_shape(vd)),
              op, ": ", name, " must be ", c10::toRealValueType(vd.scalar_type()), " of shape ",
              at::IntArrayRef(paired_shape(vd)), ", got ", w.scalar_type(), " ", w.sizes());
  TORCH_CHECK(w.get_device() == vd.get_device(), op, ": all inputs must be on one device");
}

int64_t plane(const at::Tensor& s) { return s.size(-1) * s.size(-2); }
int64_t planes(const at::Tensor& s) { return plane(s) == 0 ? 0 : s.numel() / plane(s); }

template <typename T>
T* real_ptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

at::Tensor complex_combine_cuda(const at::Tensor& vd, const at::Tensor& vg, const at::Tensor& mag,
                                const at::Tensor& phase) {
  const char* op = "complex_combine";
  check_pair(vd, vg, op);
  check_weights(vd, mag, "mag", op);
  check_weights(vd, phase, "phase", op);
  const c10::cuda::CUDAGuard guard(vd.device());
  auto out = at::empty_like(vd);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  check_nothing_pending(op);
  AT_DISPATCH_FLOATING_TYPES(mag.scalar_type(), "complex_combine_cuda", [&] {
    check_launch(cuda::complex_combine<scalar_t>(real_ptr<scalar_t>(vd), real_ptr<scalar_t>(vg),
                                                 mag.data_ptr<scalar_t>(), phase.data_ptr<scalar_t>(),
                                                 real_ptr<scalar_t>(out), planes(vd), plane(vd), stream),
                 op, stream);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> complex_combine_backward_cuda(
    const at::Tensor& grad, const at::Tensor& vd, const at::Tensor& vg, const at::Tensor& mag,
    const at::Tensor& phase) {
  const char* op = "complex_combine_backward";
  check_pair(vd, vg, op);
  check_pair(grad, vd, op);
  check_weights(vd, mag, "mag", op);
  check_weights(vd, phase, "phase", op);
  const c10::cuda::CUDAGuard guard(vd.device());
  auto gvd = at::empty_like(vd), gvg = at::empty_like(vg), gmag = at::empty_like(mag), gphase = at::empty_like(phase);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  check_nothing_pending(op);
  AT_DISPATCH_FLOATING_TYPES(mag.scalar_type(), "complex_combine_backward_cuda", [&] {
    check_launch(cuda::complex_combine_backward<scalar_t>(
                     real_ptr<scalar_t>(grad), real_ptr<scalar_t>(vd), real_ptr<scalar_t>(vg),
                     mag.data_ptr<scalar_t>(), phase.data_ptr<scalar_t>(), real_ptr<scalar_t>(gvd),
                     real_ptr<scalar_t>(gvg), gmag.data_ptr<scalar_t>(), gphase.data_ptr<scalar_t>(), planes(vd),
                     plane(vd), stream),
                 op, stream);
  });
  return {gvd, gvg, gmag, gphase};
}

std::tuple<at::Tensor, at::Tensor> combine_features_cuda(const at::Tensor& vd, const at::Tensor& vg) {
  const char* op = "combine_features";
  check_pair(vd, vg, op);
  const c10::cuda::CUDAGuard guard(vd.device());
  auto opts = vd.options().dtype(c10::toRealValueType(vd.scalar_type()));
  auto mag = at::empty(paired_shape(vd), opts), phase = at::empty(paired_shape(vd), opts);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  check_nothing_pending(op);
  AT_DISPATCH_FLOATING_TYPES(mag.scalar_type(), "combine_features_cuda", [&] {
    check_launch(cuda::combine_features<scalar_t>(real_ptr<scalar_t>(vd), real_ptr<scalar_t>(vg),
                                                  mag.data_ptr<scalar_t>(), phase.data_ptr<scalar_t>(), planes(vd),
                                                  plane(vd), stream),
                 op, stream);
  });
  return {mag, phase};
}

std::tuple<at::Tensor, at::Tensor> xcorr_align_cuda(const at::Tensor& vd, const at::Tensor& vg, int64_t n_fft) {
  const char* op = "xcorr_align";
  check_pair(vd, vg, op);
  const c10::cuda::CUDAGuard guard(vd.device());
  auto out = at::empty_like(vg);
  std::vector<int64_t> lag_shape(vd.sizes().begin(), vd.sizes().end() - 2);
  lag_shape.push_back(vd.size(-1));
  auto lag = at::empty(lag_shape, vd.options().dtype(at::kLong));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  check_nothing_pending(op);
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(vd.scalar_type()), "xcorr_align_cuda", [&] {
    TORCH_CHECK(n_fft <= cuda::xcorr_max_n_fft<scalar_t>(), op, ": the CUDA kernel takes n_fft <= ",
                cuda::xcorr_max_n_fft<scalar_t>(), ", got ", n_fft);
    check_launch(cuda::xcorr_align<scalar_t>(real_ptr<scalar_t>(vd), real_ptr<scalar_t>(vg), real_ptr<scalar_t>(out),
                                             lag.data_ptr<int64_t>(), planes(vd), vd.size(-2), vd.size(-1), n_fft,
                                             stream),
                 op, stream);
  });
  return {out, lag};
}

void check_diffwave(const at::Tensor& x, std::initializer_list<std::pair<const at::Tensor*, const char*>> others,
                    const char* op) {
  check_cuda(x, "x", op);
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() == 3, op, ": x must be float32 [B, C, T]");
  TORCH_CHECK(x.size(1) <= cuda::diffwave_max_channels(), op, ": the CUDA kernel takes at most ",
              cuda::diffwave_max_channels(), " residual channels, got ", x.size(1));
  for (const auto& [t, name] : others) {
    if (t->numel() == 0) continue;
    check_cuda(*t, name, op);
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->get_device() == x.get_device(), op, ": ", name,
                " must be float32 on x's device");
  }
}

std::tuple<at::Tensor, at::Tensor> diffwave_layer_cuda(const at::Tensor& x, const at::Tensor& dstep,
                                                       const at::Tensor& cond, const at::Tensor& w_dil,
                                                       const at::Tensor& b_dil, const at::Tensor& w_out,
                                                       const at::Tensor& b_out, int64_t dilation) {
  const char* op = "diffwave_layer";
  check_diffwave(x, {{&dstep, "dstep"}, {&cond, "cond"}, {&w_dil, "w_dil"}, {&b_dil, "b_dil"}, {&w_out, "w_out"},
                     {&b_out, "b_out"}}, op);
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2);
  TORCH_CHECK(dstep.sizes() == at::IntArrayRef({B, C}) && w_dil.sizes() == at::IntArrayRef({2 * C, C, 3}) &&
                  w_out.sizes() == at::IntArrayRef({2 * C, C}) && b_dil.numel() == 2 * C && b_out.numel() == 2 * C &&
                  (cond.numel() == 0 || cond.sizes() == at::IntArrayRef({B, 2 * C, T})),
              op, ": inconsistent shapes");
  const c10::cuda::CUDAGuard guard(x.device());
  auto x_next = at::empty_like(x), skip = at::empty_like(x);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  check_nothing_pending(op);
  check_launch(cuda::diffwave_layer(x.data_ptr<float>(), dstep.data_ptr<float>(),
                                    cond.numel() ? cond.data_ptr<float>() : nullptr, w_dil.data_ptr<float>(),
                                    b_dil.data_ptr<float>(), w_out.data_ptr<float>(), b_out.data_ptr<float>(), B, C,
                                    T, dilation, x_next.data_ptr<float>(), skip.data_ptr<float>(), false, stream),
               op, stream);
  return {x_next, skip};
}

at::Tensor diffwave_stack_cuda(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond,
                               const at::Tensor& w_dil, const at::Tensor& b_dil, const at::Tensor& w_out,
                               const at::Tensor& b_out, at::IntArrayRef dilations) {
  const char* op = "diffwave_stack";
  check_diffwave(x, {{&dstep, "dstep"}, {&cond, "cond"}, {&w_dil, "w_dil"}, {&b_dil, "b_dil"}, {&w_out, "w_out"},
                     {&b_out, "b_out"}}, op);
  const int64_t L = static_cast<int64_t>(dilations.size());
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2);
  TORCH_CHECK(L >= 1 && dstep.sizes() == at::IntArrayRef({L, B, C}) &&
                  w_dil.sizes() == at::IntArrayRef({L, 2 * C, C, 3}) && w_out.sizes() == at::IntArrayRef({L, 2 * C, C}) &&
                  b_dil.sizes() == at::IntArrayRef({L, 2 * C}) && b_out.sizes() == at::IntArrayRef({L, 2 * C}) &&
                  (cond.numel() == 0 || cond.sizes() == at::IntArrayRef({L, B, 2 * C, T})),
              op, ": inconsistent shapes");
  const c10::cuda::CUDAGuard guard(x.device());
  auto skip = at::zeros_like(x);
  if (x.numel() == 0) return skip;
  auto ping = at::empty_like(x), pong = at::empty_like(x);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  check_nothing_pending(op);
  const float* cur = x.data_ptr<float>();
  for (int64_t l = 0; l < L; ++l) {
    float* next = (l % 2 == 0 ? ping : pong).data_ptr<float>();
    check_launch(cuda::diffwave_layer(cur, dstep.data_ptr<float>() + l * B * C,
                                      cond.numel() ? cond.data_ptr<float>() + l * B * 2 * C * T : nullptr,
                                      w_dil.data_ptr<float>() + l * 2 * C * C * 3, b_dil.data_ptr<float>() + l * 2 * C,
                                      w_out.data_ptr<float>() + l * 2 * C * C, b_out.data_ptr<float>() + l * 2 * C, B,
                                      C, T, dilations[l], next, skip.data_ptr<float>(), l > 0, stream),
                 op, stream);
    cur = next;
  }
  return skip;
}

void check_update(const at::Tensor& t, const at::Tensor& like, const char* name, const char* op) {
  check_cuda(t, name, op);
  TORCH_CHECK(t.scalar_type() == like.scalar_type() && t.sizes() == like.sizes(), op, ": ", name, " must be ",
              like.scalar_type(), " of shape ", like.sizes(), ", got ", t.scalar_type(), " ", t.sizes());
  TORCH_CHECK(t.get_device() == like.get_device(), op, ": all inputs must be on one device");
}

void check_update_first(const at::Tensor& x, const char* name, const char* op) {
  check_cuda(x, name, op);
  TORCH_CHECK((x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble) && x.dim() == 3, op, ": ", name,
              " must be float32 or float64 [batch, sources, time], got ", x.scalar_type(), " ", x.sizes());
}

at::Tensor mix_sde_update_cuda(const at::Tensor& x, const at::Tensor& score, const std::optional<at::Tensor>& noise,
                               double a_p, double a_q, double b_p, double b_q, double c_p, double c_q) {
  const char* op = "mix_sde_update";
  check_update_first(x, "x", op);
  check_update(score, x, "score", op);
  const bool has_noise = noise.has_value() && noise->defined();
  if (has_noise) check_update(*noise, x, "noise", op);
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty_like(x);
  if (x.numel() == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  check_nothing_pending(op);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mix_sde_update_cuda", [&] {
    using T = scalar_t;
    check_launch(cuda::mix_sde_update<T>(x.data_ptr<T>(), score.data_ptr<T>(), has_noise ? noise->data_ptr<T>() : nullptr,
                                         out.data_ptr<T>(), x.size(0), x.size(1), x.size(2), static_cast<T>(a_p),
                                         static_cast<T>(a_q), static_cast<T>(b_p), static_cast<T>(b_q),
                                         static_cast<T>(c_p), static_cast<T>(c_q), stream),
                 op, stream);
  });
  return out;
}

at::Tensor guided_update_cuda(const at::Tensor& x0, const at::Tensor& x, const at::Tensor& grad,
                              const std::optional<at::Tensor>& noise, double coef_x0, double coef_xt,
                              double noise_std, double radius, bool normalise, double eps) {
  const char* op = "guided_update";
  check_update_first(x0, "x0", op);
  check_update(x, x0, "x", op);
  check_update(grad, x0, "grad", op);
  const bool has_noise = noise.has_value() && noise->defined();
  if (has_noise) check_update(*noise, x0, "noise", op);
  TORCH_CHECK(eps > 0, op, ": eps must be positive, got ", eps);
  const c10::cuda::CUDAGuard guard(x0.device());
  auto out = at::empty_like(x0);
  if (x0.numel() == 0) return out;
  const int64_t rows = x0.size(0) * x0.size(1), length = x0.size(2);
  // The row norms' partial sums: a small buffer from torch's caching allocator (no cudaMalloc per step).
  auto scratch = at::empty({normalise ? cuda::guided_update_scratch(rows, length) : 0},
                           x0.options().dtype(at::kDouble));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  check_nothing_pending(op);
  AT_DISPATCH_FLOATING_TYPES(x0.scalar_type(), "guided_update_cuda", [&] {
    using T = scalar_t;
    check_launch(cuda::guided_update<T>(x0.data_ptr<T>(), x.data_ptr<T>(), grad.data_ptr<T>(),
                                        has_noise ? noise->data_ptr<T>() : nullptr, out.data_ptr<T>(), rows, length,
                                        static_cast<T>(coef_x0), static_cast<T>(coef_xt),
                                        static_cast<T>(has_noise ? noise_std : 0.0), radius, normalise, eps,
                                        normalise ? scratch.data_ptr<double>() : nullptr, stream),
                 op, stream);
  });
  return out;
}

}  // namespace
}  // namespace fastsep

TORCH_LIBRARY_IMPL(fastsep, CUDA, m) {
  m.impl("complex_combine", &fastsep::complex_combine_cuda);
  m.impl("complex_combine_backward", &fastsep::complex_combine_backward_cuda);
  m.impl("combine_features", &fastsep::combine_features_cuda);
  m.impl("xcorr_align", &fastsep::xcorr_align_cuda);
  m.impl("diffwave_layer", &fastsep::diffwave_layer_cuda);
  m.impl("diffwave_stack", &fastsep::diffwave_stack_cuda);
  m.impl("mix_sde_update", &fastsep::mix_sde_update_cuda);
  m.impl("guided_update", &fastsep::guided_update_cuda);
}
