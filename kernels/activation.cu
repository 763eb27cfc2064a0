// Element-wise activations, forward and backward: ReLU, GELU (exact erf
// form), sigmoid and tanh (engine/activation.go is the CPU op).
//
// Launch: any 1-D grid and block; every kernel loops with a grid stride
// over n elements. Outputs may alias inputs (each element is read before it
// is written, by the same thread), so no pointer is __restrict__.
//
// Numerics: CUDA's erff, expf and tanhf (a few ulp); ReLU and its backward
// are exact, and let a NaN through as the CPU op does (no fmaxf).
#include "common.cuh"

#define ACTIVATION_INV_SQRT2 0.70710678118654752f
#define ACTIVATION_INV_SQRT2PI 0.3989422804014327f

// out = max(x, 0), NaN kept.
__device__ __forceinline__ float act_relu(float v) { return v < 0.0f ? 0.0f : v; }

// Both ReLU passes take four elements at a time when their tensors are
// 16-byte aligned, the last n mod 4 one at a time.
KILN_KERNEL relu_forward_f32(float* out, const float* x, long long n) {
	long long n4 = kiln_aligned16(out, x) ? n / 4 : 0;
	KILN_FOR(q, n4) {
		float4 v = kiln_ld4(x + 4 * q);
		kiln_st4(out + 4 * q, make_float4(act_relu(v.x), act_relu(v.y), act_relu(v.z), act_relu(v.w)));
	}
	KILN_FOR(r, n - 4 * n4) {
		long long i = 4 * n4 + r;
		out[i] = act_relu(x[i]);
	}
}

// dx = dout where y > 0, else 0; y is the forward output or input.
KILN_KERNEL relu_backward_f32(float* dx, const float* dout, const float* y, long long n) {
	long long n4 = kiln_aligned16(dx, dout, y) ? n / 4 : 0;
	KILN_FOR(q, n4) {
		float4 d = kiln_ld4(dout + 4 * q), v = kiln_ld4(y + 4 * q);
		kiln_st4(dx + 4 * q, make_float4(v.x > 0.0f ? d.x : 0.0f, v.y > 0.0f ? d.y : 0.0f, v.z > 0.0f ? d.z : 0.0f,
		                                 v.w > 0.0f ? d.w : 0.0f));
	}
	KILN_FOR(r, n - 4 * n4) {
		long long i = 4 * n4 + r;
		dx[i] = y[i] > 0.0f ? dout[i] : 0.0f;
	}
}

// out = x·Φ(x).
KILN_KERNEL gelu_forward_f32(float* out, const float* x, long long n) {
	KILN_FOR(i, n) {
		float v = x[i];
		out[i] = 0.5f * v * (1.0f + erff(v * ACTIVATION_INV_SQRT2));
	}
}

// dx = dout·(Φ(x) + x·φ(x)); x is the forward input.
KILN_KERNEL gelu_backward_f32(float* dx, const float* dout, const float* x, long long n) {
	KILN_FOR(i, n) {
		float v = x[i];
		float cdf = 0.5f * (1.0f + erff(v * ACTIVATION_INV_SQRT2));
		float pdf = ACTIVATION_INV_SQRT2PI * expf(-0.5f * v * v);
		dx[i] = dout[i] * (cdf + v * pdf);
	}
}

// out = 1/(1+e^-x): 0 and 1 at the extremes, never NaN for finite x.
KILN_KERNEL sigmoid_forward_f32(float* out, const float* x, long long n) {
	KILN_FOR(i, n) out[i] = 1.0f / (1.0f + expf(-x[i]));
}

// dx = dout·y(1−y); y is the forward output.
KILN_KERNEL sigmoid_backward_f32(float* dx, const float* dout, const float* y, long long n) {
	KILN_FOR(i, n) {
		float s = y[i];
		dx[i] = dout[i] * s * (1.0f - s);
	}
}

KILN_KERNEL tanh_forward_f32(float* out, const float* x, long long n) {
	KILN_FOR(i, n) out[i] = tanhf(x[i]);
}

// dx = dout·(1−y²); y is the forward output.
KILN_KERNEL tanh_backward_f32(float* dx, const float* dout, const float* y, long long n) {
	KILN_FOR(i, n) {
		float t = y[i];
		dx[i] = dout[i] * (1.0f - t * t);
	}
}
