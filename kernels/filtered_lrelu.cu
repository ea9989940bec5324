// filtered_lrelu, fused forward: bias -> upsample + FIR (wu) -> leaky ReLU, gain, clamp -> FIR (wd) + downsample,
// without writing the upsampled intermediate to global memory.
//
// One block computes a tile of TILE_H x TILE_W outputs of one (n, c) plane. It first fills shared memory with the
// activated intermediate samples the tile needs ((TILE_H - 1) * down + fdh rows, likewise columns; the Python side
// sizes the dynamic shared memory), each the sum of the up-filter taps that land on input samples (bias added to
// x, as the reference does before upsampling), then each thread reduces its output from shared memory.
//
//   t[j, i] = sum_{ky, kx} wu[ky, kx] * (x + b)[(j + ky - pady0) / up, (i + kx - padx0) / up]   (exact divisions)
//   a = clamp(lrelu(t, slope) * gain)
//   y[oy, ox] = sum_{ky, kx} wd[ky, kx] * a[oy * down + ky, ox * down + kx]
//
// wu and wd are 2-D float correlation kernels (flipped, gains applied: up^2 on wu, as the reference). The backward
// pass is not fused: kernels/ops.py recomputes t with upfirdn2d and chains the upfirdn2d and bias_act kernels.
#include "common.cuh"

template <typename T>
__device__ void filtered_lrelu_impl(const T* __restrict__ x, const float* __restrict__ b, T* __restrict__ y,
                                    const float* __restrict__ wu, const float* __restrict__ wd, int channels,
                                    int in_h, int in_w, int out_h, int out_w, int up, int down, int padx0,
                                    int pady0, int fuh, int fuw, int fdh, int fdw, int has_bias, float gain,
                                    float slope, float clamp, int tile_h, int tile_w) {
    extern __shared__ float tmp[];
    const int tiles_x = (out_w + tile_w - 1) / tile_w;
    const int tile_y0 = (blockIdx.x / tiles_x) * tile_h;
    const int tile_x0 = (blockIdx.x % tiles_x) * tile_w;
    const long long plane = blockIdx.y;  // n * channels + c
    const float bias = has_bias ? b[plane % channels] : 0.f;
    const long long x_base = plane * in_h * in_w;
    const int tmp_h = (tile_h - 1) * down + fdh;
    const int tmp_w = (tile_w - 1) * down + fdw;
    const int ty0 = tile_y0 * down;  // intermediate row of tmp[0]
    const int tx0 = tile_x0 * down;

    // 1. The activated intermediate samples of this tile.
    for (int k = threadIdx.x; k < tmp_h * tmp_w; k += blockDim.x) {
        const int by = ty0 + k / tmp_w - pady0;
        const int bx = tx0 + k % tmp_w - padx0;
        float acc = 0.f;
        for (int ky = first_aligned_tap(by, up); ky < fuh; ky += up) {
            const int iy = (by + ky) / up;
            if (iy < 0 || iy >= in_h) continue;
            for (int kx = first_aligned_tap(bx, up); kx < fuw; kx += up) {
                const int ix = (bx + kx) / up;
                if (ix < 0 || ix >= in_w) continue;
                acc += wu[ky * fuw + kx] * (load_f(x, x_base + (long long)iy * in_w + ix) + bias);
            }
        }
        acc = (acc > 0.f ? acc : acc * slope) * gain;
        if (clamp >= 0.f) acc = fminf(fmaxf(acc, -clamp), clamp);
        tmp[k] = acc;
    }
    __syncthreads();

    // 2. Downsampling filter over shared memory.
    for (int k = threadIdx.x; k < tile_h * tile_w; k += blockDim.x) {
        const int oy = tile_y0 + k / tile_w;
        const int ox = tile_x0 + k % tile_w;
        if (oy >= out_h || ox >= out_w) continue;
        const int sy = (k / tile_w) * down;
        const int sx = (k % tile_w) * down;
        float acc = 0.f;
        for (int ky = 0; ky < fdh; ++ky) {
            const float* row = tmp + (sy + ky) * tmp_w + sx;
            const float* w_row = wd + ky * fdw;
            for (int kx = 0; kx < fdw; ++kx) acc += w_row[kx] * row[kx];
        }
        store_f(y, (plane * out_h + oy) * out_w + ox, acc);
    }
}

extern "C" {
__global__ void filtered_lrelu_f32(const float* x, const float* b, float* y, const float* wu, const float* wd,
                                   int channels, int in_h, int in_w, int out_h, int out_w, int up, int down,
                                   int padx0, int pady0, int fuh, int fuw, int fdh, int fdw, int has_bias,
                                   float gain, float slope, float clamp, int tile_h, int tile_w) {
    filtered_lrelu_impl<float>(x, b, y, wu, wd, channels, in_h, in_w, out_h, out_w, up, down, padx0, pady0, fuh, fuw,
                               fdh, fdw, has_bias, gain, slope, clamp, tile_h, tile_w);
}
__global__ void filtered_lrelu_f16(const __half* x, const float* b, __half* y, const float* wu, const float* wd,
                                   int channels, int in_h, int in_w, int out_h, int out_w, int up, int down,
                                   int padx0, int pady0, int fuh, int fuw, int fdh, int fdw, int has_bias,
                                   float gain, float slope, float clamp, int tile_h, int tile_w) {
    filtered_lrelu_impl<__half>(x, b, y, wu, wd, channels, in_h, in_w, out_h, out_w, up, down, padx0, pady0, fuh,
                                fuw, fdh, fdw, has_bias, gain, slope, clamp, tile_h, tile_w);
}
}
