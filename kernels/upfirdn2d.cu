// upfirdn2d: zero-insertion upsampling, padding (negative = crop), FIR filter, downsampling — one pass with a
// 2-D correlation kernel `w` [fh, fw] (float; the Python side flips the filter, applies the gain and splits
// separable filters into a row pass and a column pass).
//
//   y[n, c, oy, ox] = sum_{ky, kx} w[ky, kx] * u[oy * downy + ky, ox * downx + kx]
//   u[j, i] = x[(j - pady0) / upy, (i - padx0) / upx] where both divide exactly and are inside x, else 0
//
// Only the taps that land on input samples are visited (every upy-th row, upx-th column of the filter), so no
// zero is ever multiplied. One thread per output element. The backward pass is this same kernel with the filter
// flipped and up/down swapped (see kernels/ops.py).
#include "common.cuh"

template <typename T>
__device__ void upfirdn2d_impl(const T* __restrict__ x, T* __restrict__ y, const float* __restrict__ w,
                               int planes, int in_h, int in_w, int out_h, int out_w, int upx, int upy, int downx,
                               int downy, int padx0, int pady0, int fh, int fw) {
    const long long total = (long long)planes * out_h * out_w;
    GRID_STRIDE_LOOP(idx, total) {
        const int ox = (int)(idx % out_w);
        const long long rest = idx / out_w;
        const int oy = (int)(rest % out_h);
        const long long plane = rest / out_h;
        const long long x_base = plane * in_h * in_w;
        const int by = oy * downy - pady0;  // upsampled-input row (before padding) seen by tap ky = 0
        const int bx = ox * downx - padx0;
        float acc = 0.f;
        for (int ky = first_aligned_tap(by, upy); ky < fh; ky += upy) {
            const int iy = (by + ky) / upy;  // exact division
            if (iy < 0 || iy >= in_h) continue;
            const float* w_row = w + ky * fw;
            const long long x_row = x_base + (long long)iy * in_w;
            for (int kx = first_aligned_tap(bx, upx); kx < fw; kx += upx) {
                const int ix = (bx + kx) / upx;
                if (ix < 0 || ix >= in_w) continue;
                acc += w_row[kx] * load_f(x, x_row + ix);
            }
        }
        store_f(y, idx, acc);
    }
}

extern "C" {
__global__ void upfirdn2d_f32(const float* x, float* y, const float* w, int planes, int in_h, int in_w, int out_h,
                              int out_w, int upx, int upy, int downx, int downy, int padx0, int pady0, int fh,
                              int fw) {
    upfirdn2d_impl<float>(x, y, w, planes, in_h, in_w, out_h, out_w, upx, upy, downx, downy, padx0, pady0, fh, fw);
}
__global__ void upfirdn2d_f16(const __half* x, __half* y, const float* w, int planes, int in_h, int in_w,
                              int out_h, int out_w, int upx, int upy, int downx, int downy, int padx0, int pady0,
                              int fh, int fw) {
    upfirdn2d_impl<__half>(x, y, w, planes, in_h, in_w, out_h, out_w, upx, upy, downx, downy, padx0, pady0, fh, fw);
}
}
