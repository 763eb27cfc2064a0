// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include "optim_cpu.h"
// No code here reads floating-point exception flags or errno: gcc may then
// vectorise sqrtf and keep every loop straight-line.
// Products and sums stay separate roundings at every level (no fused
// multiply-add), as optim.go does them.
#pragma GCC optimize("no-trapping-math", "no-math-errno", "fp-contract=off")
#include <math.h>

#include "isa_cpu.h"

// Each loop is compiled once per ISA level (KILN_ISA_DISPATCH at the end).
#define BODY static inline __attribute__((always_inline))

// The same arithmetic, in the same order, as sgdStep in optim.go; the
// Nesterov choice is made once, outside the loop.
BODY void kiln_sgd_step_f32_body(float* restrict w, const float* restrict g, float* restrict buf,
                              size_t n, float lr, float mu, float wd, int nesterov) {
	if (!buf) {
		for (size_t i = 0; i < n; i++) w[i] -= lr * (g[i] + wd * w[i]);
		return;
	}
	if (nesterov) {
		for (size_t i = 0; i < n; i++) {
			float d = g[i] + wd * w[i];
			float b = mu * buf[i] + d;
			buf[i] = b;
			w[i] -= lr * (d + mu * b);
		}
		return;
	}
	for (size_t i = 0; i < n; i++) {
		float d = g[i] + wd * w[i];
		float b = mu * buf[i] + d;
		buf[i] = b;
		w[i] -= lr * b;
	}
}

BODY void kiln_adamw_step_f32_body(float* restrict w, const float* restrict g, float* restrict m,
                                float* restrict v, size_t n, float b1, float b2, float step_size,
                                float rbc2, float decay, float eps) {
	for (size_t i = 0; i < n; i++) {
		float gi = g[i];
		float mi = b1 * m[i] + (1 - b1) * gi;
		float vi = b2 * v[i] + (1 - b2) * gi * gi;
		m[i] = mi;
		v[i] = vi;
		w[i] = w[i] * decay - step_size * mi / (sqrtf(vi) * rbc2 + eps);
	}
}

KILN_ISA_DISPATCH(kiln_sgd_step_f32, (float *restrict w, const float *restrict g, float *restrict buf, size_t n, float lr, float mu, float wd, int nesterov), (w, g, buf, n, lr, mu, wd, nesterov))
KILN_ISA_DISPATCH(kiln_adamw_step_f32, (float *restrict w, const float *restrict g, float *restrict m, float *restrict v, size_t n, float b1, float b2, float step_size, float rbc2, float decay, float eps), (w, g, m, v, n, b1, b2, step_size, rbc2, decay, eps))

#endif // __x86_64__
