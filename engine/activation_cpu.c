// Float32 activation kernels. The transcendental ones use a Cephes-style expf
// (range reduction to [-ln2/2, ln2/2], degree-6 polynomial, exponent built
// from bits; about 2 ulp) and Abramowitz–Stegun 7.1.26 for erf (absolute
// error below 1.5e-7), so every loop is straight-line code that vectorises.
// The float64 reference path stays in Go (activation.go) and the tests hold
// the two together.

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include "activation_cpu.h"
// No code here reads floating-point exception flags; without trapping math
// gcc turns the clamps and selects into blends and vectorises every loop.
// Products and sums stay separate roundings at every level (no fused
// multiply-add), so the levels give the same bits.
#pragma GCC optimize("no-trapping-math", "fp-contract=off")
#include <stdint.h>
#include <string.h>

#include "isa_cpu.h"

// Each loop is compiled once per ISA level (KILN_ISA_DISPATCH at the end).
#define BODY static inline __attribute__((always_inline))

static inline float exp_approx(float x) {
	// Clamp to keep 2^n representable; beyond these, expf is 0 or +Inf anyway.
	x = x < -87.3f ? -87.3f : x;
	x = x > 88.3f ? 88.3f : x;
	// Round to nearest with the 1.5·2²³ trick: no call, no branch.
	float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
	float r = x - n * 0.693359375f;
	r = r - n * -2.12194440e-4f;
	float p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r * r + r + 1.0f;
	int32_t e = ((int32_t)n + 127) << 23;
	float scale;
	memcpy(&scale, &e, sizeof scale);
	return p * scale;
}

// erf_exp returns erf(x) and sets *e to the exp(−x²) inside it, which
// GELU's backward reuses for its density (one exp, not two).
static inline float erf_exp(float x, float *e) {
	float ax = x < 0 ? -x : x;
	float t = 1.0f / (1.0f + 0.3275911f * ax);
	float y = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
	*e = exp_approx(-ax * ax);
	float r = 1.0f - y * *e;
	return x < 0 ? -r : r;
}

static inline float erf_approx(float x) {
	float e;
	return erf_exp(x, &e);
}

BODY void kiln_act_forward_f32_body(float *restrict out, const float *restrict x, size_t n, int kind) {
	switch (kind) {
	case 1:
		for (size_t i = 0; i < n; i++) {
			float v = x[i];
			out[i] = v < 0.0f ? 0.0f : v; // NaN passes through, as in PyTorch
		}
		break;
	case 2:
		for (size_t i = 0; i < n; i++) {
			float v = x[i];
			out[i] = 0.5f * v * (1.0f + erf_approx(v * 0.70710678118654752f));
		}
		break;
	case 3:
		for (size_t i = 0; i < n; i++)
			out[i] = 1.0f / (1.0f + exp_approx(-x[i]));
		break;
	case 4:
		for (size_t i = 0; i < n; i++) {
			// tanh(v) = 1 − 2/(e^{2v}+1): exact limits at ±Inf, no cancellation for large |v|.
			float v = x[i];
			float e = exp_approx(2.0f * v);
			float r = 1.0f - 2.0f / (e + 1.0f);
			// Near 0 the formula cancels; tanh(v) ≈ v(1 − v²/3) is better there.
			float small = v * (1.0f - v * v * (1.0f / 3.0f) + v * v * v * v * (2.0f / 15.0f));
			float av = v < 0 ? -v : v;
			out[i] = av < 0.0625f ? small : r;
		}
		break;
	}
}

// tail_zero is v·φ(v) where |v| is below 13.2 and 0 beyond: there exp_approx
// clamps −v²/2 at −87.3, so its φ stops falling at about 1e-38 and v·φ grew
// with v (GELU's derivative 2.46 at 3e38, NaN at ±Inf, where it is 1 or 0).
static inline float tail_zero(float v, float v_pdf) { return v * v < 174.6f ? v_pdf : 0.0f; }

BODY void kiln_act_backward_f32_body(float *restrict dx, const float *restrict dout, const float *restrict x,
                                  const float *restrict y, size_t n, int kind) {
	switch (kind) {
	case 1:
		for (size_t i = 0; i < n; i++)
			dx[i] = y[i] > 0.0f ? dout[i] : 0.0f;
		break;
	case 2:
		for (size_t i = 0; i < n; i++) {
			// Φ'(v) = exp(−v²/2)/√(2π), and erf's exp is exp(−(v/√2)²).
			float v = x[i], e;
			float cdf = 0.5f * (1.0f + erf_exp(v * 0.70710678118654752f, &e));
			float pdf = 0.3989422804014327f * e;
			dx[i] = dout[i] * (cdf + tail_zero(v, v * pdf));
		}
		break;
	case 3:
		for (size_t i = 0; i < n; i++) {
			float s = y[i];
			dx[i] = dout[i] * s * (1.0f - s);
		}
		break;
	case 4:
		for (size_t i = 0; i < n; i++) {
			float t = y[i];
			dx[i] = dout[i] * (1.0f - t * t);
		}
		break;
	}
}

// GELU's forward that keeps its derivative for the backward: out as
// kiln_act_forward_f32 (kind 2) computes it and deriv = Φ(v) + v·φ(v) as
// kiln_act_backward_f32 does, from the one erf and exp, so that
// kiln_mul_f32(dx, dout, deriv) gives the backward's bits.
BODY void kiln_gelu_forward_deriv_f32_body(float *restrict out, float *restrict deriv, const float *restrict x,
                                           size_t n) {
	for (size_t i = 0; i < n; i++) {
		float v = x[i], e;
		float r = erf_exp(v * 0.70710678118654752f, &e);
		out[i] = 0.5f * v * (1.0f + r);
		float cdf = 0.5f * (1.0f + r);
		float pdf = 0.3989422804014327f * e;
		deriv[i] = cdf + tail_zero(v, v * pdf);
	}
}

// dx = a·b element by element; dx may be a or b.
BODY void kiln_mul_f32_body(float *dx, const float *a, const float *b, size_t n) {
	for (size_t i = 0; i < n; i++) dx[i] = a[i] * b[i];
}

KILN_ISA_DISPATCH(kiln_gelu_forward_deriv_f32, (float *restrict out, float *restrict deriv, const float *restrict x, size_t n), (out, deriv, x, n))
KILN_ISA_DISPATCH(kiln_mul_f32, (float *dx, const float *a, const float *b, size_t n), (dx, a, b, n))
KILN_ISA_DISPATCH(kiln_act_forward_f32, (float *restrict out, const float *restrict x, size_t n, int kind), (out, x, n, kind))
KILN_ISA_DISPATCH(kiln_act_backward_f32, (float *restrict dx, const float *restrict dout, const float *restrict x, const float *restrict y, size_t n, int kind), (dx, dout, x, y, n, kind))

#endif // __x86_64__
