#pragma once
// Stand-in for a CUDA library header absent on CPU machines: just enough for a syntax-only check of csrc/cuda/bindings.cpp.
typedef struct cublasLtContext* cublasLtHandle_t;
