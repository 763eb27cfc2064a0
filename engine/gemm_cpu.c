// gemm_cpu.c: Kiln's float32 matrix multiply, C = alpha·op(A)·op(B) + beta·C,
// row-major, in parts that the Go side runs on its worker threads.
//
// The AVX2/FMA path follows BLIS/GotoBLAS: the k dimension is cut into KC
// slices; for each slice a KC×NC block of op(B) is packed into 16-column
// micro-panels and an MC×KC block of op(A) into 6-row micro-panels, and a
// 6×16 register-blocked micro-kernel (12 ymm accumulators, in inline
// assembly) sweeps them. The packing absorbs all four transpose combinations,
// so there is one kernel. Small problems skip packing where it costs more than
// it saves (kiln_sgemm_plan): A is then read in place through its row or
// column stride, a non-transposed B through its row stride, and edge tiles
// go through intrinsic kernels for every (rows, 8 or 16 columns) shape. A long
// reduction into a small C with B transposed (a weight gradient) uses dot
// products instead, with no packing at all.
//
// Numerics: every element of C is one chain of FMAs over p in increasing order
// within each KC slice, then c = alpha·acc + beta·c (beta·c skipped when
// beta == 0, so C is never read). Packed and unpacked paths, edge tiles and
// full tiles all do the same operations, so a split of C along M or N does not
// change any bit; only a split along K (partial sums) depends on the thread
// count.
//
// The AVX2 code is compiled for avx2,fma through a target pragma and used only
// when the CPU reports both; elsewhere a portable C loop runs. (The flags are
// not package-wide -mavx2 so that the portable path and any other C in the
// package stay runnable on CPUs without AVX2.)

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include <immintrin.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "elementwise_cpu.h"
#include "gemm_cpu.h"
#include "isa_cpu.h"

// Blocking sizes (overridable with -D for tuning).
#ifndef KILN_KC
#define KILN_KC 256
#endif
#ifndef KILN_MC
#define KILN_MC 144
#endif
#ifndef KILN_NC
#define KILN_NC 4096
#endif

enum {
	MR = 6,        // micro-tile rows
	NR = 16,       // micro-tile columns (two ymm)
	KC = KILN_KC,  // k slice: a 16-column B micro-panel is KC·64 B = 16 KiB (L1)
	MC = KILN_MC,  // rows of packed A per block: MC·KC·4 B = 144 KiB (L2)
	NC = KILN_NC,  // columns of packed B per block: KC·NC·4 B = 4 MiB (L3)
	DOT_KC = 4096, // k slice of the unpacked A·Bᵀ path
	ZMM_PACK_A_MIN = 128 * 1024, // at AVX-512, A of m·k floats up to this stays in place
	ZMM_PACK_A_MIN_N = 4 * 32,   // ... and any A whose product has at most this many columns
};

// ---------------------------------------------------------------------------
// Portable path.

static void sgemm_portable(int ta, int tb, long m, long n, long k, float alpha,
                           const float *a, long lda, const float *b, long ldb,
                           float beta, float *c, long ldc) {
	for (long i = 0; i < m; i++) {
		float *ci = c + i * ldc;
		if (beta == 0) {
			for (long j = 0; j < n; j++) ci[j] = 0;
		} else if (beta != 1) {
			for (long j = 0; j < n; j++) ci[j] *= beta;
		}
		if (tb) {
			for (long j = 0; j < n; j++) {
				const float *bj = b + j * ldb;
				float s = 0;
				for (long p = 0; p < k; p++) s += (ta ? a[p * lda + i] : a[i * lda + p]) * bj[p];
				ci[j] += alpha * s;
			}
			continue;
		}
		for (long p = 0; p < k; p++) {
			const float av = alpha * (ta ? a[p * lda + i] : a[i * lda + p]);
			const float *bp = b + p * ldb;
			for (long j = 0; j < n; j++) ci[j] += av * bp[j];
		}
	}
}

// ---------------------------------------------------------------------------
// Per-thread packing buffers: allocated on first use, grown when needed, freed
// when the thread exits. A cgo call runs on one OS thread from start to end.

enum { BUF_PACK, BUF_SLOTS }; // packing panels

typedef struct {
	float *p[BUF_SLOTS];
	size_t cap[BUF_SLOTS];
} thread_buffer;

static pthread_key_t buffer_key;
static pthread_once_t buffer_once = PTHREAD_ONCE_INIT;
static int buffer_key_ok;

static void buffer_free(void *v) {
	thread_buffer *t = v;
	for (int i = 0; i < BUF_SLOTS; i++) free(t->p[i]);
	free(t);
}

static void buffer_init(void) { buffer_key_ok = pthread_key_create(&buffer_key, buffer_free) == 0; }

#if defined(__GLIBC__)
#include <malloc.h>
// glibc gives each thread that mallocs an arena of its own, 64 MiB of address
// space each, up to 8 a core: the packing buffers of the worker threads
// reserved hundreds of MiB, and under an address-space limit (ulimit -v, a
// batch system's vmem) the Go runtime then found none left and died half
// the time. Two arenas serve these few long-lived buffers as well.
// MALLOC_ARENA_MAX, when set to a value, is the user's choice.
__attribute__((constructor)) static void kiln_few_malloc_arenas(void) {
	const char *set = getenv("MALLOC_ARENA_MAX");
	if (!set || !*set) mallopt(M_ARENA_MAX, 2); // empty is unset, to glibc too
}
#endif

// thread_buf returns this thread's 64-byte aligned buffer number slot, of at
// least n floats, or NULL.
static float *thread_buf(int slot, size_t n) {
	pthread_once(&buffer_once, buffer_init);
	if (!buffer_key_ok) return NULL;
	thread_buffer *t = pthread_getspecific(buffer_key);
	if (!t) {
		t = calloc(1, sizeof *t);
		if (!t) return NULL;
		if (pthread_setspecific(buffer_key, t) != 0) {
			free(t);
			return NULL;
		}
	}
	if (t->cap[slot] < n) {
		void *q;
		free(t->p[slot]);
		t->p[slot] = NULL;
		t->cap[slot] = 0;
		if (posix_memalign(&q, 64, n * sizeof(float)) != 0) return NULL;
		t->p[slot] = q;
		t->cap[slot] = n;
	}
	return t->p[slot];
}

// ---------------------------------------------------------------------------
// AVX2/FMA path.

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#define KINLINE static inline __attribute__((always_inline))

static const int32_t lane_mask_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

// lane_mask enables the first n (0..8) lanes.
KINLINE __m256i lane_mask(long n) { return _mm256_loadu_si256((const __m256i *)(lane_mask_tab + 8 - n)); }

KINLINE void transpose8(__m256 *r0, __m256 *r1, __m256 *r2, __m256 *r3, __m256 *r4, __m256 *r5, __m256 *r6,
                        __m256 *r7) {
	__m256 t0 = _mm256_unpacklo_ps(*r0, *r1), t1 = _mm256_unpackhi_ps(*r0, *r1);
	__m256 t2 = _mm256_unpacklo_ps(*r2, *r3), t3 = _mm256_unpackhi_ps(*r2, *r3);
	__m256 t4 = _mm256_unpacklo_ps(*r4, *r5), t5 = _mm256_unpackhi_ps(*r4, *r5);
	__m256 t6 = _mm256_unpacklo_ps(*r6, *r7), t7 = _mm256_unpackhi_ps(*r6, *r7);
	__m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
	__m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
	__m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
	__m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
	*r0 = _mm256_permute2f128_ps(s0, s4, 0x20);
	*r1 = _mm256_permute2f128_ps(s1, s5, 0x20);
	*r2 = _mm256_permute2f128_ps(s2, s6, 0x20);
	*r3 = _mm256_permute2f128_ps(s3, s7, 0x20);
	*r4 = _mm256_permute2f128_ps(s0, s4, 0x31);
	*r5 = _mm256_permute2f128_ps(s1, s5, 0x31);
	*r6 = _mm256_permute2f128_ps(s2, s6, 0x31);
	*r7 = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// store_row writes c[0:nr] = alpha·x + beta·c[0:nr] (c unread when beta0).
KINLINE void store_row(float *c, __m256 x0, __m256 x1, const int nv, long nr, __m256 va, __m256 vb, int beta0) {
	x0 = _mm256_mul_ps(va, x0);
	if (nv > 1) x1 = _mm256_mul_ps(va, x1);
	if (nr == 8 * nv) {
		if (!beta0) x0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), x0);
		_mm256_storeu_ps(c, x0);
		if (nv > 1) {
			if (!beta0) x1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8), x1);
			_mm256_storeu_ps(c + 8, x1);
		}
		return;
	}
	if (nv == 1) {
		__m256i m0 = lane_mask(nr);
		if (!beta0) x0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c, m0), x0);
		_mm256_maskstore_ps(c, m0, x0);
		return;
	}
	__m256i m1 = lane_mask(nr - 8);
	if (!beta0) x0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), x0);
	_mm256_storeu_ps(c, x0);
	if (!beta0) x1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c + 8, m1), x1);
	_mm256_maskstore_ps(c + 8, m1, x1);
}

// ukernel: C[0:mr, 0:nr] = alpha·Σ_p A[i, p]·B[p, j] + beta·C, with A(i, p)
// at a[i·rsa + p·csa] and B(p, 0:8·nv) at b[p·rsb : p·rsb + 8·nv]. mr and
// nv (vectors of 8 columns) are compile-time constants at every call site.
KINLINE void ukernel(const int mr, const int nv, long k, const float *a, const long rsa, const long csa,
                     const float *b, const long rsb, float *c, long ldc, float alpha, float beta, long nr) {
	__m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
	__m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
	for (long i = 0; i < mr; i++) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
#define KILN_ROW(I)                                                                                                    \
	if (mr > I) {                                                                                                      \
		__m256 ai = _mm256_broadcast_ss(a + I * rsa);                                                                  \
		c##I##0 = _mm256_fmadd_ps(ai, b0, c##I##0);                                                                    \
		if (nv > 1) c##I##1 = _mm256_fmadd_ps(ai, b1, c##I##1);                                                        \
	}
#define KILN_STEP                                                                                                      \
	{                                                                                                                  \
		__m256 b0 = _mm256_loadu_ps(b), b1 = b0;                                                                       \
		if (nv > 1) b1 = _mm256_loadu_ps(b + 8);                                                                       \
		KILN_ROW(0) KILN_ROW(1) KILN_ROW(2) KILN_ROW(3) KILN_ROW(4) KILN_ROW(5)                                        \
		a += csa;                                                                                                      \
		b += rsb;                                                                                                      \
	}
	long p = 0;
	for (; p + 4 <= k; p += 4) {
		KILN_STEP KILN_STEP KILN_STEP KILN_STEP
	}
	for (; p < k; p++) KILN_STEP
#undef KILN_STEP
#undef KILN_ROW
	const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
	const int beta0 = beta == 0;
	store_row(c, c00, c01, nv, nr, va, vb, beta0);
	if (mr > 1) store_row(c + ldc, c10, c11, nv, nr, va, vb, beta0);
	if (mr > 2) store_row(c + 2 * ldc, c20, c21, nv, nr, va, vb, beta0);
	if (mr > 3) store_row(c + 3 * ldc, c30, c31, nv, nr, va, vb, beta0);
	if (mr > 4) store_row(c + 4 * ldc, c40, c41, nv, nr, va, vb, beta0);
	if (mr > 5) store_row(c + 5 * ldc, c50, c51, nv, nr, va, vb, beta0);
}


// One step p of kernel_6x16: B's row p (two vectors of 8) times each of A's
// six packed values at byte offsets a0…a5, into accumulators ymm4…ymm15.
#define ASM_6X16_STEP(a0, a1, a2, a3, a4, a5)                  \
	"vmovups (%[b]), %%ymm0\n\t"                           \
	"vmovups 32(%[b]), %%ymm1\n\t"                         \
	"vbroadcastss " #a0 "(%[a]), %%ymm2\n\t"               \
	"vfmadd231ps %%ymm0, %%ymm2, %%ymm4\n\t"               \
	"vfmadd231ps %%ymm1, %%ymm2, %%ymm5\n\t"               \
	"vbroadcastss " #a1 "(%[a]), %%ymm3\n\t"               \
	"vfmadd231ps %%ymm0, %%ymm3, %%ymm6\n\t"               \
	"vfmadd231ps %%ymm1, %%ymm3, %%ymm7\n\t"               \
	"vbroadcastss " #a2 "(%[a]), %%ymm2\n\t"               \
	"vfmadd231ps %%ymm0, %%ymm2, %%ymm8\n\t"               \
	"vfmadd231ps %%ymm1, %%ymm2, %%ymm9\n\t"               \
	"vbroadcastss " #a3 "(%[a]), %%ymm3\n\t"               \
	"vfmadd231ps %%ymm0, %%ymm3, %%ymm10\n\t"              \
	"vfmadd231ps %%ymm1, %%ymm3, %%ymm11\n\t"              \
	"vbroadcastss " #a4 "(%[a]), %%ymm2\n\t"               \
	"vfmadd231ps %%ymm0, %%ymm2, %%ymm12\n\t"              \
	"vfmadd231ps %%ymm1, %%ymm2, %%ymm13\n\t"              \
	"vbroadcastss " #a5 "(%[a]), %%ymm3\n\t"               \
	"vfmadd231ps %%ymm0, %%ymm3, %%ymm14\n\t"              \
	"vfmadd231ps %%ymm1, %%ymm3, %%ymm15\n\t"

// kernel_6x16: the full micro-tile, A packed (6 floats per p) and B rows of
// 16 floats at b + p·rsb, in assembly because the compiler spills an
// accumulator when B's stride is a run-time value. mode 1 stores the sums to
// C (alpha 1, beta 0), mode 2 adds them to C (alpha 1, beta 1: the same
// rounding as store_row's fma(1, c, acc)), mode 0 leaves them in out (row i,
// vector v at out[16·i + 8·v]) for the general update.
static void kernel_6x16(long k, const float *a, const float *b, long rsb, float *c, long ldc, long mode, float *out) {
	long k4 = k >> 2, kr = k & 3;
	float *c3 = c + 3 * ldc;
	__asm__ volatile(
	    "vxorps %%ymm4, %%ymm4, %%ymm4\n\t"
	    "vxorps %%ymm5, %%ymm5, %%ymm5\n\t"
	    "vxorps %%ymm6, %%ymm6, %%ymm6\n\t"
	    "vxorps %%ymm7, %%ymm7, %%ymm7\n\t"
	    "vxorps %%ymm8, %%ymm8, %%ymm8\n\t"
	    "vxorps %%ymm9, %%ymm9, %%ymm9\n\t"
	    "vxorps %%ymm10, %%ymm10, %%ymm10\n\t"
	    "vxorps %%ymm11, %%ymm11, %%ymm11\n\t"
	    "vxorps %%ymm12, %%ymm12, %%ymm12\n\t"
	    "vxorps %%ymm13, %%ymm13, %%ymm13\n\t"
	    "vxorps %%ymm14, %%ymm14, %%ymm14\n\t"
	    "vxorps %%ymm15, %%ymm15, %%ymm15\n\t"
	    "test %[k4], %[k4]\n\t"
	    "jz 2f\n\t"
	    "1:\n\t"
	    ASM_6X16_STEP(0, 4, 8, 12, 16, 20)
	    "add %[rsb], %[b]\n\t"
	    ASM_6X16_STEP(24, 28, 32, 36, 40, 44)
	    "add %[rsb], %[b]\n\t"
	    ASM_6X16_STEP(48, 52, 56, 60, 64, 68)
	    "add %[rsb], %[b]\n\t"
	    ASM_6X16_STEP(72, 76, 80, 84, 88, 92)
	    "add %[rsb], %[b]\n\t"
	    "add $96, %[a]\n\t"
	    "dec %[k4]\n\t"
	    "jnz 1b\n\t"
	    "2:\n\t"
	    "test %[kr], %[kr]\n\t"
	    "jz 4f\n\t"
	    "3:\n\t"
	    ASM_6X16_STEP(0, 4, 8, 12, 16, 20)
	    "add %[rsb], %[b]\n\t"
	    "add $24, %[a]\n\t"
	    "dec %[kr]\n\t"
	    "jnz 3b\n\t"
	    "4:\n\t"
	    "cmp $1, %[mode]\n\t"
	    "je 5f\n\t"
	    "jg 6f\n\t"
	    "vmovaps %%ymm4, 0(%[out])\n\t"
	    "vmovaps %%ymm5, 32(%[out])\n\t"
	    "vmovaps %%ymm6, 64(%[out])\n\t"
	    "vmovaps %%ymm7, 96(%[out])\n\t"
	    "vmovaps %%ymm8, 128(%[out])\n\t"
	    "vmovaps %%ymm9, 160(%[out])\n\t"
	    "vmovaps %%ymm10, 192(%[out])\n\t"
	    "vmovaps %%ymm11, 224(%[out])\n\t"
	    "vmovaps %%ymm12, 256(%[out])\n\t"
	    "vmovaps %%ymm13, 288(%[out])\n\t"
	    "vmovaps %%ymm14, 320(%[out])\n\t"
	    "vmovaps %%ymm15, 352(%[out])\n\t"
	    "jmp 7f\n\t"
	    "5:\n\t"
	    "vmovups %%ymm4, (%[c])\n\t"
	    "vmovups %%ymm5, 32(%[c])\n\t"
	    "vmovups %%ymm6, (%[c],%[ldc],1)\n\t"
	    "vmovups %%ymm7, 32(%[c],%[ldc],1)\n\t"
	    "vmovups %%ymm8, (%[c],%[ldc],2)\n\t"
	    "vmovups %%ymm9, 32(%[c],%[ldc],2)\n\t"
	    "vmovups %%ymm10, (%[c3])\n\t"
	    "vmovups %%ymm11, 32(%[c3])\n\t"
	    "vmovups %%ymm12, (%[c3],%[ldc],1)\n\t"
	    "vmovups %%ymm13, 32(%[c3],%[ldc],1)\n\t"
	    "vmovups %%ymm14, (%[c3],%[ldc],2)\n\t"
	    "vmovups %%ymm15, 32(%[c3],%[ldc],2)\n\t"
	    "jmp 7f\n\t"
	    "6:\n\t"
	    "vaddps (%[c]), %%ymm4, %%ymm4\n\t"
	    "vmovups %%ymm4, (%[c])\n\t"
	    "vaddps 32(%[c]), %%ymm5, %%ymm5\n\t"
	    "vmovups %%ymm5, 32(%[c])\n\t"
	    "vaddps (%[c],%[ldc],1), %%ymm6, %%ymm6\n\t"
	    "vmovups %%ymm6, (%[c],%[ldc],1)\n\t"
	    "vaddps 32(%[c],%[ldc],1), %%ymm7, %%ymm7\n\t"
	    "vmovups %%ymm7, 32(%[c],%[ldc],1)\n\t"
	    "vaddps (%[c],%[ldc],2), %%ymm8, %%ymm8\n\t"
	    "vmovups %%ymm8, (%[c],%[ldc],2)\n\t"
	    "vaddps 32(%[c],%[ldc],2), %%ymm9, %%ymm9\n\t"
	    "vmovups %%ymm9, 32(%[c],%[ldc],2)\n\t"
	    "vaddps (%[c3]), %%ymm10, %%ymm10\n\t"
	    "vmovups %%ymm10, (%[c3])\n\t"
	    "vaddps 32(%[c3]), %%ymm11, %%ymm11\n\t"
	    "vmovups %%ymm11, 32(%[c3])\n\t"
	    "vaddps (%[c3],%[ldc],1), %%ymm12, %%ymm12\n\t"
	    "vmovups %%ymm12, (%[c3],%[ldc],1)\n\t"
	    "vaddps 32(%[c3],%[ldc],1), %%ymm13, %%ymm13\n\t"
	    "vmovups %%ymm13, 32(%[c3],%[ldc],1)\n\t"
	    "vaddps (%[c3],%[ldc],2), %%ymm14, %%ymm14\n\t"
	    "vmovups %%ymm14, (%[c3],%[ldc],2)\n\t"
	    "vaddps 32(%[c3],%[ldc],2), %%ymm15, %%ymm15\n\t"
	    "vmovups %%ymm15, 32(%[c3],%[ldc],2)\n\t"
	    "7:\n\t"
	    : [a] "+r"(a), [b] "+r"(b), [k4] "+r"(k4), [kr] "+r"(kr)
	    : [rsb] "r"(rsb * (long)sizeof(float)), [out] "r"(out), [c] "r"(c), [c3] "r"(c3),
	      [ldc] "r"(ldc * (long)sizeof(float)), [mode] "r"(mode)
	    : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
	      "xmm13", "xmm14", "xmm15", "cc", "memory");
}

static void tile_6x16(long mr, long k, const float *a, const float *b, long rsb, float *c, long ldc, float alpha,
                      float beta) {
	for (long i = 0; i < mr; i++) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
	if (mr == MR && alpha == 1 && (beta == 0 || beta == 1)) {
		kernel_6x16(k, a, b, rsb, c, ldc, beta == 0 ? 1 : 2, NULL);
		return;
	}
	float acc[96] __attribute__((aligned(32)));
	kernel_6x16(k, a, b, rsb, c, ldc, 0, acc);
	const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
	const int beta0 = beta == 0;
	for (long i = 0; i < mr; i++)
		store_row(c + i * ldc, _mm256_load_ps(acc + 16 * i), _mm256_load_ps(acc + 16 * i + 8), 2, NR, va, vb, beta0);
}

// Kernel dispatchers: one per layout of A (packed; rows or columns in place)
// and of B (packed or in place), each with the 6×2 (mr, nv) instantiations.
// Only one stride per operand is a run-time value, which keeps the address
// arithmetic in registers.
#define KILN_DEFINE_KERNEL(NAME, RSA, CSA, RSB)                                                                        \
	static __attribute__((noinline)) void NAME(long mr, long nr, long k, const float *a, long rsa, long csa, const float *b, long rsb,          \
	                 float *c, long ldc, float alpha, float beta) {                                                    \
		(void)rsa, (void)csa, (void)rsb;                                                                               \
		if ((RSA) == 1 && (CSA) == MR && mr == MR && nr == NR) { /* packed A, full tile */                         \
			tile_6x16(mr, k, a, b, RSB, c, ldc, alpha, beta);                                                          \
			return;                                                                                                    \
		}                                                                                                              \
		if (nr > 8) {                                                                                                  \
			switch (mr) {                                                                                              \
			case 6: ukernel(6, 2, k, a, RSA, CSA, b, RSB, c, ldc, alpha, beta, nr); break;                             \
			case 5: ukernel(5, 2, k, a, RSA, CSA, b, RSB, c, ldc, alpha, beta, nr); break;                             \
			case 4: ukernel(4, 2, k, a, RSA, CSA, b, RSB, c, ldc, alpha, beta, nr); break;                             \
			case 3: ukernel(3, 2, k, a, RSA, CSA, b, RSB, c, ldc, alpha, beta, nr); break;                             \
			case 2: ukernel(2, 2, k, a, RSA, CSA, b, RSB, c, ldc, alpha, beta, nr); break;                             \
			default: ukernel(1, 2, k, a, RSA, CSA, b, RSB, c, ldc, alpha, beta, nr); break;                            \
			}                                                                                                          \
		} else {                                                                                                       \
			switch (mr) {                                                                                              \
			case 6: ukernel(6, 1, k, a, RSA, CSA, b, RSB, c, ldc, alpha, beta, nr); break;                             \
			case 5: ukernel(5, 1, k, a, RSA, CSA, b, RSB, c, ldc, alpha, beta, nr); break;                             \
			case 4: ukernel(4, 1, k, a, RSA, CSA, b, RSB, c, ldc, alpha, beta, nr); break;                             \
			case 3: ukernel(3, 1, k, a, RSA, CSA, b, RSB, c, ldc, alpha, beta, nr); break;                             \
			case 2: ukernel(2, 1, k, a, RSA, CSA, b, RSB, c, ldc, alpha, beta, nr); break;                             \
			default: ukernel(1, 1, k, a, RSA, CSA, b, RSB, c, ldc, alpha, beta, nr); break;                            \
			}                                                                                                          \
		}                                                                                                              \
	}

KILN_DEFINE_KERNEL(kernel_pp, 1, MR, NR)   // A packed, B packed
KILN_DEFINE_KERNEL(kernel_ps, 1, MR, rsb)  // A packed, B in place
KILN_DEFINE_KERNEL(kernel_rp, rsa, 1, NR)  // A rows in place, B packed
KILN_DEFINE_KERNEL(kernel_rs, rsa, 1, rsb) // A rows in place, B in place
KILN_DEFINE_KERNEL(kernel_cp, 1, csa, NR)  // A columns in place (transposed A), B packed
KILN_DEFINE_KERNEL(kernel_cs, 1, csa, rsb) // A columns in place, B in place

// pack_a packs op(A)[0:mc, 0:kc] (a points at its (0, 0) element) into
// 6-row micro-panels: dst[panel·6·kc + p·6 + i], rows past mc zero.
// Writes up to 8 floats past the end.
static void pack_a(int ta, long mc, long kc, const float *a, long lda, float *dst) {
	if (ta) { // A(i, p) = a[p·lda + i]: walk the rows of storage, deal six floats to each panel
		const long full = mc / MR * MR;
		for (long p = 0; p < kc; p++) {
			const float *row = a + p * lda;
			float *d = dst + p * MR;
			for (long i0 = 0; i0 < full; i0 += MR, d += MR * kc) {
				_mm_storeu_ps(d, _mm_loadu_ps(row + i0));
				_mm_store_sd((double *)(d + 4), _mm_load_sd((const double *)(row + i0 + 4)));
			}
			if (full < mc)
				for (long i = 0; i < MR; i++) d[i] = full + i < mc ? row[full + i] : 0;
		}
		return;
	}
	for (long i0 = 0; i0 < mc; i0 += MR, dst += MR * kc) {
		const long mr = mc - i0 < MR ? mc - i0 : MR;
		// A(i, p) = a[i·lda + p]: transpose 8-column chunks of the six rows.
		const float *src = a + i0 * lda;
		long p = 0;
		for (; p + 8 <= kc; p += 8) {
			const __m256 z = _mm256_setzero_ps();
			__m256 r0 = _mm256_loadu_ps(src + p);
			__m256 r1 = mr > 1 ? _mm256_loadu_ps(src + lda + p) : z;
			__m256 r2 = mr > 2 ? _mm256_loadu_ps(src + 2 * lda + p) : z;
			__m256 r3 = mr > 3 ? _mm256_loadu_ps(src + 3 * lda + p) : z;
			__m256 r4 = mr > 4 ? _mm256_loadu_ps(src + 4 * lda + p) : z;
			__m256 r5 = mr > 5 ? _mm256_loadu_ps(src + 5 * lda + p) : z;
			__m256 r6 = z, r7 = z;
			transpose8(&r0, &r1, &r2, &r3, &r4, &r5, &r6, &r7);
			float *d = dst + p * MR; // each store spills two zeros the next one overwrites
			_mm256_storeu_ps(d, r0);
			_mm256_storeu_ps(d + 6, r1);
			_mm256_storeu_ps(d + 12, r2);
			_mm256_storeu_ps(d + 18, r3);
			_mm256_storeu_ps(d + 24, r4);
			_mm256_storeu_ps(d + 30, r5);
			_mm256_storeu_ps(d + 36, r6);
			_mm256_storeu_ps(d + 42, r7);
		}
		for (; p < kc; p++)
			for (long i = 0; i < MR; i++) dst[p * MR + i] = i < mr ? src[i * lda + p] : 0;
	}
}

// pack_b_panel packs op(B)[0:kc, 0:nr] (nr ≤ 16; b points at its (0, 0)
// element) into dst[p·16 + j], columns past nr zero.
static void pack_b_panel(int tb, long kc, long nr, const float *b, long ldb, float *dst) {
	if (!tb) { // B(p, j) = b[p·ldb + j]
		if (nr == NR) {
			for (long p = 0; p < kc; p++) {
				_mm256_store_ps(dst + p * NR, _mm256_loadu_ps(b + p * ldb));
				_mm256_store_ps(dst + p * NR + 8, _mm256_loadu_ps(b + p * ldb + 8));
			}
		} else { // masked loads leave the missing columns zero
			const __m256i m0 = lane_mask(nr < 8 ? nr : 8), m1 = lane_mask(nr > 8 ? nr - 8 : 0);
			for (long p = 0; p < kc; p++) {
				_mm256_store_ps(dst + p * NR, _mm256_maskload_ps(b + p * ldb, m0));
				_mm256_store_ps(dst + p * NR + 8, _mm256_maskload_ps(b + p * ldb + 8, m1));
			}
		}
		return;
	}
	// B(p, j) = b[j·ldb + p]: transpose 8×8 blocks.
	long p = 0;
	for (; p + 8 <= kc; p += 8) {
		for (long h = 0; h < 2; h++) {
			const long nh = nr - 8 * h; // valid rows in this half
			const float *s = b + 8 * h * ldb + p;
			const __m256 z = _mm256_setzero_ps();
			__m256 r0 = nh > 0 ? _mm256_loadu_ps(s) : z;
			__m256 r1 = nh > 1 ? _mm256_loadu_ps(s + ldb) : z;
			__m256 r2 = nh > 2 ? _mm256_loadu_ps(s + 2 * ldb) : z;
			__m256 r3 = nh > 3 ? _mm256_loadu_ps(s + 3 * ldb) : z;
			__m256 r4 = nh > 4 ? _mm256_loadu_ps(s + 4 * ldb) : z;
			__m256 r5 = nh > 5 ? _mm256_loadu_ps(s + 5 * ldb) : z;
			__m256 r6 = nh > 6 ? _mm256_loadu_ps(s + 6 * ldb) : z;
			__m256 r7 = nh > 7 ? _mm256_loadu_ps(s + 7 * ldb) : z;
			transpose8(&r0, &r1, &r2, &r3, &r4, &r5, &r6, &r7);
			float *d = dst + p * NR + 8 * h;
			_mm256_store_ps(d, r0);
			_mm256_store_ps(d + NR, r1);
			_mm256_store_ps(d + 2 * NR, r2);
			_mm256_store_ps(d + 3 * NR, r3);
			_mm256_store_ps(d + 4 * NR, r4);
			_mm256_store_ps(d + 5 * NR, r5);
			_mm256_store_ps(d + 6 * NR, r6);
			_mm256_store_ps(d + 7 * NR, r7);
		}
	}
	for (; p < kc; p++)
		for (long j = 0; j < NR; j++) dst[p * NR + j] = j < nr ? b[j * ldb + p] : 0;
}

// pack_b_rows packs B[0:kc, 0:nc] (not transposed) into its 16-column
// panels, dst + jr·kc as pack_b_panel does each, walking B a row at a time:
// panel by panel, each load is another row (ldb apart, often pages apart),
// out of the prefetchers' sight; a whole row is one sequential run. mlp's
// weight gradient packs its 128×3072 input so.
static void pack_b_rows(long kc, long nc, const float *b, long ldb, float *dst) {
	const long full = nc / NR * NR;
	for (long p = 0; p < kc; p++) {
		const float *row = b + p * ldb;
		float *d = dst + p * NR;
		for (long jr = 0; jr < full; jr += NR, d += NR * kc) {
			_mm256_store_ps(d, _mm256_loadu_ps(row + jr));
			_mm256_store_ps(d + 8, _mm256_loadu_ps(row + jr + 8));
		}
	}
	if (full < nc) pack_b_panel(0, kc, nc - full, b + full, ldb, dst + full * kc);
}

// dot_kernel: C[0:mr, 0:nr] = alpha·Σ_p A[i, p]·B[j, p] + beta·C for A and B
// both stored with p contiguous (A row-major, B transposed): 8 lanes of
// partial sums per element, reduced by a fixed hadd tree. Needs no packing,
// which is what a long reduction into a small C (a weight gradient) wants.
KINLINE void dot_kernel(const int mr, const int nr, long k, const float *a, long lda, const float *b, long ldb,
                        float *c, long ldc, float alpha, float beta) {
	const __m256 z = _mm256_setzero_ps();
	__m256 s00 = z, s01 = z, s02 = z, s03 = z, s10 = z, s11 = z, s12 = z, s13 = z, s20 = z, s21 = z, s22 = z, s23 = z;
	const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda;
	const float *b0 = b, *b1 = b + ldb, *b2 = b + 2 * ldb, *b3 = b + 3 * ldb;
#define KILN_DOT_COL(J, LOAD)                                                                                          \
	if (nr > J) {                                                                                                      \
		__m256 bj = LOAD(b##J);                                                                                        \
		s0##J = _mm256_fmadd_ps(x0, bj, s0##J);                                                                        \
		if (mr > 1) s1##J = _mm256_fmadd_ps(x1, bj, s1##J);                                                            \
		if (mr > 2) s2##J = _mm256_fmadd_ps(x2, bj, s2##J);                                                            \
	}
#define KILN_DOT_STEP(LOAD)                                                                                            \
	{                                                                                                                  \
		__m256 x0 = LOAD(a0), x1 = z, x2 = z;                                                                          \
		if (mr > 1) x1 = LOAD(a1);                                                                                     \
		if (mr > 2) x2 = LOAD(a2);                                                                                     \
		KILN_DOT_COL(0, LOAD) KILN_DOT_COL(1, LOAD) KILN_DOT_COL(2, LOAD) KILN_DOT_COL(3, LOAD)                        \
	}
#define KILN_LOADU(P) _mm256_loadu_ps((P) + p)
#define KILN_LOADM(P) _mm256_maskload_ps((P) + p, m)
	long p = 0;
	for (; p + 8 <= k; p += 8) KILN_DOT_STEP(KILN_LOADU)
	if (p < k) {
		const __m256i m = lane_mask(k - p);
		KILN_DOT_STEP(KILN_LOADM)
	}
#undef KILN_LOADM
#undef KILN_LOADU
#undef KILN_DOT_STEP
#undef KILN_DOT_COL
	const __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(s00, s01), _mm256_hadd_ps(s02, s03));
	const __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(s10, s11), _mm256_hadd_ps(s12, s13));
	const __m256 h2 = _mm256_hadd_ps(_mm256_hadd_ps(s20, s21), _mm256_hadd_ps(s22, s23));
	const __m128 va = _mm_set1_ps(alpha), vb = _mm_set1_ps(beta);
	__m128 r[3];
	r[0] = _mm_mul_ps(va, _mm_add_ps(_mm256_castps256_ps128(h0), _mm256_extractf128_ps(h0, 1)));
	r[1] = _mm_mul_ps(va, _mm_add_ps(_mm256_castps256_ps128(h1), _mm256_extractf128_ps(h1, 1)));
	r[2] = _mm_mul_ps(va, _mm_add_ps(_mm256_castps256_ps128(h2), _mm256_extractf128_ps(h2, 1)));
	const __m128i cm = _mm256_castsi256_si128(lane_mask(nr));
	for (int i = 0; i < mr; i++) {
		float *ci = c + i * ldc;
		__m128 x = r[i];
		if (beta != 0) x = _mm_fmadd_ps(vb, _mm_maskload_ps(ci, cm), x);
		_mm_maskstore_ps(ci, cm, x);
	}
}

static __attribute__((noinline)) void dot_tile(long mr, long nr, long k, const float *a, long lda, const float *b,
                                               long ldb, float *c, long ldc, float alpha, float beta) {
	switch (mr * 4 + nr) {
	case 3 * 4 + 4: dot_kernel(3, 4, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
	case 3 * 4 + 3: dot_kernel(3, 3, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
	case 3 * 4 + 2: dot_kernel(3, 2, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
	case 3 * 4 + 1: dot_kernel(3, 1, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
	case 2 * 4 + 4: dot_kernel(2, 4, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
	case 2 * 4 + 3: dot_kernel(2, 3, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
	case 2 * 4 + 2: dot_kernel(2, 2, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
	case 2 * 4 + 1: dot_kernel(2, 1, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
	case 1 * 4 + 4: dot_kernel(1, 4, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
	case 1 * 4 + 3: dot_kernel(1, 3, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
	case 1 * 4 + 2: dot_kernel(1, 2, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
	default: dot_kernel(1, 1, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
	}
}

// sgemm_dot: C = alpha·A·Bᵀ + beta·C with A m×k and B n×k, both row-major,
// in k slices of DOT_KC so a slice of A and B stays in L2.
static void sgemm_dot(long m, long n, long k, float alpha, const float *a, long lda, const float *b, long ldb,
                      float beta, float *c, long ldc) {
	for (long pc = 0; pc < k; pc += DOT_KC) {
		const long kc = k - pc < DOT_KC ? k - pc : DOT_KC;
		const float bet = pc == 0 ? beta : 1.0f;
		for (long j = 0, nr; j < n; j += nr) {
			nr = n - j == 5 ? 3 : n - j < 4 ? n - j : 4; // 5 = 3+2, not 4+1
			for (long i = 0, mr; i < m; i += mr) {
				mr = m - i == 4 ? 2 : m - i < 3 ? m - i : 3; // 4 = 2+2, not 3+1
				dot_tile(mr, nr, kc, a + i * lda + pc, lda, b + j * ldb + pc, ldb, c + i * ldc + j, ldc, alpha, bet);
			}
		}
	}
}

// tile_6x32: C[0:6, 0:32] = alpha·Σ_p A[i, p]·B[p, j] + beta·C from B's 32
// columns in two runs of 16, b0 + p·rsb and b1 + p·rsb (two adjacent packed
// panels: rsb 16, b1 = b0 + 16·k; or B's rows in place: rsb ldb, b1 = b0 +
// 16), and A at a[i·rsa + p·csa]: a packed panel (1, 6), rows in place (lda,
// 1) or a transposed A's columns in place (1, lda), in 12 zmm accumulators
// (AVX-512 has 32 registers, so no assembly is needed). Each element is the same chain of
// FMAs as tile_6x16's and the same store as store_row's, so the AVX2 and
// AVX-512 levels give the same bits.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"), always_inline)) static inline void tile_6x32(
    long k, const float *a, long rsa, long csa, const float *b0, const float *b1, long rsb, float *c, long ldc,
    float alpha, float beta) {
	// C's rows are far apart and, in a big product, out of cache: fetch their
	// lines (three when a row of 32 straddles them) while the sums run. Not
	// on a short k loop: mlp's fc1 weight gradient (k = 128) ran 9% slower.
	for (int i = 0; i < 6 && k >= 192; i++) {
		_mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
		_mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
		_mm_prefetch((const char *)(c + i * ldc + 31), _MM_HINT_T0);
	}
	__m512 acc[6][2];
	for (int i = 0; i < 6; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
#pragma GCC unroll 4
	for (long p = 0; p < k; p++) {
		const __m512 x0 = _mm512_loadu_ps(b0 + rsb * p), x1 = _mm512_loadu_ps(b1 + rsb * p);
		for (int i = 0; i < 6; i++) {
			const __m512 ai = _mm512_set1_ps(a[i * rsa + p * csa]);
			acc[i][0] = _mm512_fmadd_ps(ai, x0, acc[i][0]);
			acc[i][1] = _mm512_fmadd_ps(ai, x1, acc[i][1]);
		}
	}
	const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
	for (int i = 0; i < 6; i++) {
		float *ci = c + i * ldc;
		for (int v = 0; v < 2; v++) {
			__m512 x = _mm512_mul_ps(va, acc[i][v]);
			if (beta != 0) x = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16 * v), x);
			_mm512_storeu_ps(ci + 16 * v, x);
		}
	}
}

// tile_6x32's three layouts of A, each compiled with its strides known.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"), noinline)) static void tile_6x32_packed(
    long k, const float *a, const float *b0, const float *b1, long rsb, float *c, long ldc, float alpha, float beta) {
	tile_6x32(k, a, 1, MR, b0, b1, rsb, c, ldc, alpha, beta);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"), noinline)) static void tile_6x32_cols(
    long k, const float *a, long lda, const float *b0, const float *b1, long rsb, float *c, long ldc, float alpha,
    float beta) {
	tile_6x32(k, a, 1, lda, b0, b1, rsb, c, ldc, alpha, beta);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"), noinline)) static void tile_6x32_rows(
    long k, const float *a, long lda, const float *b0, const float *b1, long rsb, float *c, long ldc, float alpha,
    float beta) {
	tile_6x32(k, a, lda, 1, b0, b1, rsb, c, ldc, alpha, beta);
}

// panels_6x32 is the macro-kernel's step over 32 columns of B at the
// AVX-512 level: 6×32 tiles, the last rows (mr < 6) 16 columns at a time. A
// is packed (ap, with ta ignored) or read in place at a (lda apart; ta: A
// stored transposed); B is two full packed panels (rsb NR) or 32 columns of
// its rows in place (rsb ldb).
static void panels_6x32(long mc, long kc, const float *ap, const float *a, long lda, int ta, const float *bj,
                        long rsb, float *cj, long ldc, float alpha, float beta) {
	const float *b1 = rsb == NR ? bj + NR * kc : bj + NR;
	for (long ir = 0; ir < mc; ir += MR) {
		const long mr = mc - ir < MR ? mc - ir : MR;
		float *cc = cj + ir * ldc;
		if (ap) {
			const float *ai = ap + ir * kc;
			if (mr == MR) {
				tile_6x32_packed(kc, ai, bj, b1, rsb, cc, ldc, alpha, beta);
				continue;
			}
			kernel_ps(mr, NR, kc, ai, 1, MR, bj, rsb, cc, ldc, alpha, beta);
			kernel_ps(mr, NR, kc, ai, 1, MR, b1, rsb, cc + NR, ldc, alpha, beta);
		} else if (ta) {
			const float *ai = a + ir;
			if (mr == MR) {
				tile_6x32_cols(kc, ai, lda, bj, b1, rsb, cc, ldc, alpha, beta);
				continue;
			}
			kernel_cs(mr, NR, kc, ai, 1, lda, bj, rsb, cc, ldc, alpha, beta);
			kernel_cs(mr, NR, kc, ai, 1, lda, b1, rsb, cc + NR, ldc, alpha, beta);
		} else {
			const float *ai = a + ir * lda;
			if (mr == MR) {
				tile_6x32_rows(kc, ai, lda, bj, b1, rsb, cc, ldc, alpha, beta);
				continue;
			}
			kernel_rs(mr, NR, kc, ai, lda, 1, bj, rsb, cc, ldc, alpha, beta);
			kernel_rs(mr, NR, kc, ai, lda, 1, b1, rsb, cc + NR, ldc, alpha, beta);
		}
	}
}

static void sgemm_avx2(int packA, int packB, int ta, int tb, long m, long n, long k, float alpha, const float *a,
                       long lda, const float *b, long ldb, float beta, float *c, long ldc, const float *bias) {
	if (tb) packB = 1; // columns of a transposed B are strided: always pack
	const int zmm = kiln_isa() >= KILN_ISA_AVX512;
	const long kcmax = k < KC ? k : KC;
	const long ncmax = n < NC ? n : NC;
	const long mcmax = m < MC ? m : MC;
	const size_t asz = packA ? (size_t)((mcmax + MR - 1) / MR * MR * kcmax + 16 + 15) / 16 * 16 : 0;
	const size_t bsz = (size_t)(packB ? (ncmax + NR - 1) / NR * NR : NR) * kcmax + 16;
	float *buf = thread_buf(BUF_PACK, asz + bsz);
	if (!buf) {
		sgemm_portable(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
		if (bias) kiln_add_row_bias_f32(c, ldc, bias, m, n);
		return;
	}
	float *const ap = buf, *const bp = buf + asz;
	for (long jc = 0; jc < n; jc += NC) {
		const long nc = n - jc < NC ? n - jc : NC;
		for (long pc = 0; pc < k; pc += KC) {
			const long kc = k - pc < KC ? k - pc : KC;
			const float bet = pc == 0 ? beta : 1.0f;
			if (packB && !tb) {
				pack_b_rows(kc, nc, b + pc * ldb + jc, ldb, bp);
			} else if (packB) {
				for (long jr = 0; jr < nc; jr += NR) {
					const long nr = nc - jr < NR ? nc - jr : NR;
					pack_b_panel(tb, kc, nr, b + (jc + jr) * ldb + pc, ldb, bp + jr * kc);
				}
			} else if (nc % NR) { // ragged last panel goes through the buffer
				const long jr = nc / NR * NR;
				pack_b_panel(0, kc, nc - jr, b + pc * ldb + jc + jr, ldb, bp);
			}
			// Blocks of MC rows, A packed or not: unpacked, a block's rows of A
			// stay in L2 for every pair of B panels that sweeps them (a sweep
			// of all rows under each pair read A from memory once a pair:
			// gMLP's 8192×128×128 products ran 290–310 GFLOP/s so, 340–360
			// blocked), and the rows the bias is added to are still in cache.
			for (long ic = 0; ic < m; ic += MC) {
				const long mc = m - ic < MC ? m - ic : MC;
				if (packA) pack_a(ta, mc, kc, ta ? a + pc * lda + ic : a + ic * lda + pc, lda, ap);
				for (long jr = 0; jr < nc; jr += NR) {
					if (zmm && nc - jr >= 2 * NR) {
						const float *ain = ta ? a + pc * lda + ic : a + ic * lda + pc;
						const float *bin = packB ? bp + jr * kc : b + pc * ldb + jc + jr;
						panels_6x32(mc, kc, packA ? ap : NULL, ain, lda, ta, bin, packB ? NR : ldb,
						            c + ic * ldc + jc + jr, ldc, alpha, bet);
						jr += NR; // and the loop's NR: two panels
						continue;
					}
					const long nr = nc - jr < NR ? nc - jr : NR;
					const float *bj;
					long rsb = NR;
					if (packB) {
						bj = bp + jr * kc;
					} else if (nr == NR) {
						bj = b + pc * ldb + jc + jr;
						rsb = ldb;
					} else {
						bj = bp;
					}
					float *cj = c + ic * ldc + jc + jr;
					for (long ir = 0; ir < mc; ir += MR) {
						const long mr = mc - ir < MR ? mc - ir : MR;
						float *cc = cj + ir * ldc;
						if (packA) {
							const float *ai = ap + ir * kc;
							if (rsb == NR)
								kernel_pp(mr, nr, kc, ai, 1, MR, bj, NR, cc, ldc, alpha, bet);
							else
								kernel_ps(mr, nr, kc, ai, 1, MR, bj, rsb, cc, ldc, alpha, bet);
						} else {
							const long i = ic + ir;
							if (ta && rsb == NR)
								kernel_cp(mr, nr, kc, a + pc * lda + i, 1, lda, bj, NR, cc, ldc, alpha, bet);
							else if (ta)
								kernel_cs(mr, nr, kc, a + pc * lda + i, 1, lda, bj, rsb, cc, ldc, alpha, bet);
							else if (rsb == NR)
								kernel_rp(mr, nr, kc, a + i * lda + pc, lda, 1, bj, NR, cc, ldc, alpha, bet);
							else
								kernel_rs(mr, nr, kc, a + i * lda + pc, lda, 1, bj, rsb, cc, ldc, alpha, bet);
						}
					}
				}
				// The rows are final after the last K block: add the bias while they are in cache.
				if (bias && pc + kc == k) kiln_add_row_bias_f32(c + ic * ldc + jc, ldc, bias + jc, mc, nc);
			}
		}
	}
}

#pragma GCC pop_options

// ---------------------------------------------------------------------------
// Entry points.


static void scale_c(long m, long n, float beta, float *c, long ldc) {
	for (long i = 0; i < m; i++) {
		float *ci = c + i * ldc;
		if (beta == 0) {
			memset(ci, 0, (size_t)n * sizeof(float));
		} else if (beta != 1) {
			for (long j = 0; j < n; j++) ci[j] *= beta;
		}
	}
}

int kiln_sgemm_plan(int transA, int transB, long m, long n, long k, long ldb) {
	// A long reduction into a small C with B transposed: dot products, no packing.
	if (transB && !transA && k >= 4 * (m > n ? m : n) && m * n <= 64 * 64) return KILN_SGEMM_DOT;
	// Measured on Zen 4 (see GEMM.md). Packing A costs m·k copies and pays
	// once three or more column tiles reuse the panels. Packing B costs k·n
	// copies, as much as 2m flops per element: it pays for many row tiles,
	// or for fewer when B's rows are a multiple of 256 bytes apart, which
	// maps a micro-panel's rows onto a few L1 sets.
	const int aliased = ldb % 64 == 0 && k > 64;
	int plan = 0;
	if (n > 2 * NR) plan |= KILN_SGEMM_PACK_A;
	if (transB || m > 128 || (m >= 48 && aliased)) plan |= KILN_SGEMM_PACK_B;
	// At AVX-512 the 6×32 tile reads A in place as well as packed (six rows,
	// or six adjacent floats of a transposed A, per step); packing A pays
	// only on big blocks, whose rows alias in L1 and the TLB, and that are
	// swept by more than four pairs of B panels. The SGU's 64×128×64
	// products ran 1.4–2x faster unpacked; with 128 columns or fewer,
	// in place won at every m·k tried, 2–10% (GEMM.md).
	if (kiln_isa() >= KILN_ISA_AVX512 && (m * k <= ZMM_PACK_A_MIN || n <= ZMM_PACK_A_MIN_N))
		plan &= ~KILN_SGEMM_PACK_A;
	return plan;
}

void kiln_sgemm_run(int plan, int transA, int transB, long m, long n, long k, float alpha, const float *a, long lda,
                    const float *b, long ldb, float beta, float *c, long ldc, const float *bias) {
	if (m <= 0 || n <= 0) return;
	if (k <= 0) {
		scale_c(m, n, beta, c, ldc);
	} else if (kiln_isa() < KILN_ISA_AVX2) {
		sgemm_portable(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	} else if ((plan & KILN_SGEMM_DOT) && transB && !transA) {
		sgemm_dot(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	} else {
		sgemm_avx2(plan & KILN_SGEMM_PACK_A, plan & KILN_SGEMM_PACK_B, transA, transB, m, n, k, alpha, a, lda, b, ldb,
		           beta, c, ldc, bias);
		return; // bias added block by block
	}
	if (bias) kiln_add_row_bias_f32(c, ldc, bias, m, n);
}

// ---------------------------------------------------------------------------
// Threads: a product big enough is split into parts along N or M on
// micro-tile boundaries (each element then gets exactly the arithmetic of a
// one-thread call, so the result does not depend on the thread count), or
// along K for a long reduction into a small C (parts after the first write
// partial products that are added in part order: bit-identical for a given
// thread count). The parts are fixed by the shape and the thread count; who
// runs them is not. The Go side runs them on its worker pool (sgemm in
// gemm_cpu_cgo.go), the one set of threads every CPU op shares: a second,
// C-side pool spun beside Go's workers, and three spinning threads on two
// cores cost mlp a quarter of its step.

enum { SPLIT_NONE, SPLIT_N, SPLIT_M, SPLIT_K };

// A product of m·n·k below PARALLEL_MIN (about 10 µs of work) stays on one
// thread.
#ifndef PARALLEL_MIN
#define PARALLEL_MIN (1L << 19)
#endif

int kiln_sgemm_split(int transA, int transB, long m, long n, long k, long ldb, int threads) {
	const int plan = kiln_sgemm_plan(transA, transB, m, n, k, ldb);
	const long nt = (n + NR - 1) / NR, mt = (m + MR - 1) / MR, kt = (k + KC - 1) / KC;
	const int dot = plan & KILN_SGEMM_DOT; // its tiles differ: split only K
	if (threads <= 1 || m * n * k < PARALLEL_MIN) return SPLIT_NONE;
	// Split along N, every part packs (or streams) all of A and its share of
	// B; along M, its share of A and all of B. At least twice as tall as
	// wide, M moves less: gMLP's 3136×256×128 and 3136×128×128 products ran
	// 5–15% faster at avx2 and 5–40% at avx512, their 256×128×3136 weight
	// gradients up to 10% faster at avx2 and level at avx512 (medians of 12
	// alternating runs, Emerald Rapids, 2026-12-06; GEMM.md).
	if (!dot && m >= 2 * n && mt >= 2 * threads) return SPLIT_M;
	if (!dot && (nt >= 2 * threads || (nt >= threads && nt >= mt))) return SPLIT_N;
	if (!dot && mt >= threads) return SPLIT_M;
	if (kt > 1) return SPLIT_K;
	return SPLIT_NONE;
}

long kiln_sgemm_tiles(int split, long m, long n, long k) {
	switch (split) {
	case SPLIT_N: return (n + NR - 1) / NR;
	case SPLIT_M: return (m + MR - 1) / MR;
	case SPLIT_K: return (k + KC - 1) / KC;
	}
	return 1;
}

// columns_plan is the plan of a part that has n of the product's columns:
// whether packing A pays depends on the columns that sweep it, which are
// the part's own. Only that choice follows the part (packing changes no
// arithmetic); the rest, a dot-product plan above all, stays the whole
// product's, so every part does what a one-thread call would.
static int columns_plan(int plan, int ta, int tb, long m, long n, long k, long ldb) {
	return (plan & ~KILN_SGEMM_PACK_A) | (kiln_sgemm_plan(ta, tb, m, n, k, ldb) & KILN_SGEMM_PACK_A);
}

void kiln_sgemm_part(int split, int parts, int part, int ta, int tb, long m, long n, long k, float alpha,
                     const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc,
                     float *partial, const float *bias) {
	const int plan = kiln_sgemm_plan(ta, tb, m, n, k, ldb);
	const long tiles = kiln_sgemm_tiles(split, m, n, k);
	const long lo = part * tiles / parts, hi = (part + 1) * tiles / parts;
	if (lo >= hi) return;
	switch (split) {
	case SPLIT_N: {
		const long j0 = lo * NR, j1 = hi * NR < n ? hi * NR : n;
		kiln_sgemm_run(columns_plan(plan, ta, tb, m, j1 - j0, k, ldb), ta, tb, m, j1 - j0, k, alpha, a, lda,
		               tb ? b + j0 * ldb : b + j0, ldb, beta, c + j0, ldc, bias ? bias + j0 : NULL);
		break;
	}
	case SPLIT_M: {
		const long i0 = lo * MR, i1 = hi * MR < m ? hi * MR : m;
		kiln_sgemm_run(plan, ta, tb, i1 - i0, n, k, alpha, ta ? a + i0 : a + i0 * lda, lda, b, ldb, beta,
		               c + i0 * ldc, ldc, bias);
		break;
	}
	case SPLIT_K: { // the bias comes after the parts' sum (kiln_sgemm_sum_parts)
		const long p0 = lo * KC, p1 = hi * KC < k ? hi * KC : k;
		const float *ap = ta ? a + p0 * lda : a + p0;
		const float *bp = tb ? b + p0 : b + p0 * ldb;
		if (part == 0)
			kiln_sgemm_run(plan, ta, tb, m, n, p1 - p0, alpha, ap, lda, bp, ldb, beta, c, ldc, NULL);
		else
			kiln_sgemm_run(plan, ta, tb, m, n, p1 - p0, alpha, ap, lda, bp, ldb, 0, partial + (part - 1) * m * n, n,
			               NULL);
		break;
	}
	default:
		kiln_sgemm_run(plan, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias);
	}
}

void kiln_sgemm_sum_parts(int parts, long m, long n, const float *partial, float *c, long ldc, const float *bias) {
	for (long i = 0; i < m; i++)
		for (int part = 1; part < parts; part++) {
			const float *src = partial + ((part - 1) * m + i) * n;
			float *dst = c + i * ldc;
			for (long x = 0; x < n; x++) dst[x] += src[x];
		}
	if (bias) kiln_add_row_bias_f32(c, ldc, bias, m, n);
}

#endif // __x86_64__
