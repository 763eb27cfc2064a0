// Matrix products on row-major float32 matrices, the GPU twin of the CPU
// gemm (engine/gemm.go):
//
//	C = alpha·op(A)·op(B) + beta·C,  op(A) m×k, op(B) k×n,
//
// with A stored k×m when transposed (t) and B stored n×k when transposed;
// lda, ldb, ldc are row strides, and a batch of products sits sa, sb, sc
// elements apart (blockIdx.z). beta == 0 overwrites C without reading it.
// Every product ends with C's epilogue: + bias[j] per column (bias null:
// none), then ReLU (relu set), Linear's forward in the one launch. Also the
// split-K reduction, which applies the epilogue when the product is split;
// Linear's bias gradient is in linear.cu.
//
// Kernels gemm_<ta><tb>_<BM>x<BN>_<f32|tf32|bf16>: the tiling of gemm_tile.cuh.
// Launch: block 256 threads, grid (⌈n/BN⌉, ⌈m/BM⌉, batch·splits); with
// splits > 1 the kernel writes partial products to ws (splits·batch·m·n
// floats) and gemm_splitk_reduce_f32 finishes C. The tf32 kernels use tensor
// cores on sm_80+; they are opt-in (KILN_TF32=1) because TF32 keeps 10
// mantissa bits of each input (relative error about 1e-3 per product, not
// fp32's 6e-8). The bf16 kernels (--precision bf16, per weight) round each
// input to bf16 (8 significant bits) and sum in fp32, as autocast does.
//
// Numerics: fp32 accumulation in k order within a split, splits added in
// order: deterministic, and within a few ulp·√k of the CPU's sum.
#include "gemm_tile.cuh"

namespace kiln_gemm {

template <bool TA, bool TB>
struct GemmOp {
	static constexpr bool A_ALONG_K = !TA, B_ALONG_K = TB, NEEDS_KTAB = false;
	struct Col {};
	struct OutCol {};
	const float* A;
	int lda;
	long long sa;
	const float* B;
	int ldb;
	long long sb;
	CStore out;
	int M, N, K, splits;

	__device__ __forceinline__ void krow(int, int, int*) const {}
	__device__ __forceinline__ void col(int, int, Col&) const {}
	__device__ __forceinline__ void out_col(int, int, OutCol&) const {}
	__device__ __forceinline__ float a(int g, int i, int p, const int*) const {
		return TA ? A[g * sa + (long long)p * lda + i] : A[g * sa + (long long)i * lda + p];
	}
	__device__ __forceinline__ float b(int g, int p, int j, const int*, const Col&) const {
		return TB ? B[g * sb + (long long)j * ldb + p] : B[g * sb + (long long)p * ldb + j];
	}
	__device__ __forceinline__ void store(int g, int s, int i, int j, const OutCol&, float acc) const {
		out.put(g, s, i, j, acc);
	}
};

template <class T, bool TA, bool TB>
__device__ __forceinline__ void gemm_run(const float* A, int lda, long long sa, const float* B, int ldb,
                                         long long sb, float* C, int ldc, long long sc, int M, int N, int K,
                                         float alpha, float beta, int splits, float* ws, const float* bias,
                                         int relu) {
	GemmOp<TA, TB> op;
	op.A = A;
	op.lda = lda;
	op.sa = sa;
	op.B = B;
	op.ldb = ldb;
	op.sb = sb;
	op.out = CStore{C, ldc, sc, alpha, beta, ws, splits, M, N, bias, relu};
	op.M = M;
	op.N = N;
	op.K = K;
	op.splits = splits;
	gemm_tile<T>(op);
}

}  // namespace kiln_gemm

#define KILN_GEMM_KERNEL(name, TILE, TA, TB, MINB)                                                         \
	KILN_KERNEL __launch_bounds__(256, MINB)                                                               \
	    name(const float* A, int lda, long long sa, const float* B, int ldb, long long sb, float* C, int ldc, \
	         long long sc, int M, int N, int K, float alpha, float beta, int splits, float* ws,             \
	         const float* bias, int relu) {                                                                \
		kiln_gemm::gemm_run<TILE, TA, TB>(A, lda, sa, B, ldb, sb, C, ldc, sc, M, N, K, alpha, beta, splits, ws, \
		                                  bias, relu);                                                      \
	}

KILN_GEMM_KERNEL(gemm_nn_32x128_f32, kiln_gemm::Tile32x128, false, false, 1)
KILN_GEMM_KERNEL(gemm_nt_32x128_f32, kiln_gemm::Tile32x128, false, true, 1)
KILN_GEMM_KERNEL(gemm_tn_32x128_f32, kiln_gemm::Tile32x128, true, false, 1)
KILN_GEMM_KERNEL(gemm_tt_32x128_f32, kiln_gemm::Tile32x128, true, true, 1)
KILN_GEMM_KERNEL(gemm_nn_128x32_f32, kiln_gemm::Tile128x32, false, false, 1)
KILN_GEMM_KERNEL(gemm_nt_128x32_f32, kiln_gemm::Tile128x32, false, true, 1)
KILN_GEMM_KERNEL(gemm_tn_128x32_f32, kiln_gemm::Tile128x32, true, false, 1)
KILN_GEMM_KERNEL(gemm_tt_128x32_f32, kiln_gemm::Tile128x32, true, true, 1)
KILN_GEMM_KERNEL(gemm_nn_64x64_f32, kiln_gemm::Tile64, false, false, 1)
KILN_GEMM_KERNEL(gemm_nt_64x64_f32, kiln_gemm::Tile64, false, true, 1)
KILN_GEMM_KERNEL(gemm_tn_64x64_f32, kiln_gemm::Tile64, true, false, 1)
KILN_GEMM_KERNEL(gemm_tt_64x64_f32, kiln_gemm::Tile64, true, true, 1)
KILN_GEMM_KERNEL(gemm_nn_128x128_f32, kiln_gemm::Tile128, false, false, 2)
KILN_GEMM_KERNEL(gemm_nt_128x128_f32, kiln_gemm::Tile128, false, true, 2)
KILN_GEMM_KERNEL(gemm_tn_128x128_f32, kiln_gemm::Tile128, true, false, 2)
KILN_GEMM_KERNEL(gemm_tt_128x128_f32, kiln_gemm::Tile128, true, true, 2)
KILN_GEMM_KERNEL(gemm_nn_64x64_tf32, kiln_gemm::Tile64TF32, false, false, 1)
KILN_GEMM_KERNEL(gemm_nt_64x64_tf32, kiln_gemm::Tile64TF32, false, true, 1)
KILN_GEMM_KERNEL(gemm_tn_64x64_tf32, kiln_gemm::Tile64TF32, true, false, 1)
KILN_GEMM_KERNEL(gemm_tt_64x64_tf32, kiln_gemm::Tile64TF32, true, true, 1)
KILN_GEMM_KERNEL(gemm_nn_128x128_tf32, kiln_gemm::Tile128TF32, false, false, 2)
KILN_GEMM_KERNEL(gemm_nt_128x128_tf32, kiln_gemm::Tile128TF32, false, true, 2)
KILN_GEMM_KERNEL(gemm_tn_128x128_tf32, kiln_gemm::Tile128TF32, true, false, 2)
KILN_GEMM_KERNEL(gemm_tt_128x128_tf32, kiln_gemm::Tile128TF32, true, true, 2)
KILN_GEMM_KERNEL(gemm_nn_32x128_bf16, kiln_gemm::Tile32x128BF16, false, false, 1)
KILN_GEMM_KERNEL(gemm_nt_32x128_bf16, kiln_gemm::Tile32x128BF16, false, true, 1)
KILN_GEMM_KERNEL(gemm_tn_32x128_bf16, kiln_gemm::Tile32x128BF16, true, false, 1)
KILN_GEMM_KERNEL(gemm_tt_32x128_bf16, kiln_gemm::Tile32x128BF16, true, true, 1)
KILN_GEMM_KERNEL(gemm_nn_128x32_bf16, kiln_gemm::Tile128x32BF16, false, false, 1)
KILN_GEMM_KERNEL(gemm_nt_128x32_bf16, kiln_gemm::Tile128x32BF16, false, true, 1)
KILN_GEMM_KERNEL(gemm_tn_128x32_bf16, kiln_gemm::Tile128x32BF16, true, false, 1)
KILN_GEMM_KERNEL(gemm_tt_128x32_bf16, kiln_gemm::Tile128x32BF16, true, true, 1)
KILN_GEMM_KERNEL(gemm_nn_64x64_bf16, kiln_gemm::Tile64BF16, false, false, 1)
KILN_GEMM_KERNEL(gemm_nt_64x64_bf16, kiln_gemm::Tile64BF16, false, true, 1)
KILN_GEMM_KERNEL(gemm_tn_64x64_bf16, kiln_gemm::Tile64BF16, true, false, 1)
KILN_GEMM_KERNEL(gemm_tt_64x64_bf16, kiln_gemm::Tile64BF16, true, true, 1)
KILN_GEMM_KERNEL(gemm_nn_128x128_bf16, kiln_gemm::Tile128BF16, false, false, 2)
KILN_GEMM_KERNEL(gemm_nt_128x128_bf16, kiln_gemm::Tile128BF16, false, true, 2)
KILN_GEMM_KERNEL(gemm_tn_128x128_bf16, kiln_gemm::Tile128BF16, true, false, 2)
KILN_GEMM_KERNEL(gemm_tt_128x128_bf16, kiln_gemm::Tile128BF16, true, true, 2)

// C[b] = alpha·Σ_s ws[b, s] + beta·C[b] over a batch of m×n matrices, the
// splits added in order, then the epilogue (bias per column, ReLU) as the
// product's own. With lastcol, column N−1 of matrix b goes to lastcol[b·M
// + i] instead (a convolution's bias gradient, kernels/conv.cu), C holding
// the N−1 columns before it.
//
// Each output's splits are added by a group of `lanes` lanes of one warp
// (a power of two up to 32, from the launcher, by the split count): lane l
// adds the splits z ≡ l (mod lanes) in order, then the group adds its
// lanes in a fixed butterfly. One lane an output (lanes 1) is the split
// order itself. With one thread walking hundreds of splits (LeNet's weight
// gradients at b64: 392), each add waited on its load: 9.5 µs a launch on
// the H200, 7.6% of the step. Any grid of whole warps; grid-stride by
// warps, the loop the same for every lane of one, as the shuffles need.
KILN_KERNEL gemm_splitk_reduce_f32(float* C, int ldc, long long sc, const float* ws, int M, int N, int batch,
                                   int splits, float alpha, float beta, const float* bias, int relu,
                                   float* lastcol, int lanes) {
	const long long mn = (long long)M * N, total = batch * mn;
	const int per_warp = 32 / lanes, lane = threadIdx.x % 32, l = lane % lanes;
	const long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
	const long long warps = (long long)gridDim.x * blockDim.x / 32;
	for (long long e0 = warp * per_warp; e0 < total; e0 += warps * per_warp) {
		const long long e = e0 + lane / lanes;
		float s = 0.0f;
		if (e < total) {
			const float* w = ws + e / mn * splits * mn + e % mn;
			for (int z = l; z < splits; z += lanes) s += w[z * mn];
		}
		for (int o = lanes / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
		if (e >= total || l != 0) continue;
		long long g = e / mn, r = e - g * mn;
		int i = (int)(r / N), j = (int)(r - (long long)i * N);
		float* p = lastcol != nullptr && j == N - 1 ? lastcol + g * M + i : C + g * sc + (long long)i * ldc + j;
		float v = beta == 0.0f ? alpha * s : alpha * s + beta * *p;
		*p = kiln_gemm::gemm_epilogue(v, j, bias, relu);
	}
}
