// gMLP's spatial gating unit (SGU) on float32, forward and backward. For
// each sample of z: (N,T,2D), u = z[…, :D], v = z[…, D:],
//
//	vn = LayerNorm_D(v)·γ + β   vm = W·vn + b   out = u ⊙ vm
//
// with W: (T,T) mixing the T token positions. The layer norm runs on the
// strided v rows with the kernels of norm.cu; this file holds the token
// mixing (a batched T×T by T×D product, shared-memory tiled, with the bias
// and the gate fused into its epilogue), the gate's backward pass and the
// weight gradient. The Go launcher is engine/gating_cuda.go.
//
// Launch assumptions: sgu_mix_* take 16×16 blocks, grid (⌈D/32⌉, ⌈T/32⌉, z)
// with samples looped by gridDim.z; sgu_weight_grad_f32 takes 16×16 blocks,
// grid (⌈T/32⌉, ⌈T/32⌉, chunks); sgu_gate_backward_f32 one warp per row of D
// (any 1-D grid of whole warps).
//
// bf16 (--precision bf16 on the token weight W): the *_bf16 kernels round
// both operands of each of the three products to bf16 (kiln_to_bf16) as they
// enter shared memory and sum in float, as the CPU's bf16 SGU does; the
// products of two bf16 are exact in float.
//
// Numerics: float accumulation. The products sum over T (mixing) or over
// chunk samples × D (weight gradient) in a fixed order; the weight and bias
// gradients are per-chunk partials added in order by norm_partials_add_f32,
// no atomics, so every run gives the same bits.
//
// The token mixing is bandwidth-bound for gMLP's sizes (T ≤ a few hundred):
// each 32×32 output tile reads its W rows and vn columns through shared
// memory once per 16-wide step of the contraction, and the reads and writes
// of vn, u, vm and out are coalesced along D.
#include "common.cuh"

#define SGU_TILE 32
#define SGU_K 16

// acc[i][j] (rows ty + 16i, columns tx + 16j of the tile) = Σ_k A[t][k]·V[k][d]
// for one sample, A = W (TRANS_W false) or Wᵀ (true), V: (T,D) row-major.
template <bool BF16>
static __device__ __forceinline__ float sgu_in(float x) {
	return BF16 ? kiln_to_bf16(x) : x;
}

template <bool TRANS_W, bool BF16>
static __device__ __forceinline__ void sgu_mix_tile(float acc[2][2], const float* w, const float* v, int T, int D,
                                                    int t0, int d0, float (*as)[SGU_K + 1],
                                                    float (*vs)[SGU_TILE + 1]) {
	int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2; j++) acc[i][j] = 0.0f;
	for (int k0 = 0; k0 < T; k0 += SGU_K) {
		// A tile: 32 rows t × 16 columns k, two elements per thread.
		for (int e = tid; e < SGU_TILE * SGU_K; e += 256) {
			int r, k;
			if (TRANS_W) {  // Wᵀ[t][k] = W[k][t]: t fastest, so W is read along its rows
				r = e % SGU_TILE, k = e / SGU_TILE;
			} else {
				r = e / SGU_K, k = e % SGU_K;
			}
			int t = t0 + r, kk = k0 + k;
			float a = 0.0f;
			if (t < T && kk < T) a = TRANS_W ? w[(long long)kk * T + t] : w[(long long)t * T + kk];
			as[r][k] = sgu_in<BF16>(a);
		}
		// V tile: 16 rows k × 32 columns d.
		for (int e = tid; e < SGU_K * SGU_TILE; e += 256) {
			int k = e / SGU_TILE, c = e % SGU_TILE;
			int kk = k0 + k, d = d0 + c;
			vs[k][c] = kk < T && d < D ? sgu_in<BF16>(v[(long long)kk * D + d]) : 0.0f;
		}
		__syncthreads();
		for (int k = 0; k < SGU_K; k++) {
			float a0 = as[ty][k], a1 = as[ty + 16][k];
			float b0 = vs[k][tx], b1 = vs[k][tx + 16];
			acc[0][0] += a0 * b0;
			acc[0][1] += a0 * b1;
			acc[1][0] += a1 * b0;
			acc[1][1] += a1 * b1;
		}
		__syncthreads();
	}
}

// mixed = W·vn + b (b may be null) and out = u ⊙ mixed, u = z[…, :D] (row
// stride 2D). mixed and out: (N,T,D).
template <bool BF16>
static __device__ __forceinline__ void sgu_mix_forward(float* mixed, float* out, const float* w, const float* vn,
                                                       const float* bias, const float* z, int N, int T, int D) {
	__shared__ float as[SGU_TILE][SGU_K + 1];
	__shared__ float vs[SGU_K][SGU_TILE + 1];
	int t0 = blockIdx.y * SGU_TILE, d0 = blockIdx.x * SGU_TILE;
	for (int s = blockIdx.z; s < N; s += gridDim.z) {
		float acc[2][2];
		long long base = (long long)s * T * D;
		sgu_mix_tile<false, BF16>(acc, w, vn + base, T, D, t0, d0, as, vs);
		for (int i = 0; i < 2; i++) {
			int t = t0 + threadIdx.y + 16 * i;
			if (t >= T) continue;
			float b = bias ? bias[t] : 0.0f;
			for (int j = 0; j < 2; j++) {
				int d = d0 + threadIdx.x + 16 * j;
				if (d >= D) continue;
				float m = acc[i][j] + b;
				long long at = base + (long long)t * D + d;
				mixed[at] = m;
				out[at] = z[((long long)s * T + t) * 2 * D + d] * m;
			}
		}
	}
}

KILN_KERNEL sgu_mix_forward_f32(float* mixed, float* out, const float* w, const float* vn, const float* bias,
                                const float* z, int N, int T, int D) {
	sgu_mix_forward<false>(mixed, out, w, vn, bias, z, N, T, D);
}
KILN_KERNEL sgu_mix_forward_bf16(float* mixed, float* out, const float* w, const float* vn, const float* bias,
                                 const float* z, int N, int T, int D) {
	sgu_mix_forward<true>(mixed, out, w, vn, bias, z, N, T, D);
}

// dvn = Wᵀ·dvm per sample; dvn and dvm: (N,T,D).
template <bool BF16>
static __device__ __forceinline__ void sgu_mix_backward(float* dvn, const float* w, const float* dvm, int N, int T,
                                                        int D) {
	__shared__ float as[SGU_TILE][SGU_K + 1];
	__shared__ float vs[SGU_K][SGU_TILE + 1];
	int t0 = blockIdx.y * SGU_TILE, d0 = blockIdx.x * SGU_TILE;
	for (int s = blockIdx.z; s < N; s += gridDim.z) {
		float acc[2][2];
		long long base = (long long)s * T * D;
		sgu_mix_tile<true, BF16>(acc, w, dvm + base, T, D, t0, d0, as, vs);
		for (int i = 0; i < 2; i++) {
			int t = t0 + threadIdx.y + 16 * i;
			for (int j = 0; j < 2; j++) {
				int d = d0 + threadIdx.x + 16 * j;
				if (t < T && d < D) dvn[base + (long long)t * D + d] = acc[i][j];
			}
		}
	}
}

KILN_KERNEL sgu_mix_backward_f32(float* dvn, const float* w, const float* dvm, int N, int T, int D) {
	sgu_mix_backward<false>(dvn, w, dvm, N, T, D);
}
KILN_KERNEL sgu_mix_backward_bf16(float* dvn, const float* w, const float* dvm, int N, int T, int D) {
	sgu_mix_backward<true>(dvn, w, dvm, N, T, D);
}

// One warp per row r of (N·T): dvm = dout ⊙ u; du = dout ⊙ mixed into
// dz[…, :D] (dz may be null); rowsum[r] = Σ_d dvm, the bias gradient's
// per-row term.
KILN_KERNEL sgu_gate_backward_f32(float* dvm, float* dz, float* rowsum, const float* dout, const float* z,
                                  const float* mixed, int rows, int D) {
	int lane = threadIdx.x % 32;
	long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
	long long nwarps = (long long)gridDim.x * blockDim.x / 32;
	for (long long r = warp; r < rows; r += nwarps) {
		const float* g = dout + r * D;
		const float* u = z + r * 2 * D;
		float s = 0.0f;
		for (int j = lane; j < D; j += 32) {
			float dm = g[j] * u[j];
			dvm[r * D + j] = dm;
			s += dm;
			if (dz) dz[r * 2 * D + j] = g[j] * mixed[r * D + j];
		}
		s = kiln_warp_sum(s);
		if (lane == 0) rowsum[r] = s;
	}
}

// partial[chunk][t1][t2] = Σ_{s in chunk} Σ_d dvm[s,t1,d]·vn[s,t2,d], the
// chunk's share of dW = Σ_s dvm_s·vn_sᵀ. Block (x, y) computes the 32×32
// tile (t1 from y, t2 from x); samples [chunk·per_chunk, …) of blockIdx.z.
template <bool BF16>
static __device__ __forceinline__ void sgu_weight_grad(float* partial, const float* dvm, const float* vn, int N,
                                                       int T, int D, int per_chunk) {
	__shared__ float as[SGU_TILE][SGU_K + 1];  // dvm rows t1, columns d
	__shared__ float bs[SGU_TILE][SGU_K + 1];  // vn rows t2, columns d
	int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
	int t1_0 = blockIdx.y * SGU_TILE, t2_0 = blockIdx.x * SGU_TILE;
	int s0 = blockIdx.z * per_chunk, s1 = min(s0 + per_chunk, N);
	float acc[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
	for (int s = s0; s < s1; s++) {
		const float* a = dvm + (long long)s * T * D;
		const float* b = vn + (long long)s * T * D;
		for (int k0 = 0; k0 < D; k0 += SGU_K) {
			for (int e = tid; e < SGU_TILE * SGU_K; e += 256) {
				int r = e / SGU_K, k = e % SGU_K;
				int d = k0 + k;
				as[r][k] = t1_0 + r < T && d < D ? sgu_in<BF16>(a[(long long)(t1_0 + r) * D + d]) : 0.0f;
				bs[r][k] = t2_0 + r < T && d < D ? sgu_in<BF16>(b[(long long)(t2_0 + r) * D + d]) : 0.0f;
			}
			__syncthreads();
			for (int k = 0; k < SGU_K; k++) {
				float a0 = as[ty][k], a1 = as[ty + 16][k];
				float b0 = bs[tx][k], b1 = bs[tx + 16][k];
				acc[0][0] += a0 * b0;
				acc[0][1] += a0 * b1;
				acc[1][0] += a1 * b0;
				acc[1][1] += a1 * b1;
			}
			__syncthreads();
		}
	}
	float* p = partial + (long long)blockIdx.z * T * T;
	for (int i = 0; i < 2; i++) {
		int t1 = t1_0 + ty + 16 * i;
		for (int j = 0; j < 2; j++) {
			int t2 = t2_0 + tx + 16 * j;
			if (t1 < T && t2 < T) p[(long long)t1 * T + t2] = acc[i][j];
		}
	}
}
KILN_KERNEL sgu_weight_grad_f32(float* partial, const float* dvm, const float* vn, int N, int T, int D,
                                int per_chunk) {
	sgu_weight_grad<false>(partial, dvm, vn, N, T, D, per_chunk);
}
KILN_KERNEL sgu_weight_grad_bf16(float* partial, const float* dvm, const float* vn, int N, int T, int D,
                                 int per_chunk) {
	sgu_weight_grad<true>(partial, dvm, vn, N, T, D, per_chunk);
}
