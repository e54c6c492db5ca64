// Branch-free float approximations that GCC auto-vectorises inside the CPU kernels' inner loops (libm's sinf, cosf,
// expf, atan2f and tanhf are scalar calls there). Accuracy: sincos ~1e-7 absolute for |x| < 1e4; exp ~2 ulp.
#pragma once
#include <cstdint>
#include <cmath>
#include <cstring>

namespace fastsep {
namespace fm {

// Round to nearest integer (as float) by the 1.5·2^23 trick; exact for |x| < 2^22, needs no -ffast-math.
inline float round_magic(float x) {
  const float magic = 12582912.0f;
  return (x + magic) - magic;
}

inline void sincos(float x, float* s, float* c) {
  const float q = round_magic(x * 0.63661977236758134f);  // quadrant: x ≈ q·π/2 + r
  const int32_t qi = static_cast<int32_t>(q);
  // Cody-Waite reduction with π/2 split in three parts so r stays accurate for large q.
  float r = x - q * 1.5703125f;
  r = r - q * 4.837512969970703125e-4f;
  r = r - q * 7.54978995489188216e-8f;
  const float r2 = r * r;
  const float sr = r + r * r2 * (-1.6666654611e-1f + r2 * (8.3321608736e-3f + r2 * -1.9515295891e-4f));
  const float cr =
      1.0f - 0.5f * r2 + r2 * r2 * (4.166664568298827e-2f + r2 * (-1.388731625493765e-3f + r2 * 2.443315711809948e-5f));
  const bool swap = (qi & 1) != 0;
  const float s0 = swap ? cr : sr;
  const float c0 = swap ? sr : cr;
  *s = (qi & 2) ? -s0 : s0;
  *c = ((qi + 1) & 2) ? -c0 : c0;
}

inline float exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = round_magic(x * 1.44269504088896341f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float p =
      1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666667e-2f + r * (8.3333333e-3f + r * 1.3888889e-3f)))));
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// atan2 with Cephes' atanf polynomial after reducing to |t| <= tan(π/8); ~2 ulp, signs of zeros as std::atan2.
inline bool sign_bit(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits < 0;
}

// Written without branches (every division is safe to evaluate on both sides) so that it vectorises.
inline float atan2(float y, float x) {
  const float ax = x < 0 ? -x : x, ay = y < 0 ? -y : y;
  const float hi = ax > ay ? ax : ay, lo = ax > ay ? ay : ax;
  const float a = lo / (hi > 0 ? hi : 1.0f);  // in [0, 1]
  const bool big = a > 0.41421356237f;
  const float folded = (a - 1.0f) / (a + 1.0f);
  const float t = big ? folded : a;
  const float z = t * t;
  float r = (((8.05374449538e-2f * z - 1.38776856032e-1f) * z + 1.99777106478e-1f) * z - 3.33329491539e-1f) * z * t + t;
  r = big ? r + 0.78539816339744831f : r;
  r = ay > ax ? 1.57079632679489662f - r : r;
  r = sign_bit(x) ? 3.14159265358979324f - r : r;
  return sign_bit(y) ? -r : r;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }

// tanh(x) = 2·sigmoid(2x) − 1: absolute error ~1e-7, which is what the DiffWave gate needs.
inline float tanh(float x) { return 2.0f / (1.0f + exp(-2.0f * x)) - 1.0f; }

// sigmoid(g)·tanh(f) with one division: (1 − e^{−2f}) / ((1 + e^{−g})(1 + e^{−2f})). A vector division costs as much
// as the rest of the gate together (one issue every ~10 cycles on AVX-512), and the gate runs on every activation of
// every layer. g is clamped to [-40, 40] and f to [-15, 15] so that the denominator stays below float's maximum
// (e^40·e^30); outside, sigmoid is within 5e-18 of its limit and tanh rounds to ±1, as before.
inline float gate(float g, float f) {
  g = g < -40.0f ? -40.0f : (g > 40.0f ? 40.0f : g);
  f = f < -15.0f ? -15.0f : (f > 15.0f ? 15.0f : f);
  const float eg = exp(-g), ef = exp(-2.0f * f);
  return (1.0f - ef) / ((1.0f + eg) * (1.0f + ef));
}

}  // namespace fm
}  // namespace fastsep
