// CPU kernels of the DiffWave residual layer at inference. A whole stack runs in one call without returning to
// Python. When the channel count splits into the register blocks (C a multiple of 4 with AVX-512, of 2 otherwise:
// every published configuration) each layer runs through the blocked kernels of diffwave_blocks.h, a block of samples
// at a time through the whole layer; otherwise the two convolutions go to ATen (oneDNN) with everything between them
// fused into single passes.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "cpu/common.h"
#include "cpu/diffwave_blocks.h"
#include "cpu/diffwave_checks.h"
#include "cpu/diffwave_tiles.h"

namespace fastsep {
namespace {

FASTSEP_ISA_CLONES
void gate_row(const float* gate, const float* filt, const float* cg, const float* cf, float* out, int64_t T) {
  dwblock::gate_rows(gate, filt, 0.0f, 0.0f, cg, cf, out, T, T);  // the convolution added the biases
}

// x_next = (x + res + br)/sqrt(2); skip (+)= sk + bs; y_next = x_next + next_step when y_next is given.
FASTSEP_ISA_CLONES
void residual_row(const float* x, const float* res, const float* sk, float br, float bs, float* x_next, float* skip,
                  bool accumulate, float* y_next, float next_step, int64_t T) {
  dwblock::residual_rows(x, res, sk, br, bs, x_next, skip, accumulate, T);
  if (y_next) {
#pragma omp simd
    for (int64_t t = 0; t < T; ++t) y_next[t] = x_next[t] + next_step;
  }
}

void check_layer_shapes(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond, const at::Tensor& w_dil,
                        const at::Tensor& b_dil, const at::Tensor& w_out, const at::Tensor& b_out, int64_t layers) {
  check_diffwave_shapes(x, dstep, cond, w_dil, b_dil, w_out, b_out, layers,
                        layers < 0 ? "diffwave_layer" : "diffwave_stack");
}

// y = x + dstep[b, c] broadcast over time.
void add_step(const at::Tensor& x, const float* dstep, at::Tensor& y) {
  const int64_t rows = x.size(0) * x.size(1), T = x.size(2);
  const float* xs = x.data_ptr<float>();
  float* ys = y.data_ptr<float>();
  at::parallel_for(0, rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(T, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float s = dstep[r];
#pragma omp simd
      for (int64_t t = 0; t < T; ++t) ys[r * T + t] = xs[r * T + t] + s;
    }
  });
}

// One layer: reads x and y = x + dstep; writes x_next, adds (or writes) skip, and, when next_dstep is given, leaves
// y = x_next + next_dstep ready for the following layer.
void layer(const at::Tensor& x, at::Tensor& y, const float* cond, const at::Tensor& w_dil, const at::Tensor& b_dil,
           const at::Tensor& w_out, const float* b_out, int64_t dilation, at::Tensor& x_next, at::Tensor& skip,
           bool accumulate, const float* next_dstep) {
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2);
  const at::Tensor z = at::conv1d(y, w_dil, b_dil, /*stride=*/1, /*padding=*/dilation, /*dilation=*/dilation);
  at::Tensor gated = at::empty({B, C, T}, x.options());
  const float* zs = z.data_ptr<float>();
  float* gs = gated.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(T, 1));
  at::parallel_for(0, B * C, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t b = r / C, c = r % C;
      const float* gate = zs + (b * 2 * C + c) * T;
      const float* filt = zs + (b * 2 * C + C + c) * T;
      const float* cg = cond ? cond + (b * 2 * C + c) * T : nullptr;
      const float* cf = cond ? cond + (b * 2 * C + C + c) * T : nullptr;
      gate_row(gate, filt, cg, cf, gs + r * T, T);
    }
  });
  // The 1x1 convolution through oneDNN like the dilated one: faster here than a batched matmul.
  const at::Tensor o = at::conv1d(gated, w_out.unsqueeze(-1));  // [B, C, T] -> [B, 2C, T]
  const float* os = o.data_ptr<float>();
  const float* xs = x.data_ptr<float>();
  float* xn = x_next.data_ptr<float>();
  float* ss = skip.data_ptr<float>();
  float* ys = y.data_ptr<float>();
  at::parallel_for(0, B * C, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t b = r / C, c = r % C;
      const float* res = os + (b * 2 * C + c) * T;
      const float* sk = os + (b * 2 * C + C + c) * T;
      const float br = b_out[c], bs = b_out[C + c];
      residual_row(xs + r * T, res, sk, br, bs, xn + r * T, ss + r * T, accumulate,
                   next_dstep ? ys + r * T : nullptr, next_dstep ? next_dstep[r] : 0.0f, T);
    }
  });
}

// ---------------------------------------------------------------------------------------------- blocked kernels
// The layer blocks of diffwave_blocks.h, compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at run time.
// Each entry runs blocks [lo, hi) of one batch item; the caller spreads (item, block) pairs over threads.
using BlockRange = void (*)(const dwblock::LayerArgs&, int64_t, int64_t, float*);

template <int W, int R, int V>
FASTSEP_INLINE void block_range(const dwblock::LayerArgs& a, int64_t lo, int64_t hi, float* scratch) {
  for (int64_t k = lo; k < hi; ++k) dwblock::layer_block<W, R, V>(a, k * V * W, scratch);
}

struct BlockKernel {
  BlockRange run;
  int64_t width;     // samples per block
  int64_t rows;      // R
  const char* name;  // ISA variant
};

#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma"))) void blocks_avx512(const dwblock::LayerArgs& a,
                                                                                  int64_t lo, int64_t hi, float* s) {
  block_range<16, 8, 3>(a, lo, hi, s);
}
__attribute__((target("avx2,fma"))) void blocks_avx2(const dwblock::LayerArgs& a, int64_t lo, int64_t hi, float* s) {
  block_range<8, 4, 3>(a, lo, hi, s);
}
#endif
void blocks_generic(const dwblock::LayerArgs& a, int64_t lo, int64_t hi, float* s) { block_range<4, 4, 3>(a, lo, hi, s); }

// The widest the CPU runs; FASTSEP_CPU_ISA=avx2 or =baseline caps it (so that tests reach every variant on one
// machine, and to compare them).
BlockKernel pick_block_kernel() {
  const char* cap = std::getenv("FASTSEP_CPU_ISA");
  const std::string limit = cap ? cap : "";
#if defined(__GNUC__) && defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq");
  if (avx512 && limit != "avx2" && limit != "baseline") return {&blocks_avx512, 48, 8, "avx512"};
  if (avx2 && limit != "baseline") return {&blocks_avx2, 24, 4, "avx2"};
#endif
  return {&blocks_generic, 12, 4, "baseline"};
}

const BlockKernel& block_kernel() {
  static const BlockKernel kernel = pick_block_kernel();
  return kernel;
}

// [L][2C][C][3] -> [L][2C/R][3][C][R] and [L][2C][C] -> [L][2C/R][C][R]; block row r < R/2 is gate (residual)
// channel ob·R/2 + r, row R/2 + r its filter (skip) partner C + ob·R/2 + r.
void pack_weights(const at::Tensor& w_dil, const at::Tensor& w_out, int64_t R, std::vector<float>& wp_dil,
                  std::vector<float>& wp_out) {
  const int64_t L = w_dil.size(0), C = w_dil.size(2);
  const float* wd = w_dil.data_ptr<float>();
  const float* wo = w_out.data_ptr<float>();
  wp_dil.resize(L * 2 * C * 3 * C);
  wp_out.resize(L * 2 * C * C);
  for (int64_t l = 0; l < L; ++l)
    for (int64_t ob = 0; ob < 2 * C / R; ++ob)
      for (int64_t r = 0; r < R; ++r) {
        const int64_t row = dwblock::block_row(ob, r, R, C);
        for (int64_t c = 0; c < C; ++c) {
          for (int64_t j = 0; j < 3; ++j)
            wp_dil[(((l * 2 * C / R + ob) * 3 + j) * C + c) * R + r] = wd[((l * 2 * C + row) * C + c) * 3 + j];
          wp_out[((l * 2 * C / R + ob) * C + c) * R + r] = wo[(l * 2 * C + row) * C + c];
        }
      }
}

// What the layers of one stack call share, and one layer's arguments on a driver's buffers (rows `width` apart,
// column `off` holding sample s; the step-offset inputs y and y_next with the kernel's `pad` columns before it):
// the time tiles' and the wavefront's layers differ only in these.
struct StackCall {
  int64_t B, C, T;
  at::IntArrayRef dilations;
  const float* xs;     // [B, C, T] the first layer's input
  const float* steps;  // [L, B, C]
  const float* conds;  // [L, B, 2C, T] or null
  const float* b_dil;  // [L, 2C]
  const float* b_out;  // [L, 2C]
  std::vector<float> wp_dil, wp_out;  // packed for row blocks of R (pack_weights)

  StackCall(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond, const at::Tensor& w_dil,
            const at::Tensor& b_dil_, const at::Tensor& w_out, const at::Tensor& b_out_, at::IntArrayRef dilations_,
            int64_t R)
      : B(x.size(0)), C(x.size(1)), T(x.size(2)), dilations(dilations_), xs(x.data_ptr<float>()),
        steps(dstep.data_ptr<float>()), conds(cond.numel() ? cond.data_ptr<float>() : nullptr),
        b_dil(b_dil_.data_ptr<float>()), b_out(b_out_.data_ptr<float>()) {
    pack_weights(w_dil, w_out, R, wp_dil, wp_out);
  }

  dwblock::LayerArgs layer(int64_t l, int64_t b, int64_t s, int64_t n, int64_t off, int64_t width, int64_t pad,
                           const float* y, float* y_next, float* xb, float* sb) const {
    const int64_t L = static_cast<int64_t>(dilations.size());
    dwblock::LayerArgs a;
    a.C = C;
    a.T = n;
    a.y = y + off - pad;
    a.y_stride = width;
    a.pad = pad;
    a.dilation = dilations[l];
    a.x = xb + off;
    a.x_stride = width;
    a.cond = conds ? conds + (l * B + b) * 2 * C * T + s : nullptr;
    a.cond_stride = T;
    a.b_dil = b_dil + l * 2 * C;
    a.wp_dil = wp_dil.data() + l * 2 * C * 3 * C;
    a.wp_out = wp_out.data() + l * 2 * C * C;
    a.b_out = b_out + l * 2 * C;
    a.x_next = xb + off;
    a.skip = sb + off;
    a.accumulate = l > 0;
    a.y_next = l + 1 < L ? y_next + off - pad : nullptr;
    a.next_step = l + 1 < L ? steps + ((l + 1) * B + b) * C : nullptr;
    return a;
  }

  // The first layer's input x and x + its step offset y, samples [s, e) of item b, into buffers whose column c
  // holds sample origin + c.
  void load_input(int64_t b, int64_t s, int64_t e, int64_t width, int64_t origin, float* xb, float* yb) const {
    for (int64_t c = 0; c < C; ++c) {
      const float* src = xs + (b * C + c) * T;
      const float st = steps[b * C + c];
      float* xd = xb + c * width - origin;
      float* yd = yb + c * width - origin;
#pragma omp simd
      for (int64_t t = s; t < e; ++t) {
        xd[t] = src[t];
        yd[t] = src[t] + st;
      }
    }
  }

  // Samples [s, e) of item b's skip sum (and of the last layer's x, when x_out is given) out of the buffers.
  void store_output(int64_t b, int64_t s, int64_t e, int64_t width, int64_t origin, const float* sb, const float* xb,
                    float* skip_out, float* x_out) const {
    for (int64_t c = 0; c < C; ++c) {
      std::copy(sb + c * width + (s - origin), sb + c * width + (e - origin), skip_out + (b * C + c) * T + s);
      if (x_out) std::copy(xb + c * width + (s - origin), xb + c * width + (e - origin), x_out + (b * C + c) * T + s);
    }
  }
};

// ------------------------------------------------------------------------------------------------- time tiles
// (diffwave_tiles.h says why.)
at::Tensor run_tiled(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond, const at::Tensor& w_dil,
                     const at::Tensor& b_dil, const at::Tensor& w_out, const at::Tensor& b_out,
                     at::IntArrayRef dilations, at::Tensor* x_last, int64_t tile, int64_t pad) {
  const BlockKernel& kernel = block_kernel();
  const int64_t L = static_cast<int64_t>(dilations.size());
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), N = kernel.width, R = kernel.rows;
  const std::vector<int64_t> reach = dwtile::reach(dilations);
  // Buffer column k holds sample origin + k, origin = tile start - reach[0] - pad; blocks read up to N - 1 past
  // their range's end, plus the dilation.
  const int64_t width = tile + 2 * reach[0] + 2 * pad + N;
  const int64_t tiles = (T + tile - 1) / tile;
  const StackCall call(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, R);
  at::Tensor skip = at::empty_like(x);
  if (x_last) *x_last = at::empty_like(x);
  float* skip_out = skip.data_ptr<float>();
  float* x_out = x_last ? x_last->data_ptr<float>() : nullptr;
  at::parallel_for(0, B * tiles, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> buf(4 * C * width + (R + C) * N);
    float* xb = buf.data();              // layer input, updated in place
    float* sb = xb + C * width;          // skip sum
    float* yb[2] = {sb + C * width, sb + 2 * C * width};  // x + step offset, zero outside [0, T)
    float* scratch = sb + 3 * C * width;
    for (int64_t k = lo; k < hi; ++k) {
      const int64_t b = k / tiles, t0 = (k % tiles) * tile, t1 = std::min(T, t0 + tile);
      const int64_t origin = t0 - reach[0] - pad;
      std::fill(yb[0], yb[0] + 2 * C * width, 0.0f);
      // the first layer's input over everything the tile's outputs reach
      call.load_input(b, std::max<int64_t>(0, t0 - reach[0]), std::min(T, t1 + reach[0]), width, origin, xb, yb[0]);
      for (int64_t l = 0; l < L; ++l) {
        // Layer l's outputs are needed on the tile widened by what the later layers read.
        const int64_t s = std::max<int64_t>(0, t0 - reach[l + 1]), e = std::min(T, t1 + reach[l + 1]);
        const int64_t off = s - origin;  // buffer column of sample s
        const dwblock::LayerArgs a = call.layer(l, b, s, e - s, off, width, pad, yb[l % 2], yb[(l + 1) % 2], xb, sb);
        kernel.run(a, 0, (a.T + N - 1) / N, scratch);
      }
      call.store_output(b, t0, t1, width, origin, sb, xb, skip_out, x_out);
    }
  });
  return skip;
}

// ------------------------------------------------------------------------------------------------ wavefront
// A thread's wavefront buffer of `floats`, kept from call to call: a fresh allocation of tens of MB is a fresh mapping,
// and faulting its pages in cost ~15 % of a 4 s call (per item, at batch 8). Kept only up to 64 MiB per thread: for a
// larger one this returns null and the caller makes its own for the call.
float* kept_wavefront_buffer(size_t floats) {
  constexpr size_t kKeep = (size_t(64) << 20) / sizeof(float);
  thread_local std::unique_ptr<float[]> kept;
  thread_local size_t kept_floats = 0;
  if (floats > kKeep) return nullptr;
  if (floats > kept_floats) {
    kept.reset(new float[floats]);
    kept_floats = floats;
  }
  return kept.get();
}

// Time tiles keep a tile's activations in L2 by recomputing each tile's receptive field, and need ~1 MiB of L2 per
// thread to keep that recomputation small; a core with 512 KiB (AMD Zen 3) falls back to streaming every layer
// through L3 at half the kernel's rate. The wavefront recomputes nothing and keeps only a few hundred samples per
// layer hot: layer l runs on the next `chunk` samples as soon as layer l - 1 has produced its inputs (its outputs up
// to d_l samples past them), so the layers advance together through the signal, each d_l behind the one before.
// Every layer keeps its own step-offset input y_l (a layer ahead writes y_{l+1} where layer l + 1 will still read
// its earlier samples); x and the skip sum are updated in place, as every layer reaches a sample after the one before
// it. An item is cut into as many segments as it takes to give every thread work; each segment's edges are computed
// with their receptive field, as the tiles' are. Per sample the arithmetic is the tiles', in the same order: the
// results are the same bits.
at::Tensor run_wavefront(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond, const at::Tensor& w_dil,
                         const at::Tensor& b_dil, const at::Tensor& w_out, const at::Tensor& b_out,
                         at::IntArrayRef dilations, at::Tensor* x_last, int64_t chunk, int64_t pad) {
  const BlockKernel& kernel = block_kernel();
  const int64_t L = static_cast<int64_t>(dilations.size());
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), N = kernel.width, R = kernel.rows;
  const std::vector<int64_t> reach = dwtile::reach(dilations);
  chunk = std::max<int64_t>(N, chunk / N * N);
  const int64_t threads = at::get_num_threads();
  // Segments of an item: enough for every thread, none shorter than four times what its edges recompute, and none
  // longer than kMaxSegment samples, which bounds a segment's buffers ((L + 2)·C·(kMaxSegment + edges) floats, 59 MB
  // for 12 x 32) whatever the signal's length, for ~1 % recomputed.
  constexpr int64_t kMaxSegment = 32768;
  int64_t segs = B >= threads ? 1 : std::max<int64_t>(1, std::min((threads + B - 1) / B, T / (8 * reach[0] + 1)));
  segs = std::max(segs, (T + kMaxSegment - 1) / kMaxSegment);
  const int64_t seg_len = ((T + segs - 1) / segs + N - 1) / N * N;
  const StackCall call(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, R);
  at::Tensor skip = at::empty_like(x);
  if (x_last) *x_last = at::empty_like(x);
  float* skip_out = skip.data_ptr<float>();
  float* x_out = x_last ? x_last->data_ptr<float>() : nullptr;
  // The widest segment's buffers: x, skip and L step-offset inputs, [C][width] each.
  const int64_t max_width = std::min(T, seg_len + 2 * reach[0]) + 2 * pad + N;
  const size_t buffer_floats = static_cast<size_t>((L + 2) * C * max_width);
  at::parallel_for(0, B * segs, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> scratch((R + C) * N);
    std::vector<int64_t> last(L), done(L);
    std::unique_ptr<float[]> own;  // only where the buffer is too large to keep
    float* buf = kept_wavefront_buffer(buffer_floats);
    if (!buf) {
      own.reset(new float[buffer_floats]);
      buf = own.get();
    }
    for (int64_t k = lo; k < hi; ++k) {
      const int64_t b = k / segs, s0 = (k % segs) * seg_len, s1 = std::min(T, s0 + seg_len);
      if (s0 >= s1) continue;
      for (int64_t l = 0; l < L; ++l) {  // layer l's outputs: the segment widened by what the later layers read
        done[l] = std::max<int64_t>(0, s0 - reach[l + 1]);
        last[l] = std::min(T, s1 + reach[l + 1]);
      }
      const int64_t in0 = std::max<int64_t>(0, s0 - reach[0]), in1 = std::min(T, s1 + reach[0]);
      const int64_t origin = in0 - pad;  // buffer column c holds sample origin + c
      const int64_t width = (in1 - in0) + 2 * pad + N;  // blocks read up to N - 1 past their range, plus d
      // Not zero-filled: y_l's columns of samples outside [0, T) are zeroed below, every other column a layer reads
      // is written by the layer before it first (past a block's range only lanes that are never stored are read).
      float* xb = buf;
      float* sb = xb + C * width;
      float* yb = sb + C * width;  // L buffers [C][width]
      for (int64_t r = 0; r < L * C; ++r) {
        float* row = yb + r * width;
        std::fill(row, row + (in0 - origin), 0.0f);
        std::fill(row + (in1 - origin), row + width, 0.0f);
      }
      call.load_input(b, in0, in1, width, origin, xb, yb);
      while (done[L - 1] < last[L - 1]) {
        for (int64_t l = 0; l < L; ++l) {
          int64_t target;
          if (l == 0) target = std::min(last[0], done[0] + chunk);
          else if (done[l - 1] == last[l - 1]) target = last[l];
          else target = std::min(last[l], done[l - 1] - dilations[l]);
          if (target < last[l]) target = done[l] + (target - done[l]) / N * N;  // whole blocks but at the end
          if (target <= done[l]) continue;
          const int64_t off = done[l] - origin;
          const dwblock::LayerArgs a = call.layer(l, b, done[l], target - done[l], off, width, pad,
                                                  yb + l * C * width, yb + (l + 1) * C * width, xb, sb);
          kernel.run(a, 0, (a.T + N - 1) / N, scratch.data());
          done[l] = target;
        }
      }
      call.store_output(b, s0, s1, width, origin, sb, xb, skip_out, x_out);
    }
  });
  return skip;
}

// Runs the L layers with the blocked kernels; returns the skip sum and, when x_last is given, the last layer's x_next.
at::Tensor run_blocked(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond, const at::Tensor& w_dil,
                       const at::Tensor& b_dil, const at::Tensor& w_out, const at::Tensor& b_out,
                       at::IntArrayRef dilations, at::Tensor* x_last) {
  const BlockKernel& kernel = block_kernel();
  const int64_t L = static_cast<int64_t>(dilations.size());
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), N = kernel.width, R = kernel.rows;
  const int64_t pad = dwtile::dilation_pad(dilations);
  if (const int64_t chunk = dwtile::choose_wave(T, C, N))
    return run_wavefront(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, x_last, chunk, pad);
  // Four [C, width] float buffers per thread: x, skip and two ping-pong step-offset inputs.
  if (const int64_t tile = dwtile::choose_tile(B, T, dwtile::reach(dilations)[0], pad, N, 4 * C * sizeof(float)))
    return run_tiled(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, x_last, tile, pad);
  const int64_t blocks = (T + N - 1) / N;
  const int64_t y_stride = pad + blocks * N + pad;  // blocks read up to N - 1 samples past T: zeros
  std::vector<float> wp_dil, wp_out;
  pack_weights(w_dil, w_out, R, wp_dil, wp_out);
  at::Tensor ys = at::zeros({2, B, C, y_stride}, x.options());
  at::Tensor xs = at::empty({2, B, C, T}, x.options());
  at::Tensor skip = at::empty_like(x);
  const float* steps = dstep.data_ptr<float>();
  const float* conds = cond.numel() ? cond.data_ptr<float>() : nullptr;
  {  // y of the first layer: x + its step offset
    const float* xp = x.data_ptr<float>();
    float* yp = ys.data_ptr<float>();
    at::parallel_for(0, B * C, 16, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const float s = steps[r];
#pragma omp simd
        for (int64_t t = 0; t < T; ++t) yp[r * y_stride + pad + t] = xp[r * T + t] + s;
      }
    });
  }
  for (int64_t l = 0; l < L; ++l) {
    const float* x_cur = l == 0 ? x.data_ptr<float>() : xs[(l - 1) % 2].data_ptr<float>();
    float* x_nxt = xs[l % 2].data_ptr<float>();
    const float* y_cur = ys[l % 2].data_ptr<float>();
    float* y_nxt = l + 1 < L ? ys[(l + 1) % 2].data_ptr<float>() : nullptr;
    at::parallel_for(0, B * blocks, 1, [&](int64_t lo, int64_t hi) {
      std::vector<float> scratch((R + C) * N);
      while (lo < hi) {
        const int64_t b = lo / blocks, first = lo % blocks, last = std::min(blocks, first + (hi - lo));
        dwblock::LayerArgs a;
        a.C = C;
        a.T = T;
        a.y = y_cur + b * C * y_stride;
        a.y_stride = y_stride;
        a.pad = pad;
        a.dilation = dilations[l];
        a.x = x_cur + b * C * T;
        a.x_stride = T;
        a.cond = conds ? conds + (l * B + b) * 2 * C * T : nullptr;
        a.cond_stride = T;
        a.b_dil = b_dil.data_ptr<float>() + l * 2 * C;
        a.wp_dil = wp_dil.data() + l * 2 * C * 3 * C;
        a.wp_out = wp_out.data() + l * 2 * C * C;
        a.b_out = b_out.data_ptr<float>() + l * 2 * C;
        a.x_next = x_nxt + b * C * T;
        a.skip = skip.data_ptr<float>() + b * C * T;
        a.accumulate = l > 0;
        a.y_next = y_nxt ? y_nxt + b * C * y_stride : nullptr;
        a.next_step = y_nxt ? steps + ((l + 1) * B + b) * C : nullptr;
        kernel.run(a, first, last, scratch.data());
        lo += last - first;
      }
    });
  }
  if (x_last) *x_last = xs[(L - 1) % 2].clone();
  return skip;
}

bool blocked_ok(int64_t C) { return C % (block_kernel().rows / 2) == 0; }

std::tuple<at::Tensor, at::Tensor> diffwave_layer_cpu(const at::Tensor& x, const at::Tensor& dstep,
                                                      const at::Tensor& cond, const at::Tensor& w_dil,
                                                      const at::Tensor& b_dil, const at::Tensor& w_out,
                                                      const at::Tensor& b_out, int64_t dilation) {
  check_layer_shapes(x, dstep, cond, w_dil, b_dil, w_out, b_out, -1);
  TORCH_CHECK(dilation >= 1, "diffwave_layer: dilation must be >= 1, got ", dilation);
  at::NoGradGuard no_grad;
  if (x.numel() == 0) return {at::empty_like(x), at::empty_like(x)};
  if (blocked_ok(x.size(1))) {
    at::Tensor x_next;
    const std::vector<int64_t> dil{dilation};
    at::Tensor skip = run_blocked(x, dstep.unsqueeze(0), cond.numel() ? cond.unsqueeze(0) : cond, w_dil.unsqueeze(0),
                                  b_dil.unsqueeze(0), w_out.unsqueeze(0), b_out.unsqueeze(0), dil, &x_next);
    return {x_next, skip};
  }
  at::Tensor y = at::empty_like(x), x_next = at::empty_like(x), skip = at::empty_like(x);
  add_step(x, dstep.data_ptr<float>(), y);
  layer(x, y, cond.numel() ? cond.data_ptr<float>() : nullptr, w_dil, b_dil, w_out, b_out.data_ptr<float>(), dilation,
        x_next, skip, /*accumulate=*/false, nullptr);
  return {x_next, skip};
}

at::Tensor diffwave_stack_cpu(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond,
                              const at::Tensor& w_dil, const at::Tensor& b_dil, const at::Tensor& w_out,
                              const at::Tensor& b_out, at::IntArrayRef dilations) {
  const int64_t L = static_cast<int64_t>(dilations.size());
  TORCH_CHECK(L >= 1, "diffwave_stack: needs at least one layer");
  check_layer_shapes(x, dstep, cond, w_dil, b_dil, w_out, b_out, L);
  for (auto d : dilations) TORCH_CHECK(d >= 1, "diffwave_stack: dilations must be >= 1, got ", d);
  at::NoGradGuard no_grad;
  if (x.numel() == 0) return at::zeros_like(x);
  if (blocked_ok(x.size(1))) return run_blocked(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, nullptr);
  // Channel counts the blocks do not divide: ATen's convolutions with the elementwise stages fused between them.
  at::Tensor skip = at::zeros_like(x);
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2);
  at::Tensor y = at::empty_like(x), ping = at::empty_like(x), pong = at::empty_like(x);
  const float* steps = dstep.data_ptr<float>();
  const float* conds = cond.numel() ? cond.data_ptr<float>() : nullptr;
  const float* biases = b_out.data_ptr<float>();
  add_step(x, steps, y);
  const at::Tensor* cur = &x;
  for (int64_t l = 0; l < L; ++l) {
    at::Tensor& next = (l % 2 == 0) ? ping : pong;
    layer(*cur, y, conds ? conds + l * B * 2 * C * T : nullptr, w_dil[l], b_dil[l], w_out[l], biases + l * 2 * C,
          dilations[l], next, skip, /*accumulate=*/l > 0, l + 1 < L ? steps + (l + 1) * B * C : nullptr);
    cur = &next;
  }
  return skip;
}

}  // namespace

std::string diffwave_cpu_variant() { return block_kernel().name; }

}  // namespace fastsep

TORCH_LIBRARY_IMPL(fastsep, CPU, m) {
  m.impl("diffwave_layer", &fastsep::diffwave_layer_cpu);
  m.impl("diffwave_stack", &fastsep::diffwave_stack_cpu);
}
