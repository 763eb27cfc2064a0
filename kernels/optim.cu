// Fused optimiser updates (engine/optim.go is the CPU op), one pass over a
// parameter, its gradient and its state: SGD with momentum (and Nesterov)
// and AdamW. The hyper-parameters arrive as the float32 values the CPU's
// float32 path uses, and each update is the CPU's sequence of float
// operations (nvcc may fuse a multiply-add, one rounding fewer).
//
// Launch: any 1-D grid and block; grid-stride loops.
#include "common.cuh"

// g' = g + wd·w; buf = mu·buf + g'; step = buf, or g' + mu·buf (Nesterov);
// w −= lr·step. buf null: w −= lr·g' (no momentum).
KILN_KERNEL sgd_step_f32(float* w, const float* g, float* buf, float lr, float mu, float wd, int nesterov,
                         long long n) {
	if (buf == nullptr) {
		KILN_FOR(i, n) w[i] -= lr * (g[i] + wd * w[i]);
		return;
	}
	KILN_FOR(i, n) {
		float d = g[i] + wd * w[i];
		float b = mu * buf[i] + d;
		buf[i] = b;
		d = nesterov ? d + mu * b : b;
		w[i] -= lr * d;
	}
}

// m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g²;
// w = w·decay − step·m/(√v·rbc2 + eps) with decay = 1 − lr·wd,
// step = lr/(1 − b1^t), rbc2 = 1/√(1 − b2^t).
KILN_KERNEL adamw_step_f32(float* w, const float* g, float* m, float* v, float b1, float b2, float step,
                           float rbc2, float decay, float eps, long long n) {
	KILN_FOR(i, n) {
		float gi = g[i];
		float mi = b1 * m[i] + (1.0f - b1) * gi;
		float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
		m[i] = mi;
		v[i] = vi;
		w[i] = w[i] * decay - step * mi / (sqrtf(vi) * rbc2 + eps);
	}
}
