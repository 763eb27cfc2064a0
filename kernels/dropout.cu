// Inverted dropout (engine/dropout.go is the CPU op), forward and backward.
//
// The mask is the CPU's, bit for bit: element i of a call keeps its value
// when the (offset+i)-th SplitMix64 output for seed, shifted right by 11 (a
// 53-bit uniform), is at least threshold = ⌈p·2⁵³⌉; kept values are scaled
// by scale = 1/(1−p). Counter-based, so no state lives on the device and a
// thread's draw does not depend on the launch shape.
//
// Launch: any 1-D grid and block; grid-stride loops. out may be x, dx may
// be dout.
#include "common.cuh"

__device__ __forceinline__ unsigned long long dropout_splitmix64(unsigned long long seed, unsigned long long i) {
	unsigned long long z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

// mask = scale or 0 from the stream at offset; out = x·mask.
KILN_KERNEL dropout_forward_f32(float* out, float* mask, const float* x, unsigned long long seed,
                                unsigned long long offset, unsigned long long threshold, float scale,
                                long long n) {
	KILN_FOR(i, n) {
		float m = (dropout_splitmix64(seed, offset + (unsigned long long)i) >> 11) >= threshold ? scale : 0.0f;
		mask[i] = m;
		out[i] = x[i] * m;
	}
}

// dx = dout·mask.
KILN_KERNEL dropout_backward_f32(float* dx, const float* dout, const float* mask, long long n) {
	KILN_FOR(i, n) dx[i] = dout[i] * mask[i];
}
