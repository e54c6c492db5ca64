// Every operator schema of the `fastsep` library, in one place. Kernels register per device elsewhere:
// csrc/cpu/*.cpp (CPU, always built) and csrc/cuda/bindings.cpp (CUDA, built only against a CUDA torch).
#include <torch/library.h>

#include <string>

namespace fastsep {

std::string diffwave_cpu_variant();  // csrc/cpu/diffwave.cpp
bool diffwave_bf16_available();      // csrc/cpu/diffwave_bf16.cpp
std::string diffwave_bf16_variant();  // csrc/cpu/diffwave_bf16.cpp

bool built_with_cuda() {
#ifdef FASTSEP_WITH_CUDA
  return true;
#else
  return false;
#endif
}

#ifdef FASTSEP_WITH_CUDA
int64_t cuda_limit(const std::string& name);  // csrc/cuda/bindings.cpp: the numbers live beside their kernels
#else
int64_t cuda_limit(const std::string& name) {
  TORCH_CHECK(false, "fastsep::cuda_limit('", name, "'): this library was built without the CUDA kernels");
  return -1;  // not reached
}
#endif

}  // namespace fastsep

TORCH_LIBRARY(fastsep, m) {
  // out = mag0·exp(-j·phase0)·vd + mag1·exp(-j·phase1)·vg; vd, vg complex [..., F, K]; mag, phase real [..., 2, F, K].
  m.def("complex_combine(Tensor vd, Tensor vg, Tensor mag, Tensor phase) -> Tensor");
  // Vector-Jacobian product of complex_combine in PyTorch's complex-gradient convention.
  m.def(
      "complex_combine_backward(Tensor grad, Tensor vd, Tensor vg, Tensor mag, Tensor phase)"
      " -> (Tensor, Tensor, Tensor, Tensor)");
  // (mag, phase) = ([|vd|, |vg|], [angle(vd), angle(vg·conj(vd))]), each real [..., 2, F, K].
  m.def("combine_features(Tensor vd, Tensor vg) -> (Tensor, Tensor)");
  // Per-frame circular cross-correlation alignment: (vg·exp(j2π f lag / n_fft), lag int64 [..., K]).
  m.def("xcorr_align(Tensor vd, Tensor vg, int n_fft) -> (Tensor, Tensor)");
  // One DiffWave residual layer at inference; cond may be empty (unconditional model). Returns (x_next, skip).
  m.def(
      "diffwave_layer(Tensor x, Tensor dstep, Tensor cond, Tensor w_dil, Tensor b_dil, Tensor w_out, Tensor b_out,"
      " int dilation) -> (Tensor, Tensor)");
  // All layers of one denoising step; returns the plain sum of the skips.
  m.def(
      "diffwave_stack(Tensor x, Tensor dstep, Tensor cond, Tensor w_dil, Tensor b_dil, Tensor w_out, Tensor b_out,"
      " int[] dilations) -> Tensor");
  // diffwave_stack with bfloat16 products and float32 accumulation (CPU with AVX512-BF16 only). cond may be
  // bfloat16; or, with cond empty, mel [B, M, T] (the upsampled mel) and w_cond [L, 2C, M]: cond[l] = w_cond[l]·mel
  // computed in the kernel, block by block, with bfloat16 products (its bias folded into b_dil by the caller).
  m.def(
      "diffwave_stack_bf16(Tensor x, Tensor dstep, Tensor cond, Tensor w_dil, Tensor b_dil, Tensor w_out,"
      " Tensor b_out, int[] dilations, Tensor? mel=None, Tensor? w_cond=None) -> Tensor");
  // DiffSep's predictor / corrector step on x, score, noise [B, K, T] (float32/64), m(v) the average over K:
  // out = a_p·m(x) + a_q·(x − m(x)) + b_p·m(s) + b_q·(s − m(s)) + c_p·m(z) + c_q·(z − m(z)); no noise: no z terms.
  m.def(
      "mix_sde_update(Tensor x, Tensor score, Tensor? noise, float a_p, float a_q, float b_p, float b_q, float c_p,"
      " float c_q) -> Tensor");
  // The prior-guided solver's step on x0, x, grad, noise [B, C, T], per row: out = coef_x0·x0 + coef_xt·x +
  // noise_std·z − radius·g / max(||g||, eps) (normalise) or − radius·g (not normalise: DPS).
  m.def(
      "guided_update(Tensor x0, Tensor x, Tensor grad, Tensor? noise, float coef_x0, float coef_xt, float noise_std,"
      " float radius, bool normalise, float eps) -> Tensor");
  // out = prelu(y, weight) + residual (one slope; y and residual of one dtype, shape and dense layout): the step
  // between the convolutions of F's residual heads.
  m.def("prelu_residual(Tensor y, Tensor weight, Tensor residual) -> Tensor");
  // One Conv-TasNet TCN block at inference (gLN, one-slope PReLUs), in place on the network's state [x; skips] =
  // state + offset[..., None] (state [B, R, T], offset [B, R] float32; x its first C = w_in.size(1) rows):
  // h = prelu(w_in·x + b_in), d = prelu(dwconv(gLN(h))), m = gLN(d); the last w_out.size(0) rows (R, or R − C for a
  // block without a residual conv) gain w_out·m + b_out. CPU only.
  m.def(
      "tcn_block_(Tensor(a!) state, Tensor(b!) offset, Tensor w_in, Tensor b_in, Tensor a_in, Tensor g_in,"
      " Tensor beta_in, Tensor w_dw, Tensor b_dw, Tensor a_dw, Tensor g_dw, Tensor beta_dw, Tensor w_out,"
      " Tensor b_out, int dilation, float eps) -> ()");
  m.def("built_with_cuda() -> bool", &fastsep::built_with_cuda);
  // A limit of the CUDA kernels by name (xcorr_max_n_fft_float32|float64, diffwave_max_channels|max_batch): inputs
  // beyond it go to the reference. Fails in a library built without CUDA kernels.
  m.def("cuda_limit(str name) -> int", &fastsep::cuda_limit);
  m.def("diffwave_bf16_available() -> bool", &fastsep::diffwave_bf16_available);
  // The instruction-set variant of the CPU DiffWave kernel picked for this machine: avx512, avx2 or baseline.
  m.def("diffwave_cpu_variant() -> str", &fastsep::diffwave_cpu_variant);
  // The bfloat16 kernel's products: amx (tile unit, channels in multiples of 32), avx512bf16, or none.
  m.def("diffwave_bf16_variant() -> str", &fastsep::diffwave_bf16_variant);
}
