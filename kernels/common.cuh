// Shared helpers of the sg3stream kernels: float/half loads and stores, grid-stride loops.
// Every kernel computes in float and reads/writes its tensors as float or half (instantiated for both).
#pragma once
#include <cuda_fp16.h>

__device__ __forceinline__ float load_f(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float load_f(const __half* p, long long i) { return __half2float(p[i]); }
__device__ __forceinline__ void store_f(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void store_f(__half* p, long long i, float v) { p[i] = __float2half_rn(v); }

#define GRID_STRIDE_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)blockDim.x * gridDim.x)

// The first k >= 0 with (base + k) divisible by step (step >= 1), for negative bases too.
__device__ __forceinline__ int first_aligned_tap(int base, int step) {
    int r = (-base) % step;
    return r < 0 ? r + step : r;
}
