// Normalisation on float32 tensors: batch norm (training with batch
// statistics and the running-statistics update, evaluation with the running
// statistics, both backward passes) over (N,C,HW) and layer norm over rows of
// D values, forward and backward. The Go launchers are engine/norm_cuda.go;
// the spatial gating unit (engine/gating_cuda.go) runs the layer-norm kernels
// on strided rows.
//
// Launch assumptions: the block reductions take whole warps (blockDim.x a
// multiple of 32, at most 1024); layer-norm rows are one warp each (any 1-D
// grid of whole warps, grid-stride over rows); layernorm_backward_params
// takes blocks of at most 32×8, grid (⌈d/blockDim.x⌉, chunks); the
// batch-norm reductions take grid (chunks, C), `chunk` values of a channel
// per block; the element and per-channel kernels any 1-D grid.
//
// Determinism: no atomics. Every reduction has a fixed shape (per warp, per
// block, then partial sums added in index order by one thread), so a result
// depends only on the shapes, never on timing.
//
// Numerics: sums in float (FP32 accumulation, tree order within a block);
// the per-channel batch-norm finishing steps (combining chunk statistics,
// running statistics, the affine coefficients) in double with the CPU's
// double momentum and ε,
// since they are O(C) work. Each chunk's variance is two-pass (mean, then
// squared deviations) and the chunks are combined with Chan's formula, so a
// large mean does not cancel the variance away.
#include "common.cuh"

// Sum over the block; every thread gets the total. scratch is __shared__
// float[32]; the trailing barrier lets the caller reuse it at once.
static __device__ float norm_block_sum(float v, float* scratch) {
	unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
	v = kiln_warp_sum(v);
	if (lane == 0) scratch[warp] = v;
	__syncthreads();
	v = lane < nwarps ? scratch[lane] : 0.0f;
	v = kiln_warp_sum(v);
	__syncthreads();
	return v;
}

// ---- Layer norm -----------------------------------------------------------

// One warp per row r: out[r·out_stride + j] = (x − mean)·rstd·γ[j] + β[j]
// over the row's d values x[r·x_stride + j]. mean, rstd (one per row), gamma
// and beta may be null. out may be x (same stride): each lane rewrites only
// what it has read.
KILN_KERNEL layernorm_forward_f32(float* out, float* mean, float* rstd, const float* x, const float* gamma,
                                  const float* beta, int rows, int d, int x_stride, int out_stride, float eps) {
	int lane = threadIdx.x % 32;
	long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
	long long nwarps = (long long)gridDim.x * blockDim.x / 32;
	for (long long r = warp; r < rows; r += nwarps) {
		const float* xr = x + r * x_stride;
		float* orow = out + r * out_stride;
		float s = 0.0f;
		for (int j = lane; j < d; j += 32) s += xr[j];
		float mu = kiln_warp_sum(s) / (float)d;
		float ss = 0.0f;
		for (int j = lane; j < d; j += 32) {
			float c = xr[j] - mu;
			ss += c * c;
		}
		float rs = 1.0f / sqrtf(kiln_warp_sum(ss) / (float)d + eps);
		for (int j = lane; j < d; j += 32) {
			float y = (xr[j] - mu) * rs;
			if (gamma) y *= gamma[j];
			if (beta) y += beta[j];
			orow[j] = y;
		}
		if (lane == 0) {
			if (mean) mean[r] = mu;
			if (rstd) rstd[r] = rs;
		}
	}
}

// One warp per row: dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with g = dout·γ
// and x̂ = (x − mean)·rstd. dx may be dout (same stride).
KILN_KERNEL layernorm_backward_dx_f32(float* dx, const float* dout, const float* x, const float* mean,
                                      const float* rstd, const float* gamma, int rows, int d, int dx_stride,
                                      int dout_stride, int x_stride) {
	int lane = threadIdx.x % 32;
	long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
	long long nwarps = (long long)gridDim.x * blockDim.x / 32;
	for (long long r = warp; r < rows; r += nwarps) {
		const float* xr = x + r * x_stride;
		const float* gr = dout + r * dout_stride;
		float* dr = dx + r * dx_stride;
		float mu = mean[r], rs = rstd[r];
		float sg = 0.0f, sgx = 0.0f;
		for (int j = lane; j < d; j += 32) {
			float g = gamma ? gr[j] * gamma[j] : gr[j];
			sg += g;
			sgx += g * ((xr[j] - mu) * rs);
		}
		float a = kiln_warp_sum(sg) / (float)d, b = kiln_warp_sum(sgx) / (float)d;
		for (int j = lane; j < d; j += 32) {
			float g = gamma ? gr[j] * gamma[j] : gr[j];
			float xh = (xr[j] - mu) * rs;
			dr[j] = rs * (g - a - xh * b);
		}
	}
}

// Per chunk of rows, the column sums Σ dout·x̂ (into partial[chunk·2d + j])
// and Σ dout (into partial[chunk·2d + d + j]) for dgamma and dbeta; the
// chunks are added in order by norm_partials_add_f32. Block (X ≤ 32) × (Y ≤
// 8), grid (⌈d/X⌉, chunks): the X threads of a block row read consecutive
// columns, the Y block rows stride through the chunk, and their Y sums are
// added in row order.
KILN_KERNEL layernorm_backward_params_f32(float* partial, const float* dout, const float* x, const float* mean,
                                          const float* rstd, int rows, int d, int dout_stride, int x_stride,
                                          int rows_per_chunk) {
	__shared__ float sg[8][33];
	__shared__ float sb[8][33];
	int tx = threadIdx.x, ty = threadIdx.y;
	int j = blockIdx.x * blockDim.x + tx;
	long long r0 = (long long)blockIdx.y * rows_per_chunk;
	long long r1 = min(r0 + rows_per_chunk, (long long)rows);
	float g = 0.0f, b = 0.0f;
	if (j < d) {
		for (long long r = r0 + ty; r < r1; r += blockDim.y) {
			float o = dout[r * dout_stride + j];
			g += o * ((x[r * x_stride + j] - mean[r]) * rstd[r]);
			b += o;
		}
	}
	sg[ty][tx] = g;
	sb[ty][tx] = b;
	__syncthreads();
	if (ty == 0 && j < d) {
		for (unsigned int k = 1; k < blockDim.y; k++) g += sg[k][tx], b += sb[k][tx];
		partial[(long long)blockIdx.y * 2 * d + j] = g;
		partial[(long long)blockIdx.y * 2 * d + d + j] = b;
	}
}

// dst[i] += Σ_k partial[k·stride + i], k = 0 … chunks−1 in order: the last,
// fixed-order stage of every parameter-gradient reduction (layer norm, batch
// norm, the spatial gating unit's bias and weights).
KILN_KERNEL norm_partials_add_f32(float* dst, const float* partial, int chunks, long long n, long long stride) {
	KILN_FOR(i, n) {
		float s = 0.0f;
		for (int k = 0; k < chunks; k++) s += partial[k * stride + i];
		dst[i] += s;
	}
}

// ---- Batch norm -----------------------------------------------------------
//
// Channel c's M = N·hw values are x[(n·C + c)·hw + j]; a flat index m in
// [0, M) is (n, j) = (m / hw, m % hw). Block (k, c) of the statistics and
// reduction kernels covers m in [k·chunk, (k+1)·chunk).

// The index of value m of channel c. small (m < 2^31, uniform per launch)
// divides in 32 bits: a 64-bit division per element would make the
// bandwidth-bound kernels compute-bound on the GPU.
static __device__ __forceinline__ long long norm_bn_index(long long m, int c, int C, int hw, bool small) {
	if (small) {
		unsigned int u = (unsigned int)m;
		return ((long long)(u / (unsigned int)hw) * C + c) * hw + u % (unsigned int)hw;
	}
	return (m / hw * C + c) * hw + m % hw;
}

// The channel of element i of (N,C,hw); small as above.
static __device__ __forceinline__ int norm_bn_channel(long long i, int C, int hw, bool small) {
	if (small) return (int)((unsigned int)i / (unsigned int)hw % (unsigned int)C);
	return (int)(i / hw % C);
}

// Per chunk: its mean and its sum of squared deviations from that mean
// (partial[(c·chunks + k)·2 + {0,1}]).
KILN_KERNEL batchnorm_stats_f32(float* partial, const float* x, int N, int C, int hw, int chunk) {
	__shared__ float scratch[32];
	int k = blockIdx.x, c = blockIdx.y;
	long long M = (long long)N * hw;
	long long m0 = (long long)k * chunk, m1 = min(m0 + chunk, M);
	bool small = M <= 0x7fffffffLL;
	float s = 0.0f;
	for (long long m = m0 + threadIdx.x; m < m1; m += blockDim.x) s += x[norm_bn_index(m, c, C, hw, small)];
	float mu = norm_block_sum(s, scratch) / (float)(m1 - m0);
	float ss = 0.0f;
	for (long long m = m0 + threadIdx.x; m < m1; m += blockDim.x) {
		float v = x[norm_bn_index(m, c, C, hw, small)] - mu;
		ss += v * v;
	}
	ss = norm_block_sum(ss, scratch);
	if (threadIdx.x == 0) {
		long long at = ((long long)c * gridDim.x + k) * 2;
		partial[at] = mu;
		partial[at + 1] = ss;
	}
}

// norm_warp_sum_d adds v over a warp in a fixed butterfly, in double: every
// lane gets the same sum, the same bits every run.
__device__ __forceinline__ double norm_warp_sum_d(double v) {
	for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

// One warp per channel (blocks of 32, one a channel): combines the chunks'
// means and M2s in double, lane l taking the chunks k ≡ l (mod 32) in
// order and the warp adding the lanes in a fixed butterfly: the mean is
// Σ n_k·mean_k / M, then M2 = Σ m2_k + n_k·(mean_k − mean)² (Chan et al.'s
// combination, in two passes). One thread per channel walking the chunks
// took 87 µs a launch at 512 chunks (cnn b1024 on the H200), each step
// waiting on its load and two divisions. Saves mean and 1/√(var+ε) (biased
// variance), updates the running statistics with the unbiased variance,
// run = (1−momentum)·run + momentum·stat, and writes the affine
// coefficients coef[2c] = γ·invstd, coef[2c+1] = β − mean·γ·invstd for
// batchnorm_apply_f32. gamma, beta, run_mean, run_var may be null.
KILN_KERNEL batchnorm_stats_finalize_f32(float* coef, float* save_mean, float* save_invstd, float* run_mean,
                                         float* run_var, const float* partial, const float* gamma,
                                         const float* beta, int C, int chunks, long long M, int chunk,
                                         double momentum, double eps) {
	const int c = blockIdx.x, lane = threadIdx.x;
	if (c >= C) return;
	const float* p = partial + (long long)c * chunks * 2;
	auto count = [&](int k) { return (double)min((long long)chunk, M - (long long)k * chunk); };
	double s = 0;
	for (int k = lane; k < chunks; k += 32) s += count(k) * (double)p[2 * k];
	const double mean = norm_warp_sum_d(s) / (double)M;
	double m2 = 0;
	for (int k = lane; k < chunks; k += 32) {
		double d = (double)p[2 * k] - mean;
		m2 += (double)p[2 * k + 1] + count(k) * d * d;
	}
	m2 = norm_warp_sum_d(m2);
	if (lane == 0) {
		double invstd = 1.0 / sqrt(m2 / (double)M + eps);
		save_mean[c] = (float)mean;
		save_invstd[c] = (float)invstd;
		if (run_mean) {
			run_mean[c] = (float)((1 - momentum) * (double)run_mean[c] + momentum * mean);
			run_var[c] = (float)((1 - momentum) * (double)run_var[c] + momentum * m2 / (double)(M - 1));
		}
		double g = gamma ? (double)gamma[c] : 1.0, b = beta ? (double)beta[c] : 0.0;
		coef[2 * c] = (float)(g * invstd);
		coef[2 * c + 1] = (float)(b - mean * g * invstd);
	}
}

// Evaluation mode: coef[2c] = γ/√(run_var+ε), coef[2c+1] = β − run_mean·coef[2c].
KILN_KERNEL batchnorm_eval_coef_f32(float* coef, const float* gamma, const float* beta, const float* run_mean,
                                    const float* run_var, int C, double eps) {
	KILN_FOR(c, C) {
		double g = gamma ? (double)gamma[c] : 1.0, b = beta ? (double)beta[c] : 0.0;
		double a = g / sqrt((double)run_var[c] + eps);
		coef[2 * c] = (float)a;
		coef[2 * c + 1] = (float)(b - (double)run_mean[c] * a);
	}
}

// The ReLU that batch norm fuses, forward and backward, as relu_forward_f32
// and relu_backward_f32 compute it (kernels/activation.cu): the same bits.
__device__ __forceinline__ float norm_relu(float v) { return v < 0.0f ? 0.0f : v; }
__device__ __forceinline__ float norm_relu_grad(float d, const float* relu_out, long long i) {
	return relu_out == nullptr || relu_out[i] > 0.0f ? d : 0.0f;
}

// out = coef[2c]·x + coef[2c+1], then max(·, 0) when relu is set; out may be
// x. total = N·C·hw.
KILN_KERNEL batchnorm_apply_f32(float* out, const float* x, const float* coef, int C, int hw, long long total,
                                int relu) {
	bool small = total <= 0x7fffffffLL;
	if (hw % 4 == 0 && kiln_aligned16(out, x)) {  // four elements of one channel at a time
		KILN_FOR(q, total / 4) {
			long long i = 4 * q;
			int c = norm_bn_channel(i, C, hw, small);
			float a = coef[2 * c], b = coef[2 * c + 1];
			float4 v = kiln_ld4(x + i);
			v.x = a * v.x + b;
			v.y = a * v.y + b;
			v.z = a * v.z + b;
			v.w = a * v.w + b;
			if (relu) v = make_float4(norm_relu(v.x), norm_relu(v.y), norm_relu(v.z), norm_relu(v.w));
			kiln_st4(out + i, v);
		}
		return;
	}
	KILN_FOR(i, total) {
		int c = norm_bn_channel(i, C, hw, small);
		float v = coef[2 * c] * x[i] + coef[2 * c + 1];
		out[i] = relu ? norm_relu(v) : v;
	}
}

// Per chunk: Σ dout and Σ dout·(x − mean[c]) (partial[(c·chunks + k)·2 + {0,1}]).
// mean is the saved batch mean (training) or the running mean (evaluation).
// With relu_out (the fused forward's output) dout passes only where it is
// positive, as ReLU's backward.
KILN_KERNEL batchnorm_backward_reduce_f32(float* partial, const float* dout, const float* x, const float* mean,
                                          int N, int C, int hw, int chunk, const float* relu_out) {
	__shared__ float scratch[32];
	int k = blockIdx.x, c = blockIdx.y;
	long long M = (long long)N * hw;
	long long m0 = (long long)k * chunk, m1 = min(m0 + chunk, M);
	bool small = M <= 0x7fffffffLL;
	float mu = mean[c];
	float sd = 0.0f, sdx = 0.0f;
	for (long long m = m0 + threadIdx.x; m < m1; m += blockDim.x) {
		long long i = norm_bn_index(m, c, C, hw, small);
		float d = norm_relu_grad(dout[i], relu_out, i);
		sd += d;
		sdx += d * (x[i] - mu);
	}
	sd = norm_block_sum(sd, scratch);
	sdx = norm_block_sum(sdx, scratch);
	if (threadIdx.x == 0) {
		long long at = ((long long)c * gridDim.x + k) * 2;
		partial[at] = sd;
		partial[at + 1] = sdx;
	}
}

// One warp per channel (as batchnorm_stats_finalize_f32): lane l adds the
// chunks k ≡ l (mod 32) in order, the warp the lanes in a fixed butterfly,
// in double; dbeta += Σ dout, dgamma += Σ dout·x̂, and writes coef[3c..3c+2] = (k, a, b) for
// batchnorm_backward_apply_f32. Training (run_var null): invstd is the saved
// one and dx = k·dout + a·x + b with k = γ·invstd, a = −k·invstd·Σdout·x̂/M,
// b = −k·Σdout/M − a·mean. Evaluation (run_var given): invstd =
// 1/√(run_var+ε) and dx = k·dout (a = b = 0). partial may be null when
// chunks is 0 (no parameter gradient wanted).
KILN_KERNEL batchnorm_backward_finalize_f32(float* coef, float* dgamma, float* dbeta, const float* partial,
                                            const float* mean, const float* save_invstd, const float* run_var,
                                            const float* gamma, int C, int chunks, long long M, double eps) {
	const int c = blockIdx.x, lane = threadIdx.x;
	if (c >= C) return;
	double sd = 0, sdx = 0;
	for (int k = lane; k < chunks; k += 32) {
		sd += partial[((long long)c * chunks + k) * 2];
		sdx += partial[((long long)c * chunks + k) * 2 + 1];
	}
	sd = norm_warp_sum_d(sd);
	sdx = norm_warp_sum_d(sdx);
	if (lane == 0) {
		double invstd = run_var ? 1.0 / sqrt((double)run_var[c] + eps) : (double)save_invstd[c];
		sdx *= invstd;  // Σ dout·x̂
		if (dbeta) dbeta[c] += (float)sd;
		if (dgamma) dgamma[c] += (float)sdx;
		double g = gamma ? (double)gamma[c] : 1.0;
		double k = g * invstd, a = 0, b = 0;
		if (!run_var) {
			a = -k * invstd * sdx / (double)M;
			b = -k * sd / (double)M - a * (double)mean[c];
		}
		coef[3 * c] = (float)k;
		coef[3 * c + 1] = (float)a;
		coef[3 * c + 2] = (float)b;
	}
}

// dx = k·dout + a·x + b (training) or k·dout (x null, evaluation), dout
// masked by relu_out as in the reduce; dx may be dout. total = N·C·hw.
KILN_KERNEL batchnorm_backward_apply_f32(float* dx, const float* dout, const float* x, const float* coef, int C,
                                         int hw, long long total, const float* relu_out) {
	bool small = total <= 0x7fffffffLL;
	if (hw % 4 == 0 && kiln_aligned16(dx, dout, x, relu_out)) {  // four elements of one channel at a time
		KILN_FOR(q, total / 4) {
			long long i = 4 * q;
			int c = norm_bn_channel(i, C, hw, small);
			float k = coef[3 * c], a = coef[3 * c + 1], b = coef[3 * c + 2];
			float4 d = kiln_ld4(dout + i);
			if (relu_out != nullptr) {
				float4 y = kiln_ld4(relu_out + i);
				d = make_float4(y.x > 0.0f ? d.x : 0.0f, y.y > 0.0f ? d.y : 0.0f, y.z > 0.0f ? d.z : 0.0f,
				                y.w > 0.0f ? d.w : 0.0f);
			}
			float4 v = make_float4(k * d.x, k * d.y, k * d.z, k * d.w);
			if (x) {
				float4 xv = kiln_ld4(x + i);
				v = make_float4(v.x + a * xv.x + b, v.y + a * xv.y + b, v.z + a * xv.z + b, v.w + a * xv.w + b);
			}
			kiln_st4(dx + i, v);
		}
		return;
	}
	KILN_FOR(i, total) {
		int c = norm_bn_channel(i, C, hw, small);
		float v = coef[3 * c] * norm_relu_grad(dout[i], relu_out, i);
		if (x) v = v + coef[3 * c + 1] * x[i] + coef[3 * c + 2];
		dx[i] = v;
	}
}
