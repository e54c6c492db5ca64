// Input checks shared by the CPU DiffWave kernels (float32 and bfloat16): the second line of defence behind
// fastsep/ops.py, for callers that reach torch.ops.fastsep directly. layers < 0: one layer (no leading L dimension).
#pragma once
#include <ATen/ATen.h>

#include <vector>

namespace fastsep {

inline void check_diffwave_shapes(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond,
                                  const at::Tensor& w_dil, const at::Tensor& b_dil, const at::Tensor& w_out,
                                  const at::Tensor& b_out, int64_t layers, const char* op, bool cond_bf16 = false) {
  TORCH_CHECK(x.dim() == 3 && x.scalar_type() == at::kFloat, op, ": x must be float32 [B, C, T], got ",
              x.scalar_type(), " ", x.sizes());
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2);
  std::vector<int64_t> lead;
  if (layers >= 0) lead.push_back(layers);
  auto shape = [&](std::initializer_list<int64_t> tail) {
    std::vector<int64_t> s = lead;
    s.insert(s.end(), tail);
    return s;
  };
  auto expect = [&](const at::Tensor& t, std::vector<int64_t> s, const char* name) {
    TORCH_CHECK(t.scalar_type() == at::kFloat && t.sizes() == at::IntArrayRef(s) && t.is_contiguous(), op, ": ", name,
                " must be contiguous float32 ", at::IntArrayRef(s), ", got ", t.scalar_type(), " ", t.sizes());
  };
  expect(dstep, shape({B, C}), "dstep");
  expect(w_dil, shape({2 * C, C, 3}), "w_dil");
  expect(b_dil, shape({2 * C}), "b_dil");
  expect(w_out, shape({2 * C, C}), "w_out");
  expect(b_out, shape({2 * C}), "b_out");
  if (cond.numel() > 0) {
    if (cond_bf16 && cond.scalar_type() == at::kBFloat16) {  // the bfloat16 stack also takes its conditioner so
      TORCH_CHECK(cond.sizes() == at::IntArrayRef(shape({B, 2 * C, T})) && cond.is_contiguous(), op,
                  ": cond must be contiguous ", at::IntArrayRef(shape({B, 2 * C, T})), ", got ", cond.sizes());
    } else {
      expect(cond, shape({B, 2 * C, T}), cond_bf16 ? "cond (or bfloat16)" : "cond");
    }
  }
  TORCH_CHECK(x.is_contiguous(), op, ": x must be contiguous");
}

}  // namespace fastsep
