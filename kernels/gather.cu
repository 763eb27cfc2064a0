// Row gathers on flat float32 buffers: GatherRows (engine/gather.go).
#include "common.cuh"

// out[r,:] = src[idx[r],:] — a batch gathered from a data set kept on the GPU.
KILN_KERNEL gather_rows_f32(float* out, const float* src, const int* idx, int rows, long long rowlen) {
	KILN_FOR(i, (long long)rows * rowlen) {
		long long r = i / rowlen, c = i - r * rowlen;
		out[i] = src[(long long)idx[r] * rowlen + c];
	}
}
