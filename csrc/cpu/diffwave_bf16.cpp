// The CPU DiffWave stack with bfloat16 products (opt-in: DiffWave.generate(precision="bfloat16")).
//
// Same blocking as diffwave_blocks.h, but both convolutions multiply bfloat16 pairs with AVX512-BF16's vdpbf16ps,
// which does two multiply-adds per float32 lane per instruction, twice the float32 FMA rate. Only the convolution
// inputs and weights are rounded to bfloat16: accumulation, gate, residual, skip and conditioner stay float32. The
// convolution inputs (x + step, and the gated activations) are stored as pairs of neighbouring channels per sample,
// one 32-bit word each, which is the operand layout vdpbf16ps multiplies.
//
// On CPUs with AMX (Sapphire Rapids and later) the two convolutions go to the tile unit instead: tdpbf16ps multiplies a
// 16 x 32 bfloat16 weight tile by a 16-pair x 16-sample tile of the same channel-pair layout (a tile row is one
// channel pair's 16 samples, 64 bytes, read with the buffer's row stride, so the dilated taps are plain offsets) into
// 16 x 16 float32 sums, 16x the work of one vdpbf16ps. Same rounding, another summation order. It needs channels in
// multiples of 32 (one tile of K); other channel counts, or FASTSEP_CPU_ISA=avx512bf16, take the vdpbf16ps path.
#include <ATen/Parallel.h>
#include <torch/library.h>

#if defined(__GNUC__) && defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define FASTSEP_HAVE_BF16_KERNEL 1
#endif

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/diffwave_bf16_gemm.h"  // before the gate: FASTSEP_BF16_TARGET
#include "cpu/diffwave_bf16_gate.h"
#include "cpu/diffwave_blocks.h"
#include "cpu/diffwave_checks.h"
#include "cpu/diffwave_tiles.h"

namespace fastsep {
namespace {

struct Bf16Layer {
  int64_t C, T;       // T: valid samples
  const uint32_t* y;  // [C/2][y_stride] channel pairs of x + step, zero-padded: sample t at y[c2·y_stride + pad + t]
  int64_t y_stride, pad, dilation;
  const float* x;     // [C][x_stride]
  int64_t x_stride;
  const float* cond;  // [2C][cond_stride] or null
  const uint16_t* cond16;  // the same as bfloat16 bits (one of the two, or neither)
  int64_t cond_stride;
  // Or the conditioner computed here, from the upsampled mel: pairs [M2][mel_stride] words aligned with x (sample t
  // at mel[m2·mel_stride + t]) and this layer's projection w_cond packed like w_out (M2 input pairs).
  const uint32_t* mel;
  int64_t mel_stride, M2;
  const uint32_t* w_cond;
  const float* b_dil;
  const uint32_t* w_dil;  // weights packed for the GEMM (Dp or Amx below), per row block of R rows
  const uint32_t* w_out;
  const float* b_out;
  float* x_next;  // [C][x_stride]; may be x itself (a block reads only its own samples of x)
  float* skip;    // [C][x_stride]
  bool accumulate;
  uint32_t* y_next;  // same layout as y, or null after the last layer
  const float* next_step;
};

#ifdef FASTSEP_HAVE_BF16_KERNEL
// One block of 48 samples at t0 through the whole layer. scratch: G::kRows·48 floats + (R/2)·48 floats + (C/2)·48
// words.
template <class G>
FASTSEP_BF16_TARGET void layer_block_bf16(const Bf16Layer& a, int64_t t0, float* scratch) {
  constexpr int N = kBlock, R = G::kRows, H = R / 2;
  const int64_t C = a.C, C2 = C / 2;
  const int64_t n = a.T - t0 < N ? a.T - t0 : N;
  float* z = scratch;                                               // [R][N]
  float* gf = z + R * N;                                            // [H][N] gated rows of one row block
  uint32_t* g = reinterpret_cast<uint32_t*>(gf + H * N);            // [C/2][N] gated channel pairs
  const uint32_t* taps[3] = {a.y + a.pad + t0 - a.dilation, a.y + a.pad + t0, a.y + a.pad + t0 + a.dilation};
  if (a.cond) dwblock::prefetch_next_block(a.cond, a.cond_stride, 2 * C, t0, N, a.T);
  if (a.cond16) dwblock::prefetch_next_block(a.cond16, a.cond_stride, 2 * C, t0, N, a.T);
  alignas(64) float q16[2][N];  // one gate/filter row pair of a bfloat16 conditioner, widened
  alignas(64) float zc[R * N];  // the conditioner of one row block, when it is computed here
  const uint32_t* msrc[1] = {a.mel ? a.mel + t0 : nullptr};
  for (int64_t ob = 0; ob < 2 * C / R; ++ob) {
    if (a.mel)
      G::template gemm_plus<3>(a.w_dil + ob * 3 * C2 * R, taps, a.y_stride, C2, a.w_cond + ob * a.M2 * R, msrc,
                               a.mel_stride, a.M2, z, zc);
    else
      G::template gemm<3>(a.w_dil + ob * 3 * C2 * R, taps, a.y_stride, C2, z);
    for (int h = 0; h < H; ++h) {
      const int64_t cg = ob * H + h, cf = C + cg;
      const float* qg = a.cond ? a.cond + cg * a.cond_stride + t0 : nullptr;
      const float* qf = a.cond ? a.cond + cf * a.cond_stride + t0 : nullptr;
      if (a.cond16) {
        widen_bf16(a.cond16 + cg * a.cond_stride + t0, q16[0], n);
        widen_bf16(a.cond16 + cf * a.cond_stride + t0, q16[1], n);
        qg = q16[0];
        qf = q16[1];
      }
      gate_rows_bf16<N>(z + h * N, z + (H + h) * N, a.b_dil[cg], a.b_dil[cf], qg, qf, gf + h * N, n);
    }
    for (int p = 0; p < H / 2; ++p) {  // gated channels ob·H + 2p and ob·H + 2p + 1 form pair ob·H/2 + p
      uint32_t* dst = g + (ob * H / 2 + p) * N;
      const float* lo = gf + 2 * p * N;
      const float* hi = gf + (2 * p + 1) * N;
#pragma omp simd
      for (int i = 0; i < N; ++i) dst[i] = bf16_pair(lo[i], hi[i]);
    }
  }
  const uint32_t* gsrc[1] = {g};
  for (int64_t ob = 0; ob < 2 * C / R; ++ob) {
    G::template gemm<1>(a.w_out + ob * C2 * R, gsrc, N, C2, z);
    for (int h = 0; h < H; ++h) {
      const int64_t c = ob * H + h;
      dwblock::residual_rows(a.x + c * a.x_stride + t0, z + h * N, z + (H + h) * N, a.b_out[c], a.b_out[C + c],
                             a.x_next + c * a.x_stride + t0, a.skip + c * a.x_stride + t0, a.accumulate, n);
    }
    if (a.y_next) {
      for (int p = 0; p < H / 2; ++p) {
        const int64_t c = ob * H + 2 * p;
        const float s0 = a.next_step[c], s1 = a.next_step[c + 1];
        const float* x0 = a.x_next + c * a.x_stride + t0;
        const float* x1 = x0 + a.x_stride;
        uint32_t* yn = a.y_next + (c / 2) * a.y_stride + a.pad + t0;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) yn[i] = bf16_pair(x0[i] + s0, x1[i] + s1);
      }
    }
  }
}

bool cpu_has_bf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bf16");
}

// AMX needs the CPU flags and the kernel's permission for this process to use the tile registers (Linux >= 5.16).
bool amx_usable() {
  unsigned eax, ebx, ecx, edx;
  if (!cpu_has_bf16() || !__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool tile = (edx >> 24) & 1, bf16 = (edx >> 22) & 1;
  if (!tile || !bf16) return false;
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
}
#else
bool cpu_has_bf16() { return false; }
bool amx_usable() { return false; }
#endif

// "amx" or "avx512bf16", "none" without AVX512-BF16. FASTSEP_CPU_ISA=avx512bf16 (or any cap but "amx") keeps the
// tile unit off; read per call, unlike the float32 kernel's variant, so that one benchmark process can compare both.
std::string bf16_variant() {
  static const bool bf16 = cpu_has_bf16();
  static const bool amx = bf16 && amx_usable();
  if (!bf16) return "none";
  const char* cap = std::getenv("FASTSEP_CPU_ISA");
  const bool capped = cap && *cap && std::string(cap) != "amx";
  return amx && !capped ? "amx" : "avx512bf16";
}

// Per-layer weights packed for G: [L][words] each (w_cond: empty when not given).
template <class G>
struct PackedLayers {
  std::vector<uint32_t> dil, out, cond;
  int64_t dil_words, out_words, cond_words, M2;
  PackedLayers(const at::Tensor& w_dil, const at::Tensor& w_out, const at::Tensor& w_cond) {
    const int64_t L = w_dil.size(0), C = w_dil.size(2), C2 = C / 2, R = G::kRows;
    const int64_t M = w_cond.numel() ? w_cond.size(2) : 0;
    dil_words = G::weight_words(C, C, 3);
    out_words = G::weight_words(C, C, 1);
    cond_words = M ? G::weight_words(C, M, 1) : 0;
    M2 = M ? G::padded(M) / 2 : 0;
    dil.assign(L * dil_words, 0);
    out.assign(L * out_words, 0);
    cond.assign(L * cond_words, 0);
    for (int64_t l = 0; l < L; ++l)
      for (int64_t ob = 0; ob < 2 * C / R; ++ob) {
        G::pack(w_dil.data_ptr<float>() + l * 2 * C * C * 3, C, C, 3, ob, dil.data() + l * dil_words + ob * 3 * C2 * R);
        G::pack(w_out.data_ptr<float>() + l * 2 * C * C, C, C, 1, ob, out.data() + l * out_words + ob * C2 * R);
        if (M)
          G::pack(w_cond.data_ptr<float>() + l * 2 * C * M, C, M, 1, ob, cond.data() + l * cond_words + ob * M2 * R);
      }
  }
};

// Pairs of the upsampled mel's channels (zero past its M channels) for samples [s, e) of item b, written at
// dst[m2·stride + t - s] (dst already zeroed where nothing is written).
inline void pack_mel(const at::Tensor& mel, int64_t b, int64_t M2, int64_t s, int64_t e, uint32_t* dst,
                     int64_t stride) {
  const int64_t M = mel.size(1), T = mel.size(2);
  const float* base = mel.data_ptr<float>() + b * M * T;
  for (int64_t m2 = 0; m2 < M2; ++m2) {
    const int64_t m = 2 * m2;
    if (m >= M) break;
    const float* lo = base + m * T;
    const float* hi = m + 1 < M ? lo + T : nullptr;
    uint32_t* d = dst + m2 * stride - s;
#pragma omp simd
    for (int64_t t = s; t < e; ++t) d[t] = bf16_pair(lo[t], hi ? hi[t] : 0.0f);
  }
}

// What every layer of item b shares; the driver fills in the buffers and the sample window.
template <class G>
Bf16Layer layer_args(int64_t l, int64_t b, const at::Tensor& dstep, const at::Tensor& cond, const at::Tensor& b_dil,
                     const at::Tensor& b_out, const PackedLayers<G>& w, int64_t B, int64_t C, int64_t T, int64_t L) {
  Bf16Layer a{};
  a.C = C;
  const int64_t first = (l * B + b) * 2 * C * T;  // this layer's and item's rows
  if (cond.numel() && cond.scalar_type() == at::kBFloat16)
    a.cond16 = reinterpret_cast<const uint16_t*>(cond.data_ptr<at::BFloat16>()) + first;
  else if (cond.numel())
    a.cond = cond.data_ptr<float>() + first;
  a.cond_stride = T;
  a.M2 = w.M2;
  a.w_cond = w.M2 ? w.cond.data() + l * w.cond_words : nullptr;
  a.b_dil = b_dil.data_ptr<float>() + l * 2 * C;
  a.w_dil = w.dil.data() + l * w.dil_words;
  a.w_out = w.out.data() + l * w.out_words;
  a.b_out = b_out.data_ptr<float>() + l * 2 * C;
  a.accumulate = l > 0;
  a.next_step = l + 1 < L ? dstep.data_ptr<float>() + ((l + 1) * B + b) * C : nullptr;
  return a;
}

// Layer by layer over whole signals (short signals, or fewer tiles than threads).
template <class G>
void run_bf16_layers(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond, const at::Tensor& w_dil,
                     const at::Tensor& b_dil, const at::Tensor& w_out, const at::Tensor& b_out,
                     at::IntArrayRef dilations, const at::Tensor& mel, const at::Tensor& w_cond, int64_t pad,
                     at::Tensor& skip) {
#ifdef FASTSEP_HAVE_BF16_KERNEL
  const int64_t L = static_cast<int64_t>(dilations.size());
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), C2 = C / 2, N = kBlock, R = G::kRows;
  const int64_t blocks = (T + N - 1) / N;
  const int64_t y_stride = pad + blocks * N + pad;
  const PackedLayers<G> w(w_dil, w_out, w_cond);
  at::Tensor ys = at::zeros({2, B, C2, y_stride}, x.options().dtype(at::kInt));  // raw 32-bit words
  at::Tensor xs = at::empty({2, B, C, T}, x.options());
  const int64_t mel_stride = blocks * N;  // blocks read up to N - 1 samples past T: zeros
  at::Tensor mels = at::zeros({B, w.M2, w.M2 ? mel_stride : 0}, x.options().dtype(at::kInt));
  const float* steps = dstep.data_ptr<float>();
  auto words = [](const at::Tensor& t) { return reinterpret_cast<uint32_t*>(t.data_ptr<int32_t>()); };
  {  // first layer's input pairs: x + step; the mel's pairs
    const float* xp = x.data_ptr<float>();
    uint32_t* yp = words(ys);
    at::parallel_for(0, B * C2, 4, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t b = r / C2, c = 2 * (r % C2);
        const float* x0 = xp + (b * C + c) * T;
        const float* x1 = x0 + T;
        const float s0 = steps[b * C + c], s1 = steps[b * C + c + 1];
#pragma omp simd
        for (int64_t t = 0; t < T; ++t) yp[r * y_stride + pad + t] = bf16_pair(x0[t] + s0, x1[t] + s1);
      }
    });
    if (w.M2)
      for (int64_t b = 0; b < B; ++b) pack_mel(mel, b, w.M2, 0, T, words(mels) + b * w.M2 * mel_stride, mel_stride);
  }
  for (int64_t l = 0; l < L; ++l) {
    const float* x_cur = l == 0 ? x.data_ptr<float>() : xs[(l - 1) % 2].data_ptr<float>();
    float* x_nxt = xs[l % 2].data_ptr<float>();
    const uint32_t* y_cur = words(ys[l % 2]);
    uint32_t* y_nxt = l + 1 < L ? words(ys[(l + 1) % 2]) : nullptr;
    at::parallel_for(0, B * blocks, 1, [&](int64_t lo, int64_t hi) {
      std::vector<float> scratch(R * N + (R / 2) * N + C2 * N);
      G::begin();
      for (int64_t k = lo; k < hi; ++k) {
        const int64_t b = k / blocks;
        Bf16Layer a = layer_args<G>(l, b, dstep, cond, b_dil, b_out, w, B, C, T, L);
        a.T = T;
        a.y = y_cur + b * C2 * y_stride;
        a.y_stride = y_stride;
        a.pad = pad;
        a.dilation = dilations[l];
        a.x = x_cur + b * C * T;
        a.x_stride = T;
        a.x_next = x_nxt + b * C * T;
        a.skip = skip.data_ptr<float>() + b * C * T;
        a.y_next = y_nxt ? y_nxt + b * C2 * y_stride : nullptr;
        if (w.M2) {
          a.mel = words(mels) + b * w.M2 * mel_stride;
          a.mel_stride = mel_stride;
        }
        layer_block_bf16<G>(a, (k % blocks) * N, scratch.data());
      }
      G::end();
    });
  }
#endif
}

// A tile of samples through all layers while it stays in L2 (diffwave_tiles.h; the float32 driver's scheme).
template <class G>
void run_bf16_tiled(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond, const at::Tensor& w_dil,
                    const at::Tensor& b_dil, const at::Tensor& w_out, const at::Tensor& b_out,
                    at::IntArrayRef dilations, const at::Tensor& mel, const at::Tensor& w_cond, int64_t pad,
                    int64_t tile, at::Tensor& skip) {
#ifdef FASTSEP_HAVE_BF16_KERNEL
  const int64_t L = static_cast<int64_t>(dilations.size());
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), C2 = C / 2, N = kBlock, R = G::kRows;
  const std::vector<int64_t> reach = dwtile::reach(dilations);
  const int64_t width = tile + 2 * reach[0] + 2 * pad + N;  // column k: sample t0 - reach[0] - pad + k
  const int64_t tiles = (T + tile - 1) / tile;
  const PackedLayers<G> w(w_dil, w_out, w_cond);
  const float* xs = x.data_ptr<float>();
  const float* steps = dstep.data_ptr<float>();
  float* skip_out = skip.data_ptr<float>();
  at::parallel_for(0, B * tiles, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> buf(2 * C * width + R * N + (R / 2) * N + C2 * N);
    std::vector<uint32_t> ybuf(2 * C2 * width), mbuf(w.M2 * width);
    float* xb = buf.data();      // layer input, updated in place
    float* sb = xb + C * width;  // skip sum
    float* scratch = sb + C * width;
    uint32_t* yb[2] = {ybuf.data(), ybuf.data() + C2 * width};  // pairs of x + step offset, zero outside [0, T)
    G::begin();
    for (int64_t k = lo; k < hi; ++k) {
      const int64_t b = k / tiles, t0 = (k % tiles) * tile, t1 = std::min(T, t0 + tile);
      const int64_t origin = t0 - reach[0] - pad;
      std::fill(ybuf.begin(), ybuf.end(), 0u);
      {  // the first layer's input over everything the tile's outputs reach
        const int64_t s = std::max<int64_t>(0, t0 - reach[0]), e = std::min(T, t1 + reach[0]);
        for (int64_t c2 = 0; c2 < C2; ++c2) {
          const int64_t c = 2 * c2;
          const float* x0 = xs + (b * C + c) * T;
          const float* x1 = x0 + T;
          const float s0 = steps[b * C + c], s1 = steps[b * C + c + 1];
          float* xd0 = xb + c * width - origin;
          float* xd1 = xd0 + width;
          uint32_t* yd = yb[0] + c2 * width - origin;
#pragma omp simd
          for (int64_t t = s; t < e; ++t) {
            xd0[t] = x0[t];
            xd1[t] = x1[t];
            yd[t] = bf16_pair(x0[t] + s0, x1[t] + s1);
          }
        }
        if (w.M2) {
          std::fill(mbuf.begin(), mbuf.end(), 0u);
          pack_mel(mel, b, w.M2, s, e, mbuf.data() + (s - origin), width);
        }
      }
      for (int64_t l = 0; l < L; ++l) {
        // Layer l's outputs are needed on the tile widened by what the later layers read.
        const int64_t s = std::max<int64_t>(0, t0 - reach[l + 1]), e = std::min(T, t1 + reach[l + 1]);
        const int64_t off = s - origin;
        Bf16Layer a = layer_args<G>(l, b, dstep, cond, b_dil, b_out, w, B, C, T, L);
        a.T = e - s;
        a.y = yb[l % 2] + off - pad;
        a.y_stride = width;
        a.pad = pad;
        a.dilation = dilations[l];
        a.x = xb + off;
        a.x_stride = width;
        if (a.cond) a.cond += s;
        if (a.cond16) a.cond16 += s;
        if (w.M2) {
          a.mel = mbuf.data() + off;
          a.mel_stride = width;
        }
        a.x_next = xb + off;
        a.skip = sb + off;
        a.y_next = l + 1 < L ? yb[(l + 1) % 2] + off - pad : nullptr;
        for (int64_t t = 0; t < a.T; t += N) layer_block_bf16<G>(a, t, scratch);
      }
      for (int64_t c = 0; c < C; ++c)
        std::copy(sb + c * width + (t0 - origin), sb + c * width + (t1 - origin), skip_out + (b * C + c) * T + t0);
    }
    G::end();
  });
#endif
}

template <class G>
void run_bf16(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond, const at::Tensor& w_dil,
              const at::Tensor& b_dil, const at::Tensor& w_out, const at::Tensor& b_out, at::IntArrayRef dilations,
              const at::Tensor& mel, const at::Tensor& w_cond, at::Tensor& skip) {
  const int64_t C = x.size(1);
  const int64_t pad = dwtile::dilation_pad(dilations);
  const int64_t M2 = mel.numel() ? G::padded(mel.size(1)) / 2 : 0;
  // Per thread and sample: x and skip (float32), two ping-pong pair buffers (C/2 words each), the mel's pairs.
  const int64_t tile = dwtile::choose_tile(x.size(0), x.size(2), dwtile::reach(dilations)[0], pad, kBlock,
                                           (2 * C + C + M2) * int64_t(sizeof(float)));
  if (tile)
    run_bf16_tiled<G>(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, mel, w_cond, pad, tile, skip);
  else
    run_bf16_layers<G>(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, mel, w_cond, pad, skip);
}

at::Tensor diffwave_stack_bf16_cpu(const at::Tensor& x, const at::Tensor& dstep, const at::Tensor& cond,
                                   const at::Tensor& w_dil, const at::Tensor& b_dil, const at::Tensor& w_out,
                                   const at::Tensor& b_out, at::IntArrayRef dilations,
                                   const c10::optional<at::Tensor>& mel_opt, const c10::optional<at::Tensor>& w_cond_opt) {
  const int64_t L = static_cast<int64_t>(dilations.size());
  TORCH_CHECK(L >= 1, "diffwave_stack_bf16: needs at least one layer");
  check_diffwave_shapes(x, dstep, cond, w_dil, b_dil, w_out, b_out, L, "diffwave_stack_bf16", /*cond_bf16=*/true);
  const at::Tensor mel = mel_opt.has_value() ? *mel_opt : at::Tensor();
  const at::Tensor w_cond = w_cond_opt.has_value() ? *w_cond_opt : at::Tensor();
  const bool has_mel = mel.defined() && mel.numel() > 0;
  TORCH_CHECK(has_mel == (w_cond.defined() && w_cond.numel() > 0),
              "diffwave_stack_bf16: mel and w_cond come together (the conditioner computed in the kernel)");
  if (has_mel) {
    TORCH_CHECK(cond.numel() == 0, "diffwave_stack_bf16: give cond or (mel, w_cond), not both");
    TORCH_CHECK(mel.scalar_type() == at::kFloat && mel.dim() == 3 && mel.size(0) == x.size(0) &&
                    mel.size(2) == x.size(2) && mel.is_contiguous(),
                "diffwave_stack_bf16: mel must be contiguous float32 [B, M, T] for x ", x.sizes(), ", got ",
                mel.scalar_type(), " ", mel.sizes());
    TORCH_CHECK(w_cond.scalar_type() == at::kFloat && w_cond.dim() == 3 && w_cond.size(0) == L &&
                    w_cond.size(1) == 2 * x.size(1) && w_cond.size(2) == mel.size(1) && w_cond.is_contiguous(),
                "diffwave_stack_bf16: w_cond must be contiguous float32 [L, 2C, M] = [", L, ", ", 2 * x.size(1), ", ",
                mel.size(1), "], got ", w_cond.scalar_type(), " ", w_cond.sizes());
  }
  const at::Tensor no = at::empty({0}, x.options());
  for (auto d : dilations) TORCH_CHECK(d >= 1, "diffwave_stack_bf16: dilations must be >= 1, got ", d);
  TORCH_CHECK(cpu_has_bf16(), "diffwave_stack_bf16: this CPU lacks AVX512-BF16 (use diffwave_stack)");
  TORCH_CHECK(x.size(1) % 4 == 0, "diffwave_stack_bf16: channels must be a multiple of 4, got ", x.size(1));
  at::NoGradGuard no_grad;
  if (x.numel() == 0) return at::zeros_like(x);
  at::Tensor skip = at::empty_like(x);
#ifdef FASTSEP_HAVE_BF16_KERNEL
  if (bf16_variant() == "amx" && x.size(1) % 32 == 0)
    run_bf16<Amx>(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, has_mel ? mel : no, has_mel ? w_cond : no,
                  skip);
  else
    run_bf16<Dp>(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, has_mel ? mel : no, has_mel ? w_cond : no,
                 skip);
#endif
  return skip;
}

}  // namespace

bool diffwave_bf16_available() { return cpu_has_bf16(); }
std::string diffwave_bf16_variant() { return bf16_variant(); }

}  // namespace fastsep

TORCH_LIBRARY_IMPL(fastsep, CPU, m) { m.impl("diffwave_stack_bf16", &fastsep::diffwave_stack_bf16_cpu); }
