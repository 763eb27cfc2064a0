// Linear's epilogues on row-major float32 matrices (engine/linear.go; the
// product itself is gemm.cu's): the bias add and the bias gradient.
#include "common.cuh"

// Linear: out[i, j] += b[j] over an n×o row-major matrix. Any grid.
KILN_KERNEL linear_bias_add_f32(float* out, const float* b, int n, int o) {
	KILN_FOR(e, (long long)n * o) out[e] += b[e % o];
}

// Linear: db[j] += Σ_i dout[i, j]. Block (32, 8): 32 columns, 8 row
// partitions summed in a fixed order through shared memory; grid
// ⌈o/32⌉ (capped, grid-stride over column blocks).
KILN_KERNEL linear_bias_grad_f32(float* db, const float* dout, int n, int o) {
	__shared__ float part[8][33];
	const int tx = threadIdx.x, ty = threadIdx.y;
	for (int j0 = blockIdx.x * 32; j0 < o; j0 += gridDim.x * 32) {
		int j = j0 + tx;
		float s = 0.0f;
		if (j < o)
			for (int i = ty; i < n; i += 8) s += dout[(long long)i * o + j];
		part[ty][tx] = s;
		__syncthreads();
		if (ty == 0 && j < o) {
			float t = part[0][tx];
			for (int r = 1; r < 8; r++) t += part[r][tx];
			db[j] += t;
		}
		__syncthreads();
	}
}
