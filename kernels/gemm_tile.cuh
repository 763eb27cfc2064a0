// gemm_tile.cuh: the block-tiled matrix product every GEMM-shaped kernel
// shares (kernels/gemm.cu: plain GEMM; kernels/conv.cu: implicit-GEMM
// convolution, forward and both gradients). An operation ("op") says how to
// read element (i, p) of A and (p, j) of B and where result (i, j) goes; this
// file does the tiling, so a convolution never materialises its im2col matrix.
//
// Tiling: a block of 256 threads owns a BM×BN tile of C and walks K in steps
// of BK = 8 (32 on the bf16 tensor-core tiles, below). Each step the tiles of
// A (BM×8) and B (8×BN) go through registers into shared memory, k-major,
// with 4 (fp32, bf16) or 8 (tf32) floats of row padding so that neither the
// stores nor the reads of a warp collide on a bank. The loads of step s+1 are issued before step s is
// multiplied (register prefetch) and stored into the other of two shared
// buffers right after it, so one barrier a step suffices. Per-k index
// tables (where an op needs div/mod to find an element, e.g. k → (c, kh,
// kw)) are built once per step by 8 threads into a double-buffered shared
// table instead of by every thread for every element (by BK threads).
// Out-of-range rows, columns and k read as zero, so any M, N, K works.
//
//   - fp32: each thread accumulates TM×TN = 8×8 (128×128 tile), 4×4 (64×64),
//     2×2 (32×32), 2×8 (32×128) or 8×2 (128×32) outputs in registers, in
//     interleaved chunks of up to 4 per axis so the float4 (float2) shared
//     reads of a warp are conflict-free.
//   - tf32 (sm_80+, opt-in): the 8 warps sit 2×4 over the tile, each warp
//     issues mma.sync.m16n8k8 TF32 tensor-core products (64×32 per warp for
//     the 128×128 tile, 32×16 for 64×64). Inputs are rounded to TF32
//     (cvt.rna) as they enter shared memory. The emulator runs the same
//     fragments through a warp-wide emulation of the instruction (mma_all):
//     products of two TF32 values are exact in fp32, so it differs from the
//     tensor cores only in the order of the sum.
//   - bf16 (sm_80+, --precision bf16): the same warp layout and accumulators,
//     in k-steps of 32 (BK): each thread loads pairs of consecutive k,
//     rounds them to bf16 (kiln_to_bf16, the rule of every Kiln path) and
//     packs them into one 32-bit word in registers, stored into shared
//     memory k-major along each row of A and column of B (16 words and 4
//     of padding: ldmatrix's eight rows of 16 bytes then fall on distinct
//     banks); ldmatrix.x4 reads the fragments of mma.sync.m16n8k16, two
//     sub-steps of 16 a k-step. Half the shared memory a value of fp32 and
//     four times the k a barrier. The emulator emulates both instructions
//     on the same registers. The small and rectangular
//     tiles (32×32, 32×128, 128×32) have bf16 kernels too, for products
//     over few channels: the fp32 loop above on inputs rounded the same way.
//     A product of two bf16 is exact in fp32, so they sum what the tensor
//     cores sum, in another order.
//
// Split K: blockIdx.z = group·splits + split; split s covers a contiguous run
// of whole k-steps and writes its partial tile to a workspace that
// gemm_splitk_reduce_f32 adds up in split order. Nothing is atomic: every
// result is the same run after run.
//
// Numerics: float accumulation, one fmaf per product, k ascending within a
// split. Indices are 32-bit inside ops whose tensors the Go launcher has
// checked to be below 2^31 elements; the plain GEMM uses 64-bit offsets.
#pragma once
#include "common.cuh"

#ifdef KILN_EMU
#ifndef __align__
#define __align__(n) __attribute__((aligned(n)))
#endif
#endif

namespace kiln_gemm {

constexpr int THREADS = 256;
constexpr int KTAB = 4;  // ints of per-k table an op may fill

// What a tile's products multiply in (engine.Precision).
enum Prec { F32, TF32, BF16 };

// A tile of BM×BN outputs; each thread holds TM×TN of them (by default
// square: 8×8 for 128×128, 4×4 for 64×64, 2×2 for 32×32).
template <int BM_, int BN_, Prec P_, int TM_ = 0, int TN_ = 0>
struct Tile {
	static constexpr int BM = BM_, BN = BN_;
	static constexpr Prec P = P_;
	// The tensor-core warp layout: low precision on the square 64 and 128
	// tiles. The other tiles multiply in the fp32 loop whatever P rounds to.
	static constexpr bool MMA = P != F32 && BM == BN && BM >= 64;
	// bf16 on those tiles: k-steps of 32 in bf16 words (see the top).
	static constexpr bool K16 = P == BF16 && MMA;
	static constexpr int BK = K16 ? 32 : 8;
	static constexpr int KW = BK / 2 + 4;  // 32-bit words a shared row of a K16 tile
	static constexpr int SQ = BM * BN / THREADS == 64 ? 8 : BM * BN / THREADS == 16 ? 4 : 2;
	static constexpr int TM = TM_ ? TM_ : SQ, TN = TN_ ? TN_ : SQ;
	// A thread's rows (columns) come in chunks of CHM (CHN) consecutive
	// ones, read from shared memory in one load each.
	static constexpr int CHM = TM < 4 ? TM : 4, CHN = TN < 4 ? TN : 4;
	// bf16 fragments read rows 2·tig and 2·tig+1: with 4 floats of padding
	// the four tig of a warp land 8 banks apart, as tf32's rows tig do at 8.
	static constexpr int PAD = P == TF32 ? 8 : 4;
	static_assert(TM * TN * THREADS == BM * BN, "tile does not split evenly over 256 threads");
	static_assert(THREADS % BM == 0 && THREADS % BN == 0, "tile edge must divide 256");
	static_assert(!MMA || TM >= 4, "the tensor-core warp layout needs a 64 or 128 tile");
	static_assert((BM / TM) * (BN / TN) == THREADS, "one thread per TM×TN outputs");
};
typedef Tile<64, 64, F32> Tile64;
typedef Tile<128, 128, F32> Tile128;
typedef Tile<64, 64, TF32> Tile64TF32;
typedef Tile<128, 128, TF32> Tile128TF32;
typedef Tile<64, 64, BF16> Tile64BF16;
typedef Tile<128, 128, BF16> Tile128BF16;
// The small fp32 tile, for products whose M and N are both small (a
// convolution's weight gradient with few channels, split over a long K):
// a 64 tile would spend most of its work on rows and columns out of range.
typedef Tile<32, 32, F32> Tile32;
// Rectangular fp32 tiles for a product with a small M (32×128: a
// convolution with few output channels, over a batch of pixels) or a small
// N (128×32: a linear layer with few outputs): 16 outputs a thread, as the
// 64 tile, with half as much of the tile out of range.
typedef Tile<32, 128, F32, 2, 8> Tile32x128;
typedef Tile<128, 32, F32, 8, 2> Tile128x32;
// The same in bf16 (inputs rounded to bf16 as they enter shared memory).
typedef Tile<32, 32, BF16> Tile32BF16;
typedef Tile<32, 128, BF16, 2, 8> Tile32x128BF16;
typedef Tile<128, 32, BF16, 8, 2> Tile128x32BF16;

// Round to TF32 (10 mantissa bits), nearest with ties away from zero, as
// cvt.rna.tf32.f32 does. Infinities and NaNs pass through.
__device__ __forceinline__ float to_tf32(float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
	unsigned int u;
	asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(u) : "f"(x));
	return __uint_as_float(u);
#else
	unsigned int u = __float_as_uint(x);
	if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
	return __uint_as_float(u);
#endif
}

// round_in rounds a value entering a tile of precision P.
template <Prec P>
__device__ __forceinline__ float round_in(float x) {
	return P == TF32 ? to_tf32(x) : P == BF16 ? kiln_to_bf16(x) : x;
}

// N = 4 or 2 consecutive floats of shared memory (aligned to their size).
template <int N>
__device__ __forceinline__ void load_n(const float* p, float* v) {
#ifdef __CUDACC__
	if (N == 4) {
		float4 q = *reinterpret_cast<const float4*>(p);
		v[0] = q.x;
		v[1] = q.y;
		v[2] = q.z;
		v[3] = q.w;
		return;
	}
	float2 q = *reinterpret_cast<const float2*>(p);
	v[0] = q.x;
	v[1] = q.y;
#else
	for (int i = 0; i < N; i++) v[i] = p[i];
#endif
}

// The tensor-core products run on sm_80+ as mma.sync, and under the
// emulator as a warp-wide emulation of the same instruction on the same
// fragment registers (mma_all), so the fragment code is tested off the GPU.
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800) || defined(KILN_EMU)
#define KILN_GEMM_MMA 1
#endif

#ifdef KILN_GEMM_MMA
// Fragment registers (gid = lane/4, tig = lane%4), as in the PTX ISA:
//   m16n8k8 .tf32: a0 (gid, tig) a1 (gid+8, tig) a2 (gid, tig+4) a3 (gid+8, tig+4)
//                  b0 (k=tig, n=gid) b1 (k=tig+4, n=gid)
//   m16n8k16 .bf16: each register two bf16 of consecutive k, the lower k in
//                  the low half: a0 (gid, 2tig..2tig+1) a1 (gid+8, 2tig..)
//                  a2 (gid, 2tig+8..) a3 (gid+8, 2tig+8..)
//                  b0 (k=2tig..2tig+1, n=gid) b1 (k=2tig+8.., n=gid)
//   d (fp32, both): d0 (gid, 2tig) d1 (gid, 2tig+1) d2 (gid+8, 2tig) d3 (gid+8, 2tig+1)
// Both take four A and two B registers; bf16's cover twice the k.
template <Prec P>
struct Frag {
	static constexpr int A = 4, B = 2, K = P == BF16 ? 16 : 8;
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// d[0..3] += A(16×8, row) · B(8×8, col), one warp.
__device__ __forceinline__ void mma_tf32(float* d, const unsigned int* a, const unsigned int* b) {
	asm volatile(
	    "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
	    "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
	    : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
	    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma_bf16(float* d, const unsigned int* a, const unsigned int* b) {
	asm volatile(
	    "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
	    "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
	    : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
	    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

// ldmatrix_x4 loads four 8×8 matrices of 16-bit values from shared memory,
// one warp: lane l gives the address of row l%8 of matrix l/8 (16 bytes,
// 16-byte aligned) and receives, in r[j], the 32-bit word l%4 of row l/4 of
// matrix j (.x4, no .trans).
__device__ __forceinline__ void ldmatrix_x4(unsigned int (&r)[4], const unsigned int* row) {
#ifdef KILN_EMU
	kiln_emu_check_align16(row);
	const uintptr_t p = reinterpret_cast<uintptr_t>(row);
	const uint32_t mine[2] = {static_cast<uint32_t>(p), static_cast<uint32_t>(p >> 32)};
	const uint32_t* tab = kiln_emu_warp_table(mine, 2);
	const int lane = kiln_emu_lane();
	for (int j = 0; j < 4; j++) {
		const int src = 8 * j + lane / 4;
		const uintptr_t q = tab[2 * src] | static_cast<uintptr_t>(tab[2 * src + 1]) << 32;
		r[j] = reinterpret_cast<const unsigned int*>(q)[lane % 4];
	}
	kiln_emu_warp_table_done();
#else
	const unsigned int a = static_cast<unsigned int>(__cvta_generic_to_shared(row));
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(a));
#endif
}

// bf16_pair packs the bf16 values lo (k) and hi (k+1), floats whose low half
// is zero, into one register: lo's upper half low, hi's high.
__device__ __forceinline__ unsigned int bf16_pair(float lo, float hi) {
#ifdef KILN_EMU
	return (__float_as_uint(lo) >> 16) | (__float_as_uint(hi) & 0xffff0000u);
#else
	return __byte_perm(__float_as_uint(lo), __float_as_uint(hi), 0x7632);
#endif
}

#ifdef KILN_EMU
// emu_mma_all is mma_all's product under the emulator: every lane publishes
// its fragments, and computes its d of each fragment from the A and B they
// make, k ascending in one fmaf chain (exact products, as on the tensor
// cores, which leave the order of the sum unspecified).
template <class T, Prec P>
void emu_mma_all(float (&acc)[T::TM][T::TN], const unsigned int (&fa)[T::TM / 2][Frag<P>::A],
                 const unsigned int (&fb)[T::TN / 2][Frag<P>::B]) {
	constexpr int MT = T::TM / 2, NT = T::TN / 2, RA = Frag<P>::A, RB = Frag<P>::B, K = Frag<P>::K;
	constexpr int NA = MT * RA, N = NA + NT * RB;
	constexpr bool H = P == BF16;  // two bf16 a register
	uint32_t mine[N];
	std::memcpy(mine, fa, sizeof fa);
	std::memcpy(mine + NA, fb, sizeof fb);
	const uint32_t* tab = kiln_emu_warp_table(mine, N);
	auto value = [&](int lane, int reg, int half) {
		uint32_t u = tab[lane * N + reg];
		return H ? __uint_as_float(half ? u & 0xffff0000u : u << 16) : __uint_as_float(u);
	};
	// Element (r, k) of fragment mt of A, (k, n) of fragment nt of B.
	auto a = [&](int mt, int r, int k) {
		return H ? value((r % 8) * 4 + (k % 8) / 2, mt * RA + r / 8 + 2 * (k / 8), k % 2)
		         : value((r % 8) * 4 + k % 4, mt * RA + r / 8 + 2 * (k / 4), 0);
	};
	auto b = [&](int nt, int k, int n) {
		return H ? value(n * 4 + (k % 8) / 2, NA + nt * RB + k / 8, k % 2)
		         : value(n * 4 + k % 4, NA + nt * RB + k / 4, 0);
	};
	const int lane = kiln_emu_lane(), gid = lane >> 2, tig = lane & 3;
	for (int mt = 0; mt < MT; mt++)
		for (int nt = 0; nt < NT; nt++)
			for (int q = 0; q < 4; q++) {  // d_q: row gid + 8(q/2), column 2tig + q%2
				float& d = acc[2 * mt + q / 2][2 * nt + q % 2];
				for (int k = 0; k < K; k++) d = fmaf(a(mt, gid + 8 * (q / 2), k), b(nt, k, 2 * tig + q % 2), d);
			}
	kiln_emu_warp_table_done();
}
#endif

// mma_all adds A_mt · B_nt (inputs of precision P) to each 16×8 fragment
// (mt, nt) of a warp's accumulators: rows 2mt, 2mt+1 by columns 2nt, 2nt+1
// of acc hold its d.
template <class T, Prec P>
__device__ __forceinline__ void mma_all(float (&acc)[T::TM][T::TN], const unsigned int (&fa)[T::TM / 2][Frag<P>::A],
                                        const unsigned int (&fb)[T::TN / 2][Frag<P>::B]) {
#ifdef KILN_EMU
	emu_mma_all<T, P>(acc, fa, fb);
#else
#pragma unroll
	for (int mt = 0; mt < T::TM / 2; mt++)
#pragma unroll
		for (int nt = 0; nt < T::TN / 2; nt++) {
			float d[4] = {acc[2 * mt][2 * nt], acc[2 * mt][2 * nt + 1], acc[2 * mt + 1][2 * nt],
			              acc[2 * mt + 1][2 * nt + 1]};
			if (P == BF16)
				mma_bf16(d, fa[mt], fb[nt]);
			else
				mma_tf32(d, fa[mt], fb[nt]);
			acc[2 * mt][2 * nt] = d[0];
			acc[2 * mt][2 * nt + 1] = d[1];
			acc[2 * mt + 1][2 * nt] = d[2];
			acc[2 * mt + 1][2 * nt + 1] = d[3];
		}
#endif
}

// One k-step of 8 of a warp's TM/2 × TN/2 fragments of 16×8, rows from wr
// and columns from wc of the tile, on TF32 tensor cores.
template <class T>
__device__ __forceinline__ void warp_mma_tf32(float (&acc)[T::TM][T::TN], const float (*As)[T::BM + T::PAD],
                                              const float (*Bs)[T::BN + T::PAD], int wr, int wc, int gid, int tig) {
	constexpr int MT = T::TM / 2, NT = T::TN / 2;
	unsigned int fa[MT][4], fb[NT][2];
#pragma unroll
	for (int mt = 0; mt < MT; mt++) {
		int r0 = wr + mt * 16 + gid;
		fa[mt][0] = __float_as_uint(As[tig][r0]);
		fa[mt][1] = __float_as_uint(As[tig][r0 + 8]);
		fa[mt][2] = __float_as_uint(As[tig + 4][r0]);
		fa[mt][3] = __float_as_uint(As[tig + 4][r0 + 8]);
	}
#pragma unroll
	for (int nt = 0; nt < NT; nt++) {
		int c0 = wc + nt * 8 + gid;
		fb[nt][0] = __float_as_uint(Bs[tig][c0]);
		fb[nt][1] = __float_as_uint(Bs[tig + 4][c0]);
	}
	mma_all<T, TF32>(acc, fa, fb);
}

// One sub-step of 16 of a K16 tile on bf16 tensor cores: Aw holds row i of
// A as k pairs, Bw column j of B; ks is the sub-step's first word (k/2).
// Each ldmatrix.x4 reads one 16×16 fragment of A, or the two 8-column
// fragments nt, nt+1 of B.
template <class T>
__device__ __forceinline__ void warp_mma_bf16(float (&acc)[T::TM][T::TN], const unsigned int (*Aw)[T::KW],
                                              const unsigned int (*Bw)[T::KW], int wr, int wc, int lane, int ks) {
	constexpr int MT = T::TM / 2, NT = T::TN / 2;
	static_assert(NT % 2 == 0, "B fragments are read in pairs");
	unsigned int fa[MT][4], fb[NT][2];
#pragma unroll
	for (int nt = 0; nt < NT; nt += 2) {
		unsigned int r[4];
		ldmatrix_x4(r, &Bw[wc + nt * 8 + (lane & 7) + ((lane >> 4) << 3)][ks + ((lane >> 3) & 1) * 4]);
		fb[nt][0] = r[0];
		fb[nt][1] = r[1];
		fb[nt + 1][0] = r[2];
		fb[nt + 1][1] = r[3];
	}
#pragma unroll
	for (int mt = 0; mt < MT; mt++) ldmatrix_x4(fa[mt], &Aw[wr + mt * 16 + (lane & 15)][ks + (lane >> 4) * 4]);
	mma_all<T, BF16>(acc, fa, fb);
}
#endif

// A product's epilogue on C's value v at column j: + bias[j] (bias may be
// null), then max(·, 0) when relu is set. The add is rounded apart from the
// product before it (no FMA), so a fused epilogue gives the bits of the
// separate bias and ReLU kernels (linear.cu, activation.cu).
__device__ __forceinline__ float gemm_epilogue(float v, int j, const float* bias, int relu) {
	if (bias != nullptr) v = __fadd_rn(v, bias[j]);
	if (relu) v = v < 0.0f ? 0.0f : v;
	return v;
}

// The C side of a plain product: C = alpha·acc + beta·C (beta == 0 does not
// read C, so a fresh buffer's NaNs stay out) then the epilogue, or the
// split's partial tile (gemm_splitk_reduce_f32 applies the epilogue).
struct CStore {
	float* c;
	int ldc;
	long long sc;  // elements between the matrices of a batch
	float alpha, beta;
	float* ws;  // splits × batch partial tiles (M×N each) when splits > 1
	int splits, M, N;
	const float* bias;  // per column of C, or null
	int relu;

	__device__ __forceinline__ void put(int g, int s, int i, int j, float acc) const {
		if (splits > 1) {
			ws[(((long long)g * splits + s) * M + i) * N + j] = acc;
			return;
		}
		float* p = c + g * sc + (long long)i * ldc + j;
		float v = beta == 0.0f ? alpha * acc : alpha * acc + beta * *p;
		*p = gemm_epilogue(v, j, bias, relu);
	}
};

// gemm_tile runs one block of op's product. Op provides:
//   M, N, K, splits                      sizes per group; blockIdx.z = group·splits + split
//   A_ALONG_K, B_ALONG_K                 which way consecutive threads walk when loading
//                                        (along k or along i / j), for coalescing
//   struct Col, struct OutCol            per-thread column facts, computed once
//   krow(g, p, int t[KTAB])              per-k table entry (only if NEEDS_KTAB)
//   col(g, j, Col&), out_col(g, j, OutCol&)
//   a(g, i, p, t), b(g, p, j, t, Col)    elements, called only in range
//   store(g, s, i, j, OutCol, acc)
template <class T, class Op>
__device__ __forceinline__ void gemm_tile(const Op& op) {
	constexpr int BM = T::BM, BN = T::BN, TM = T::TM, TN = T::TN, BK = T::BK, KW = T::KW;
	constexpr bool K16 = T::K16;
	// Values a thread loads a step; a K16 tile loads them in k pairs (one
	// packed word each), LA/2 and LB/2 of them.
	constexpr int LA = BM * BK / THREADS, LB = BK * BN / THREADS;
	constexpr int RA = K16 ? LA / 2 : LA, RB = K16 ? LB / 2 : LB;  // loads (of one value or a pair)
	constexpr int KL = K16 ? BK / 2 : BK;                          // load positions along k
	constexpr int NCB = Op::B_ALONG_K ? RB : 1;
	// Two buffers of each: step s multiplies buffer s&1 while step s+1's
	// values go into the other, so a step needs one barrier, not two. A
	// K16 tile keeps bf16 words in Aw, Bw; the others floats in As, Bs (the
	// arrays a tile does not use have one element).
	__shared__ __align__(16) float As[2][K16 ? 1 : BK][K16 ? 1 : BM + T::PAD];
	__shared__ __align__(16) float Bs[2][K16 ? 1 : BK][K16 ? 1 : BN + T::PAD];
	__shared__ __align__(16) unsigned int Aw[2][K16 ? BM : 1][K16 ? KW : 4];
	__shared__ __align__(16) unsigned int Bw[2][K16 ? BN : 1][K16 ? KW : 4];
	__shared__ int ktab[2][BK][KTAB];

	const int tid = threadIdx.x;
	const int M = op.M, N = op.N, K = op.K, splits = op.splits;
	const int g = blockIdx.z / splits, s = blockIdx.z % splits;
	const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
	const int steps = (K + BK - 1) / BK, per = (steps + splits - 1) / splits;
	const int kbeg = min(K, s * per * BK), kend = min(K, kbeg + per * BK);

	// Where load r of this thread reads: row (column) and k position, fixed
	// across steps but for k0 (cheap to recompute, so not kept in
	// registers). A K16 tile's k position q is the pair 2q, 2q+1.
	auto ail = [&](int r) { return Op::A_ALONG_K ? tid / KL + r * (THREADS / KL) : tid % BM; };
	auto apl = [&](int r) { return Op::A_ALONG_K ? tid % KL : tid / BM + r * (THREADS / BM); };
	auto bjl = [&](int r) { return Op::B_ALONG_K ? tid / KL + r * (THREADS / KL) : tid % BN; };
	auto bpl = [&](int r) { return Op::B_ALONG_K ? tid % KL : tid / BN + r * (THREADS / BN); };
	typename Op::Col bc[NCB] = {};
#pragma unroll
	for (int r = 0; r < NCB; r++)
		if (n0 + bjl(r) < N) op.col(g, n0 + bjl(r), bc[r]);

	auto table = [&](int k0, int buf) {
		if (Op::NEEDS_KTAB && tid < BK && k0 + tid < kend) op.krow(g, k0 + tid, ktab[buf][tid]);
	};
	// Element (i, k0 + kl) of A and (k0 + kl, j) of B, zero out of range.
	auto a_at = [&](int i, int k0, int kl, int buf) {
		return i < M && k0 + kl < kend ? op.a(g, i, k0 + kl, ktab[buf][kl]) : 0.0f;
	};
	auto b_at = [&](int j, int k0, int kl, int buf, int r) {
		return j < N && k0 + kl < kend ? op.b(g, k0 + kl, j, ktab[buf][kl], bc[Op::B_ALONG_K ? r : 0]) : 0.0f;
	};
	float ra[K16 ? 1 : LA], rb[K16 ? 1 : LB];        // the next step's values
	unsigned int wa[K16 ? RA : 1], wb[K16 ? RB : 1];  // or its bf16 pairs
	auto fetch = [&](int k0, int buf) {
#pragma unroll
		for (int r = 0; r < RA; r++) {
			int i = m0 + ail(r), q = apl(r);
			if constexpr (K16)
				wa[r] = bf16_pair(kiln_to_bf16(a_at(i, k0, 2 * q, buf)), kiln_to_bf16(a_at(i, k0, 2 * q + 1, buf)));
			else
				ra[r] = a_at(i, k0, q, buf);
		}
#pragma unroll
		for (int r = 0; r < RB; r++) {
			int j = n0 + bjl(r), q = bpl(r);
			if constexpr (K16)
				wb[r] = bf16_pair(kiln_to_bf16(b_at(j, k0, 2 * q, buf, r)), kiln_to_bf16(b_at(j, k0, 2 * q + 1, buf, r)));
			else
				rb[r] = b_at(j, k0, q, buf, r);
		}
	};
	auto stash = [&](int buf) {
#pragma unroll
		for (int r = 0; r < RA; r++) {
			if constexpr (K16)
				Aw[buf][ail(r)][apl(r)] = wa[r];
			else
				As[buf][apl(r)][ail(r)] = round_in<T::P>(ra[r]);
		}
#pragma unroll
		for (int r = 0; r < RB; r++) {
			if constexpr (K16)
				Bw[buf][bjl(r)][bpl(r)] = wb[r];
			else
				Bs[buf][bpl(r)][bjl(r)] = round_in<T::P>(rb[r]);
		}
	};

	// This thread's outputs: rows row(m), columns col(c) of the tile.
	const int warp = tid / 32, lane = tid % 32, gid = lane >> 2, tig = lane & 3;
	const int tx = tid % (BN / TN), ty = tid / (BN / TN);
	constexpr int CHM = T::CHM, CHN = T::CHN;
	auto row = [&](int m) {
		if (T::MMA) return (warp / 4) * (BM / 2) + (m >> 1) * 16 + gid + 8 * (m & 1);
		return (m / CHM) * (CHM * BM / TM) + ty * CHM + m % CHM;
	};
	auto col = [&](int c) {
		if (T::MMA) return (warp % 4) * (BN / 4) + (c >> 1) * 8 + 2 * tig + (c & 1);
		return (c / CHN) * (CHN * BN / TN) + tx * CHN + c % CHN;
	};

	float acc[TM][TN];
#pragma unroll
	for (int m = 0; m < TM; m++)
#pragma unroll
		for (int c = 0; c < TN; c++) acc[m][c] = 0.0f;

	auto multiply = [&](int buf) {
		if constexpr (!T::MMA) {
			const float(*Ab)[BM + T::PAD] = As[buf];
			const float(*Bb)[BN + T::PAD] = Bs[buf];
#pragma unroll
			for (int kk = 0; kk < BK; kk++) {
				float a[TM], b[TN];
#pragma unroll
				for (int q = 0; q < TM / CHM; q++) load_n<CHM>(&Ab[kk][q * (CHM * BM / TM) + ty * CHM], a + CHM * q);
#pragma unroll
				for (int q = 0; q < TN / CHN; q++) load_n<CHN>(&Bb[kk][q * (CHN * BN / TN) + tx * CHN], b + CHN * q);
#pragma unroll
				for (int m = 0; m < TM; m++)
#pragma unroll
					for (int c = 0; c < TN; c++) acc[m][c] = fmaf(a[m], b[c], acc[m][c]);
			}
		} else {
		// TF32 or bf16: TM/2 × TN/2 fragments of 16×8 per warp.
#ifdef KILN_GEMM_MMA
			const int wr = (warp / 4) * (BM / 2), wc = (warp % 4) * (BN / 4);
			if constexpr (K16) {
#pragma unroll
				for (int ks = 0; ks < BK / 2; ks += 8) warp_mma_bf16<T>(acc, Aw[buf], Bw[buf], wr, wc, lane, ks);
			} else {
				warp_mma_tf32<T>(acc, As[buf], Bs[buf], wr, wc, gid, tig);
			}
#else
			static_assert(!T::MMA, "tensor-core tiles are built for sm_80+ (and the emulator) only");
#endif
		}
	};

	if (kbeg < kend) {  // the same for every thread of the block
		table(kbeg, 0);
		table(kbeg + BK, 1);
		__syncthreads();
		fetch(kbeg, 0);
		stash(0);
		__syncthreads();
		for (int k0 = kbeg, t = 0; k0 < kend; k0 += BK, t++) {
			bool more = k0 + BK < kend;
			if (more) fetch(k0 + BK, (t + 1) & 1);
			multiply(t & 1);
			// Buffer (t+1)&1 was last read by step t-1's multiply, and
			// table t&1 by step t-1's fetch: both before the last barrier.
			if (more) stash((t + 1) & 1);
			table(k0 + 2 * BK, t & 1);
			__syncthreads();  // step t+1's tiles and table t&1 are written
		}
	}

	typename Op::OutCol oc[TN];
#pragma unroll
	for (int c = 0; c < TN; c++)
		if (n0 + col(c) < N) op.out_col(g, n0 + col(c), oc[c]);
#pragma unroll
	for (int m = 0; m < TM; m++) {
		int i = m0 + row(m);
		if (i >= M) continue;
#pragma unroll
		for (int c = 0; c < TN; c++) {
			int j = n0 + col(c);
			if (j < N) op.store(g, s, i, j, oc[c], acc[m][c]);
		}
	}
}

}  // namespace kiln_gemm
