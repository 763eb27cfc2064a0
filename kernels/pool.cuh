// pool.cuh: the index helpers pool.cu and channelpool.cu share.
#pragma once
#include "common.cuh"

// q = i / d and *rem = i % d, in 32 bits when small (i < 2^31): a 64-bit
// division costs several times more instructions on the GPU, enough to make
// these bandwidth-bound kernels compute-bound. small is uniform per launch.
static __device__ __forceinline__ long long pool_divmod(long long i, int d, int* rem, bool small) {
	if (small) {
		unsigned int u = (unsigned int)i;
		*rem = (int)(u % (unsigned int)d);
		return u / (unsigned int)d;
	}
	*rem = (int)(i % d);
	return i / d;
}

static __device__ __forceinline__ bool pool_small(long long total) { return total <= 0x7fffffffLL; }

static __device__ __forceinline__ float pool_neg_inf() { return __int_as_float((int)0xff800000u); }
