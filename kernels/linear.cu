// Linear's bias gradient on row-major float32 matrices (engine/linear.go;
// the products are gemm.cu's, whose epilogue adds the bias and applies a
// fused ReLU).
#include "common.cuh"

// Linear: db[j] += Σ_i dout[i, j]. Block (32, 8): 32 columns, 8 row
// partitions summed in a fixed order through shared memory; grid
// (⌈o/32⌉ capped, grid-stride over column blocks; splits), split s taking
// rows [s·per, (s+1)·per). One split adds its sums to out = db; more write
// out[s·o + j], which gemm_splitk_reduce_f32 adds to db in split order. With
// relu_out (the output of a Linear fused with its ReLU) dout passes only
// where relu_out is positive, as relu_backward_f32 passes it, and the
// masked gradient is written to dpre for the products that follow; out may
// then be null.
KILN_KERNEL linear_bias_grad_f32(float* out, const float* dout, int n, int o, int per, float* dpre,
                                 const float* relu_out) {
	__shared__ float part[8][33];
	const int tx = threadIdx.x, ty = threadIdx.y;
	const int i0 = blockIdx.y * per, i1 = min(n, i0 + per);
	for (int j0 = blockIdx.x * 32; j0 < o; j0 += gridDim.x * 32) {
		int j = j0 + tx;
		float s = 0.0f;
		if (j < o)
			for (int i = i0 + ty; i < i1; i += 8) {
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
		if (ty == 0 && j < o && out != nullptr) {
			float t = part[0][tx];
			for (int r = 1; r < 8; r++) t += part[r][tx];
			if (gridDim.y == 1)
				out[j] += t;
			else
				out[(long long)blockIdx.y * o + j] = t;
		}
		__syncthreads();
	}
}
