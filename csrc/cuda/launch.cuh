// Launch-time checks shared by the .cu launchers: grid sizes against the current device's limits, and a kernel's
// dynamic shared memory against what is left of the budget after its static __shared__ arrays. Torch-free.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "cuda/kernels.h"

namespace fastsep {
namespace cuda {

inline LaunchStatus refuse(const char* what, int64_t value, int64_t limit) {
  LaunchStatus s;
  s.error = cudaErrorInvalidConfiguration;
  s.refused = what;
  s.value = value;
  s.limit = limit;
  return s;
}

// A grid of (x, y) blocks must fit the device: the int64 sizes are checked before any narrowing to unsigned, which
// would otherwise wrap and launch a wrong (smaller) grid without an error.
inline LaunchStatus check_grid(int64_t x, int64_t y) {
  int device = 0, max_x = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&max_x, cudaDevAttrMaxGridDimX, device);
  if (err != cudaSuccess) {
    LaunchStatus s;
    s.error = err;
    return s;
  }
  if (x > max_x) return refuse("gridDim.x exceeds the device's maxGridDimX", x, max_x);
  if (y > kMaxGridYZ) return refuse("gridDim.y exceeds 65535", y, kMaxGridYZ);
  return {};
}

// Checks a launch's dynamic shared memory against the kernel's own limit, which the runtime computes as the budget
// minus the kernel's static __shared__ bytes (cudaFuncAttributes::maxDynamicSharedSizeBytes). The compile-time
// budgets of the launchers already subtract their static arrays; this catches a kernel edit that adds one. The
// static size is a property of the compiled kernel, so each launcher caches it (`static_bytes`, -1 until read).
template <typename Kernel>
LaunchStatus check_shared_memory(Kernel kernel, size_t dynamic_bytes, std::atomic<int64_t>& static_bytes) {
  int64_t fixed = static_bytes.load(std::memory_order_relaxed);
  if (fixed < 0) {
    cudaFuncAttributes attr{};
    const cudaError_t err = cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(kernel));
    if (err != cudaSuccess) {
      LaunchStatus s;
      s.error = err;
      return s;
    }
    fixed = static_cast<int64_t>(attr.sharedSizeBytes);
    static_bytes.store(fixed, std::memory_order_relaxed);
  }
  const int64_t room = kSharedMemoryBudget - fixed;
  if (static_cast<int64_t>(dynamic_bytes) > room)
    return refuse("dynamic shared memory exceeds the 48 KiB budget less the kernel's static shared arrays",
                  static_cast<int64_t>(dynamic_bytes), room);
  return {};
}

// The launch's own error. The bindings make sure no earlier error was pending before the launch, so whatever
// cudaGetLastError returns here comes from this launch; reading it also clears it, so it never surfaces in a later op.
inline LaunchStatus launched() {
  LaunchStatus s;
  s.error = cudaGetLastError();
  return s;
}

}  // namespace cuda
}  // namespace fastsep
