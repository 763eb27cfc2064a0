// Channel concatenation on flat float32 buffers (engine/concat.go) and its
// backward, the split.
//
// concat_*: grid.y walks the samples (grid-stride), grid.x the columns of
// one sample's slice (grid-stride); up to four parts per launch. Pure copies.
#include "common.cuh"

// Which of the (up to four) parts column j of a sample's slice falls in; j
// becomes the column within that part.
static __device__ __forceinline__ int concat_part(long long* j, long long b0, long long b1, long long b2) {
	if (*j < b0) return 0;
	if ((*j -= b0) < b1) return 1;
	if ((*j -= b1) < b2) return 2;
	*j -= b2;
	return 3;
}

// Copies the parts into columns [at, at + Σb) of each catBlock-long sample
// of cat. A part with b = 0 is skipped.
KILN_KERNEL concat_forward_f32(float* cat, int n, long long catBlock, long long at, const float* p0, long long b0,
                               const float* p1, long long b1, const float* p2, long long b2, const float* p3,
                               long long b3) {
	long long w = b0 + b1 + b2 + b3;
	for (long long s = blockIdx.y; s < n; s += gridDim.y) {
		float* row = cat + s * catBlock + at;
		for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < w;
		     j += (long long)blockDim.x * gridDim.x) {
			long long jj = j;
			int q = concat_part(&jj, b0, b1, b2);
			const float* p = q == 0 ? p0 : q == 1 ? p1 : q == 2 ? p2 : p3;
			long long b = q == 0 ? b0 : q == 1 ? b1 : q == 2 ? b2 : b3;
			row[j] = p[s * b + jj];
		}
	}
}

// The split: each part gets its columns of cat. A null part (a gradient
// nobody wants) is skipped, its columns still counted.
KILN_KERNEL concat_backward_f32(const float* cat, int n, long long catBlock, long long at, float* p0, long long b0,
                                float* p1, long long b1, float* p2, long long b2, float* p3, long long b3) {
	long long w = b0 + b1 + b2 + b3;
	for (long long s = blockIdx.y; s < n; s += gridDim.y) {
		const float* row = cat + s * catBlock + at;
		for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < w;
		     j += (long long)blockDim.x * gridDim.x) {
			long long jj = j;
			int q = concat_part(&jj, b0, b1, b2);
			float* p = q == 0 ? p0 : q == 1 ? p1 : q == 2 ? p2 : p3;
			long long b = q == 0 ? b0 : q == 1 ? b1 : q == 2 ? b2 : b3;
			if (p != nullptr) p[s * b + jj] = row[j];
		}
	}
}
