// Element-wise arithmetic on flat float32 buffers: fill, add, scale, axpy,
// bf16 rounding, and the sum of squares.
#include "common.cuh"

KILN_KERNEL fill_f32(float* out, float v, long long n) {
	KILN_FOR(i, n) out[i] = v;
}

KILN_KERNEL add_f32(float* out, const float* a, const float* b, long long n) {
	KILN_FOR(i, n) out[i] = a[i] + b[i];
}

KILN_KERNEL scale_f32(float* x, float s, long long n) {
	KILN_FOR(i, n) x[i] *= s;
}

// dst += alpha·src
KILN_KERNEL axpy_f32(float* dst, const float* src, float alpha, long long n) {
	KILN_FOR(i, n) dst[i] += alpha * src[i];
}

// out = x rounded to bf16 (kiln_to_bf16), widened back to float32.
KILN_KERNEL round_bf16_f32(float* out, const float* x, long long n) {
	KILN_FOR(i, n) out[i] = kiln_to_bf16(x[i]);
}

// One partial sum of squares per block into partial[blockIdx.x]; the host
// adds the partials in order, so the result does not depend on timing.
KILN_KERNEL sum_squares_f32(float* partial, const float* x, long long n) {
	__shared__ float warp_sums[32];
	float s = 0;
	KILN_FOR(i, n) s += x[i] * x[i];
	s = kiln_warp_sum(s);
	unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
	if (lane == 0) warp_sums[warp] = s;
	__syncthreads();
	if (warp == 0) {
		s = lane < (blockDim.x + 31) / 32 ? warp_sums[lane] : 0.0f;
		s = kiln_warp_sum(s);
		if (lane == 0) partial[blockIdx.x] = s;
	}
}

// clip_coef_f32: coef[0] = the factor that brings the global L2 norm
// √Σ partial down to max_norm, max_norm/(norm + 1e-6), or 1 when the norm
// is within it (or NaN), as engine.ClipByGlobalNorm computes it on the CPU.
// partial holds the sum_squares_f32 blocks of every tensor, added here in
// order in double by one thread: the same sum every run.
KILN_KERNEL clip_coef_f32(float* coef, const float* partial, int n, double max_norm) {
	if (blockIdx.x != 0 || threadIdx.x != 0) return;
	double s = 0.0;
	for (int i = 0; i < n; i++) s += (double)partial[i];
	double norm = sqrt(s);
	coef[0] = norm > max_norm ? (float)(max_norm / (norm + 1e-6)) : 1.0f;
}

// x *= coef[0], a factor on the device (clip_coef_f32's); nothing to do
// when it is 1.
KILN_KERNEL scale_by_f32(float* x, const float* coef, long long n) {
	float c = coef[0];
	if (c == 1.0f) return;
	KILN_FOR(i, n) x[i] *= c;
}
