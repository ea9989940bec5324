// bias_act: y = clamp(act(x + b) * gain, -clamp, clamp), the activations of the official op, and its gradient.
//
// act codes (kernels/ops.py ACT_CODES): 0 linear, 1 relu, 2 lrelu, 3 tanh, 4 sigmoid, 5 elu, 6 selu, 7 softplus,
// 8 swish. clamp < 0 disables clamping. The bias (float, may be absent: has_bias = 0) is broadcast along the
// channel axis: element i has channel (i / inner) % channels, with inner = the product of the axes after it.
//
// Backward: dx = dy * gain * act'(x + b), and 0 where the forward output was clamped (|y| >= clamp, as the official
// kernel). It recomputes x + b and y instead of storing them; the bias gradient is dx summed in torch.
#include "common.cuh"

__device__ __forceinline__ float sigmoid_f(float v) { return 1.f / (1.f + expf(-v)); }

__device__ __forceinline__ float act_forward(int act, float v, float alpha) {
    switch (act) {
        case 1: return v > 0.f ? v : 0.f;
        case 2: return v > 0.f ? v : v * alpha;
        case 3: return tanhf(v);
        case 4: return sigmoid_f(v);
        case 5: return v > 0.f ? v : expm1f(v);
        case 6: return 1.0507009873554805f * (v > 0.f ? v : 1.6732632423543772f * expm1f(v));
        case 7: return v > 20.f ? v : log1pf(expf(v));
        case 8: return v * sigmoid_f(v);
        default: return v;
    }
}

__device__ __forceinline__ float act_derivative(int act, float v, float alpha) {
    switch (act) {
        case 1: return v > 0.f ? 1.f : 0.f;
        case 2: return v > 0.f ? 1.f : alpha;
        case 3: { const float t = tanhf(v); return 1.f - t * t; }
        case 4: { const float s = sigmoid_f(v); return s * (1.f - s); }
        case 5: return v > 0.f ? 1.f : expf(v);
        case 6: return 1.0507009873554805f * (v > 0.f ? 1.f : 1.6732632423543772f * expf(v));
        case 7: return v > 20.f ? 1.f : sigmoid_f(v);
        case 8: { const float s = sigmoid_f(v); return s + v * s * (1.f - s); }
        default: return 1.f;
    }
}

template <typename T>
__device__ void bias_act_forward_impl(const T* __restrict__ x, const float* __restrict__ b, T* __restrict__ y,
                                      long long n, int has_bias, int channels, long long inner, int act,
                                      float alpha, float gain, float clamp) {
    GRID_STRIDE_LOOP(i, n) {
        float v = load_f(x, i);
        if (has_bias) v += b[(i / inner) % channels];
        v = act_forward(act, v, alpha) * gain;
        if (clamp >= 0.f) v = fminf(fmaxf(v, -clamp), clamp);
        store_f(y, i, v);
    }
}

template <typename T>
__device__ void bias_act_backward_impl(const T* __restrict__ dy, const T* __restrict__ x,
                                       const float* __restrict__ b, T* __restrict__ dx, long long n, int has_bias,
                                       int channels, long long inner, int act, float alpha, float gain,
                                       float clamp) {
    GRID_STRIDE_LOOP(i, n) {
        float v = load_f(x, i);
        if (has_bias) v += b[(i / inner) % channels];
        float g = load_f(dy, i) * gain * act_derivative(act, v, alpha);
        if (clamp >= 0.f && fabsf(act_forward(act, v, alpha) * gain) >= clamp) g = 0.f;
        store_f(dx, i, g);
    }
}

extern "C" {
__global__ void bias_act_forward_f32(const float* x, const float* b, float* y, long long n, int has_bias,
                                     int channels, long long inner, int act, float alpha, float gain, float clamp) {
    bias_act_forward_impl<float>(x, b, y, n, has_bias, channels, inner, act, alpha, gain, clamp);
}
__global__ void bias_act_forward_f16(const __half* x, const float* b, __half* y, long long n, int has_bias,
                                     int channels, long long inner, int act, float alpha, float gain, float clamp) {
    bias_act_forward_impl<__half>(x, b, y, n, has_bias, channels, inner, act, alpha, gain, clamp);
}
__global__ void bias_act_backward_f32(const float* dy, const float* x, const float* b, float* dx, long long n,
                                      int has_bias, int channels, long long inner, int act, float alpha, float gain,
                                      float clamp) {
    bias_act_backward_impl<float>(dy, x, b, dx, n, has_bias, channels, inner, act, alpha, gain, clamp);
}
__global__ void bias_act_backward_f16(const __half* dy, const __half* x, const float* b, __half* dx, long long n,
                                      int has_bias, int channels, long long inner, int act, float alpha, float gain,
                                      float clamp) {
    bias_act_backward_impl<__half>(dy, x, b, dx, n, has_bias, channels, inner, act, alpha, gain, clamp);
}
}
