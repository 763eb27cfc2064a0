// Channel and global max pooling and the token transpose on float32 tensors,
// forward and backward: global max pooling over each (H,W) plane, CBAM's
// channel pooling (mean and max over C) and Transpose12 ((N,A,B) → (N,B,A)),
// the token layout change of gMLP. The Go launchers are
// engine/channelpool_cuda.go.
//
// Launch assumptions: element kernels take any 1-D grid (grid-stride loops);
// global_maxpool_forward_f32 takes one block per plane (grid-stride over
// planes) with blockDim.x a multiple of 32, at most 1024; transpose12 takes
// 32×8 blocks, grid (⌈B/32⌉, ⌈A/32⌉, any z).
//
// Numerics: every result is bit-identical to the CPU op, with no atomics.
// The one multiply-then-add uses __fmul_rn so that FMA contraction cannot
// change a bit. Both max poolings follow the CPU's tie and NaN rules exactly
// (see each kernel); argmax is an index into the plane or the channel.
#include "pool.cuh"

static __device__ __forceinline__ float pool_mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
	return __fmul_rn(a, b);
#else
	return a * b;
#endif
}

// Whether candidate (vb, ib) beats (va, ia) for global max pooling: a NaN
// beats a number, then the larger value, then the lower index. The CPU scans
// in order keeping the first NaN, else the first maximum, which is the best
// element under this order, so any reduction tree picks the CPU's element.
static __device__ __forceinline__ bool pool_max_beats(float vb, int ib, float va, int ia) {
	bool na = va != va, nb = vb != vb;
	if (na || nb) return na && nb ? ib < ia : nb;
	if (vb != va) return vb > va;
	return ib < ia;
}

// out[p] = max of plane p, argmax[p] its index (see pool_max_beats). One
// block per plane.
KILN_KERNEL global_maxpool_forward_f32(float* out, int* argmax, const float* x, int planes, int hw) {
	__shared__ float warp_v[32];
	__shared__ int warp_i[32];
	unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
	for (int p = blockIdx.x; p < planes; p += gridDim.x) {
		const float* xp = x + (long long)p * hw;
		float bv = pool_neg_inf();
		int bi = 0x7fffffff;  // empty: loses to any element
		for (int j = threadIdx.x; j < hw; j += blockDim.x) {
			float v = xp[j];
			if (pool_max_beats(v, j, bv, bi)) bv = v, bi = j;
		}
		for (int o = 16; o > 0; o >>= 1) {
			float v = __shfl_xor_sync(0xffffffffu, bv, o);
			int i = __shfl_xor_sync(0xffffffffu, bi, o);
			if (pool_max_beats(v, i, bv, bi)) bv = v, bi = i;
		}
		if (lane == 0) warp_v[warp] = bv, warp_i[warp] = bi;
		__syncthreads();
		if (warp == 0) {
			bv = lane < nwarps ? warp_v[lane] : pool_neg_inf();
			bi = lane < nwarps ? warp_i[lane] : 0x7fffffff;
			for (int o = 16; o > 0; o >>= 1) {
				float v = __shfl_xor_sync(0xffffffffu, bv, o);
				int i = __shfl_xor_sync(0xffffffffu, bi, o);
				if (pool_max_beats(v, i, bv, bi)) bv = v, bi = i;
			}
			if (lane == 0) out[p] = bv, argmax[p] = bi;
		}
		__syncthreads();
	}
}

// dx (overwritten): dout[plane] at the plane's argmax, zero elsewhere.
KILN_KERNEL global_maxpool_backward_f32(float* dx, const float* dout, const int* argmax, long long total, int hw) {
	bool small = pool_small(total);
	KILN_FOR(i, total) {
		int j;
		long long p = pool_divmod(i, hw, &j, small);
		dx[i] = j == argmax[p] ? dout[p] : 0.0f;
	}
}

// CBAM's channel gate input gradient, total = planes·hw: dx = (dout·scale +
// dAvg/hw) + (dMax at the plane's argmax, +0 elsewhere), each step rounded on
// its own as the ops it fuses (broadcast multiply, global average and max
// pooling backward, two adds) round it on either side. dx may be dout.
KILN_KERNEL channel_gate_backward_f32(float* dx, const float* dout, const float* scale, const float* davg,
                                      const float* dmax, const int* argmax, long long total, int hw) {
	bool small = pool_small(total);
	KILN_FOR(i, total) {
		int j;
		long long p = pool_divmod(i, hw, &j, small);
		float g = __fadd_rn(__fmul_rn(dout[i], scale[p]), __fdiv_rn(davg[p], (float)hw));
		dx[i] = __fadd_rn(g, j == argmax[p] ? dmax[p] : 0.0f);
	}
}

// CBAM channel pooling, one thread per pixel (n, p), total = N·hw:
// out[n,0,p] = (Σ_c x[n,c,p])·inv_c summed in channel order, out[n,1,p] = the
// first maximum over c (`v > m`, as the CPU: a NaN wins only in channel 0),
// argmax[n,p] = its channel. inv_c = 1/C rounded on the host as the CPU does.
KILN_KERNEL channelpool_forward_f32(float* out, int* argmax, const float* x, long long total, int C, int hw,
                                    float inv_c) {
	bool small = pool_small(total);
	KILN_FOR(i, total) {
		int p;
		long long n = pool_divmod(i, hw, &p, small);
		const float* xp = x + n * C * hw + p;
		float s = xp[0], m = xp[0];
		int am = 0;
		for (int c = 1; c < C; c++) {
			float v = xp[(long long)c * hw];
			s += v;
			if (v > m) m = v, am = c;
		}
		out[2 * n * hw + p] = pool_mul_rn(s, inv_c);
		out[2 * n * hw + hw + p] = m;
		argmax[i] = am;
	}
}

// dx[n,c,p] (overwritten) = dout[n,0,p]·inv_c, plus dout[n,1,p] where c is
// the pixel's argmax. total = N·C·hw.
KILN_KERNEL channelpool_backward_f32(float* dx, const float* dout, const int* argmax, long long total, int C, int hw,
                                     float inv_c) {
	bool small = pool_small(total);
	KILN_FOR(i, total) {
		int p, c;
		long long n = pool_divmod(pool_divmod(i, hw, &p, small), C, &c, small);
		float v = pool_mul_rn(dout[2 * n * hw + p], inv_c);
		if (argmax[n * hw + p] == c) v += dout[2 * n * hw + hw + p];
		dx[i] = v;
	}
}

// CBAM's spatial gate input gradient, one thread per element (n, c, p),
// total = N·C·hw: dx = dout·att[n,p] + (dMean[n,p]·inv_c, plus dMax[n,p] in
// the channel argmax[n,p]), each step rounded as channelpool_backward_f32,
// the broadcast multiply and the add it fuses. dx may be dout.
KILN_KERNEL spatial_gate_backward_f32(float* dx, const float* dout, const float* att, const float* dpooled,
                                      const int* argmax, long long total, int C, int hw, float inv_c) {
	bool small = pool_small(total);
	KILN_FOR(i, total) {
		int p, c;
		long long n = pool_divmod(pool_divmod(i, hw, &p, small), C, &c, small);
		float u = __fmul_rn(dpooled[2 * n * hw + p], inv_c);
		if (argmax[n * hw + p] == c) u = __fadd_rn(u, dpooled[2 * n * hw + hw + p]);
		dx[i] = __fadd_rn(__fmul_rn(dout[i], att[n * hw + p]), u);
	}
}

// out[n,b,a] = x[n,a,b] through a 32×33 shared tile, so that both the reads
// and the writes are coalesced. Block 32×8; grid (⌈B/32⌉, ⌈A/32⌉, z), the
// samples looped with a stride of gridDim.z.
KILN_KERNEL transpose12_f32(float* out, const float* x, int N, int A, int B) {
	__shared__ float tile[32][33];
	int b0 = blockIdx.x * 32, a0 = blockIdx.y * 32;
	for (int n = blockIdx.z; n < N; n += gridDim.z) {
		const float* xn = x + (long long)n * A * B;
		float* on = out + (long long)n * A * B;
		for (int j = threadIdx.y; j < 32; j += 8) {
			int a = a0 + j, b = b0 + threadIdx.x;
			if (a < A && b < B) tile[j][threadIdx.x] = xn[(long long)a * B + b];
		}
		__syncthreads();
		for (int j = threadIdx.y; j < 32; j += 8) {
			int b = b0 + j, a = a0 + threadIdx.x;
			if (a < A && b < B) on[(long long)b * A + a] = tile[threadIdx.x][j];
		}
		__syncthreads();
	}
}
