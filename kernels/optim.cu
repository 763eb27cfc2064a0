// Fused optimiser updates (engine/optim.go is the CPU op), one pass over a
// parameter, its gradient and its state: SGD with momentum (and Nesterov)
// and AdamW. The hyper-parameters arrive as the float32 values the CPU's
// float32 path uses, and each update is the CPU's sequence of float
// operations (nvcc may fuse a multiply-add, one rounding fewer).
//
// Launch: any 1-D grid and block; grid-stride loops.
#include "common.cuh"

// The updates of one element, which the one-tensor and the multi-tensor
// kernels share: the same bits either way.

// g' = g + wd·w; buf = mu·buf + g'; step = buf, or g' + mu·buf (Nesterov);
// w −= lr·step. buf null: w −= lr·g' (no momentum).
__device__ __forceinline__ void sgd_update(float* w, const float* g, float* buf, long long i, float lr, float mu,
                                           float wd, int nesterov) {
	if (buf == nullptr) {
		w[i] -= lr * (g[i] + wd * w[i]);
		return;
	}
	float d = g[i] + wd * w[i];
	float b = mu * buf[i] + d;
	buf[i] = b;
	d = nesterov ? d + mu * b : b;
	w[i] -= lr * d;
}

// m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g²;
// w = w·decay − step·m/(√v·rbc2 + eps) with decay = 1 − lr·wd,
// step = lr/(1 − b1^t), rbc2 = 1/√(1 − b2^t).
__device__ __forceinline__ void adamw_update(float* w, const float* g, float* m, float* v, long long i, float b1,
                                             float b2, float step, float rbc2, float decay, float eps) {
	float gi = g[i];
	float mi = b1 * m[i] + (1.0f - b1) * gi;
	float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
	m[i] = mi;
	v[i] = vi;
	w[i] = w[i] * decay - step * mi / (sqrtf(vi) * rbc2 + eps);
}

KILN_KERNEL sgd_step_f32(float* w, const float* g, float* buf, float lr, float mu, float wd, int nesterov,
                         long long n) {
	KILN_FOR(i, n) sgd_update(w, g, buf, i, lr, mu, wd, nesterov);
}

KILN_KERNEL adamw_step_f32(float* w, const float* g, float* m, float* v, float b1, float b2, float step,
                           float rbc2, float decay, float eps, long long n) {
	KILN_FOR(i, n) adamw_update(w, g, m, v, i, b1, b2, step, rbc2, decay, eps);
}

// The multi-tensor updates: every parameter of a model in one launch. The
// host cuts the parameters into chunks (engine/optim_cuda.go, 2048 elements,
// these layouts), uploads the table once for a set of tensors, and each
// block takes chunks grid-stride: any 1-D grid and block.

struct kiln_sgd_chunk {
	float* w;
	const float* g;
	float* buf; // null without momentum
	long long n;
	float wd;
	int pad;
};

struct kiln_adamw_chunk {
	float* w;
	const float* g;
	float* m;
	float* v;
	long long n;
	float decay; // 1 − lr·wd, or 1 for a parameter without decay
	int pad;
};

// engine/optim_cuda.go builds the tables with these layouts (sgdChunk,
// adamWChunk; TestOptimChunkLayout holds the Go side to the same numbers).
static_assert(sizeof(kiln_sgd_chunk) == 40 && offsetof(kiln_sgd_chunk, wd) == 32, "kiln_sgd_chunk layout");
static_assert(sizeof(kiln_adamw_chunk) == 48 && offsetof(kiln_adamw_chunk, decay) == 40, "kiln_adamw_chunk layout");

KILN_KERNEL sgd_step_multi_f32(const kiln_sgd_chunk* chunks, int nchunks, float lr, float mu, int nesterov) {
	for (int c = blockIdx.x; c < nchunks; c += gridDim.x) {
		const kiln_sgd_chunk ch = chunks[c];
		for (long long i = threadIdx.x; i < ch.n; i += blockDim.x)
			sgd_update(ch.w, ch.g, ch.buf, i, lr, mu, ch.wd, nesterov);
	}
}

KILN_KERNEL adamw_step_multi_f32(const kiln_adamw_chunk* chunks, int nchunks, float b1, float b2, float step,
                                 float rbc2, float eps) {
	for (int c = blockIdx.x; c < nchunks; c += gridDim.x) {
		const kiln_adamw_chunk ch = chunks[c];
		for (long long i = threadIdx.x; i < ch.n; i += blockDim.x)
			adamw_update(ch.w, ch.g, ch.m, ch.v, i, b1, b2, step, rbc2, ch.decay, eps);
	}
}
