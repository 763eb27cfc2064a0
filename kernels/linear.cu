// Linear's bias gradient on row-major float32 matrices (engine/linear.go;
// the products are gemm.cu's, whose epilogue adds the bias and applies a
// fused ReLU).
#include "common.cuh"

// Linear: db[j] += Σ_i dout[i, j]. Block (32, 8): 32 columns, 8 row
// partitions summed in a fixed order through shared memory; grid
// ⌈o/32⌉ (capped, grid-stride over column blocks). With relu_out (the
// output of a Linear fused with its ReLU) dout passes only where relu_out is
// positive, as relu_backward_f32 passes it, and the masked gradient is
// written to dpre for the products that follow; db may then be null.
KILN_KERNEL linear_bias_grad_f32(float* db, const float* dout, int n, int o, float* dpre, const float* relu_out) {
	__shared__ float part[8][33];
	const int tx = threadIdx.x, ty = threadIdx.y;
	for (int j0 = blockIdx.x * 32; j0 < o; j0 += gridDim.x * 32) {
		int j = j0 + tx;
		float s = 0.0f;
		if (j < o)
			for (int i = ty; i < n; i += 8) {
				long long e = (long long)i * o + j;
				float d = dout[e];
				if (relu_out != nullptr) {
					d = relu_out[e] > 0.0f ? d : 0.0f;
					dpre[e] = d;
				}
				s += d;
			}
		part[ty][tx] = s;
		__syncthreads();
		if (ty == 0 && j < o && db != nullptr) {
			float t = part[0][tx];
			for (int r = 1; r < 8; r++) t += part[r][tx];
			db[j] += t;
		}
		__syncthreads();
	}
}
