// Time tiles of the CPU DiffWave stack, shared by the float32 (diffwave.cpp) and bfloat16 (diffwave_bf16.cpp) drivers.
//
// Layer by layer, a stack streams every layer's [B, C, T] activations and [B, 2C, T] conditioner through memory: at
// 4 s of 8 kHz audio a 12 x 32 stack's working set (~40 MB per layer) is far past L2, and kernels that reach 55 %
// (float32) or 2.7x that (bfloat16 on AMX) of their rate in cache wait on memory instead. A tiled driver takes a
// tile of samples through all L layers while its activations stay in L2. Layer l's outputs are computed on the tile
// widened by the dilations of the layers after it (their receptive field), so the tile's own samples come out exact;
// the widening is recomputed by both neighbours (2·sum(dilations) samples per tile), the price of the cache.
#pragma once
#include <ATen/Parallel.h>
#include <c10/util/ArrayRef.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <unistd.h>

namespace fastsep {
namespace dwtile {

// The time tiles' working set per thread: ~1 MiB of L2.
constexpr int64_t kTileL2 = int64_t(1) << 20;

// Zero padding each side of a layer input: the widest dilation, rounded up to 16 samples.
inline int64_t dilation_pad(c10::ArrayRef<int64_t> dilations) {
  int64_t max_d = 1;
  for (auto d : dilations) max_d = std::max<int64_t>(max_d, d);
  return (max_d + 15) / 16 * 16;
}

// reach[l]: the sum of the dilations of layers l.. (how far past its outputs layer l's inputs are read); L + 1 entries.
inline std::vector<int64_t> reach(c10::ArrayRef<int64_t> dilations) {
  const int64_t L = static_cast<int64_t>(dilations.size());
  std::vector<int64_t> r(L + 1, 0);
  for (int64_t l = L - 1; l >= 0; --l) r[l] = r[l + 1] + dilations[l];
  return r;
}

// Samples per tile for a driver keeping `bytes_per_sample` of per-thread buffers per sample (all channels), with
// receptive field `halo` (sum of the dilations) and blocks of N samples; 0: don't tile. FASTSEP_DIFFWAVE_TILE=N forces
// N samples (0 switches tiling off), for tests and tuning. Tiling is skipped for short signals, when the recomputed
// halo would cost more than a quarter of the work, or when there are fewer tiles than threads (the untiled drivers
// split one item's blocks between threads).
inline int64_t choose_tile(int64_t B, int64_t T, int64_t halo, int64_t pad, int64_t N, int64_t bytes_per_sample) {
  const char* forced = std::getenv("FASTSEP_DIFFWAVE_TILE");
  if (forced && *forced) {
    const int64_t tile = std::max<int64_t>(0, std::atoll(forced));
    return tile >= T ? 0 : tile;
  }
  const int64_t width = kTileL2 / bytes_per_sample;
  const int64_t longest = (width - 2 * halo - 2 * pad - N) / N * N;
  // Below ~4 tiles the layer-by-layer working set is a few MB and the halo costs more than the cache saves
  // (measured: 2 x 32 x 8000 gains, 1 x 32 x 4096 loses).
  if (longest <= 0 || 2 * halo * 4 > longest || T < 4 * longest) return 0;
  const int64_t tiles = (T + longest - 1) / longest;
  if (B * tiles < at::get_num_threads()) return 0;
  return ((T + tiles - 1) / tiles + N - 1) / N * N;  // equal tiles: no short last one paying a whole halo
}

// This core's L2 in bytes (glibc's sysconf, from cpuid), 0 where it cannot tell.
inline int64_t l2_bytes() {
  static const int64_t bytes = [] {
#ifdef _SC_LEVEL2_CACHE_SIZE
    const long v = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return v > 0 ? int64_t(v) : int64_t(0);
#else
    return int64_t(0);
#endif
  }();
  return bytes;
}

// Samples per wavefront chunk for the float32 stack (diffwave.cpp's run_wavefront), 0: run untiled or in tiles.
// FASTSEP_DIFFWAVE_WAVE=N forces N (0 switches it off, e.g. to test the tiles). Taken when the untiled layers'
// buffers (x, skip and two step-offset inputs, [C, T] each) pass 256 KiB, half of a 512 KiB L2, and the core's L2
// is smaller than the tiles' budget: with 1 MiB (Zen 4) the tiles were as fast on one thread and 1.1-1.6x faster on
// two; with 512 KiB (Zen 3) the wavefront was 1.1-2.1x faster (BENCHMARKS.md). An L2 it cannot read counts as small.
inline int64_t choose_wave(int64_t T, int64_t C, int64_t N) {
  const char* forced = std::getenv("FASTSEP_DIFFWAVE_WAVE");
  if (forced && *forced) return std::max<int64_t>(0, std::atoll(forced));
  if (std::getenv("FASTSEP_DIFFWAVE_TILE") && *std::getenv("FASTSEP_DIFFWAVE_TILE")) return 0;  // tiles forced
  if (l2_bytes() >= kTileL2) return 0;
  constexpr int64_t kUntiled = int64_t(256) << 10;
  if (4 * C * T * int64_t(sizeof(float)) <= kUntiled) return 0;
  return 8 * N;
}

}  // namespace dwtile
}  // namespace fastsep
