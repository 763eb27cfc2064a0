// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include "optim_cpu.h"
// No code here reads floating-point exception flags or errno: gcc may then
// vectorise sqrtf and keep every loop straight-line.
#pragma GCC optimize("no-trapping-math", "no-math-errno")
#include <math.h>

#define CLONES __attribute__((target_clones("avx2", "default")))

// The same arithmetic, in the same order, as sgdStep in optim.go; the
// Nesterov choice is made once, outside the loop.
CLONES void kiln_sgd_step_f32(float* restrict w, const float* restrict g, float* restrict buf,
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

CLONES void kiln_adamw_step_f32(float* restrict w, const float* restrict g, float* restrict m,
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

#endif // __x86_64__
