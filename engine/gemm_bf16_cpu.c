// gemm_bf16_cpu.c: C = alpha·op(A)·op(B) + beta·C with A and B rounded to
// bfloat16 (bf16.go's rule) and the products summed in float32 by
// AVX512_BF16's VDPBF16PS: the CPU half of --precision bf16 (issue 13), for
// CPUs that have it (kiln_cpu_bf16). Autocast semantics: float32 in and out,
// bf16 only inside the product, so the rounding happens while packing.
//
// Layout: k is taken in pairs. A packed panel holds, per pair p, eight 32-bit
// words: row i's bf16 at k = 2p (low half) and 2p+1 (high half); a packed B
// panel holds, per pair, 32 such words, one per column. The 8×32 tile keeps
// 16 zmm accumulators; one VDPBF16PS adds two products to 16 of them.
//
// Numerics (what TestSgemmBF16MatchesEmulation checks bit for bit): within
// each slice of KC values of k, an element of C starts at zero and, pair by
// pair in order, adds the product at 2p+1 then the one at 2p, each add
// rounded to nearest even (the products of two bf16 are exact in float32;
// denormal sums flush to zero); then c = alpha·acc (+ beta·c, one fused
// rounding; beta is 1 after the first slice). An odd k pads a zero.

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "bf16_cpu.h"
#include "elementwise_cpu.h"

#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))

enum { BMR = 8, BNR = 32, BKC = 256, BMC = 144, BNC = 1024 };

// The packing rounds with VCVTNEPS2BF16 (the bits of bf16.go's ToBF16, as
// TestBF16SlicesMatchToBF16 checks) and writes 32-bit words: bf16 at k = 2p
// in the low half, 2p+1 in the high half; values past kc are zero.

// words16 rounds the 16 floats at lo (k = 2p) and hi (2p+1, or zeros when
// hi is NULL) and returns their 16 interleaved words; m masks the columns.
// One VCVTNE2PS2BF16 rounds both (lo's in the low half) as VCVTNEPS2BF16
// does each, and one VPERMW interleaves them: two shuffles where two
// conversions and five shuffles were (port 5 bound).
BF16 static inline __m512i words16(const float *lo, const float *hi, __mmask16 m) {
	const __m512i pairs = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
	                                       6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
	const __m512 h = hi ? _mm512_maskz_loadu_ps(m, hi) : _mm512_setzero_ps();
	const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(h, _mm512_maskz_loadu_ps(m, lo));
	return _mm512_permutexvar_epi16(pairs, both);
}

// run_words rounds the kc floats of a run into its (kc + 1) / 2 words, in
// place (AMX's A rows): pairs are adjacent floats, so 32 rounded floats read
// back as 16 words.
BF16 static void run_words(uint32_t *dst, const float *x, long kc) {
	for (long q = 0; q < kc; q += 32) {
		const long left = kc - q < 32 ? kc - q : 32, nw = (left + 1) / 2;
		const __mmask16 m0 = kiln_mask16(left), m1 = kiln_mask16(left - 16);
		const __m256i b0 = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m0, x + q));
		const __m256i b1 = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m1, x + q + 16));
		_mm256_mask_storeu_epi32(dst + q / 2, nw >= 8 ? 0xff : (__mmask8)((1u << nw) - 1), b0);
		if (nw > 8) _mm256_mask_storeu_epi32(dst + q / 2 + 8, (__mmask8)((1u << (nw - 8)) - 1), b1);
	}
}

// transpose8 transposes 8×8 32-bit words: r[i]'s word j becomes r[j]'s
// word i.
BF16 static inline void transpose8(__m256i r[8]) {
	__m256 t[8], u[8];
	for (int i = 0; i < 8; i += 2) {
		t[i] = _mm256_unpacklo_ps((__m256)r[i], (__m256)r[i + 1]);
		t[i + 1] = _mm256_unpackhi_ps((__m256)r[i], (__m256)r[i + 1]);
	}
	for (int i = 0; i < 8; i += 4) {
		u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
		u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
		u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
		u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
	}
	for (int i = 0; i < 4; i++) {
		r[i] = (__m256i)_mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
		r[i + 4] = (__m256i)_mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
	}
}

// runs8_words rounds rows runs of kc floats (ld apart; up to 8, the rest
// zero) into words and writes pair p's eight, one per run, at dst + p·stride:
// run_words for eight runs at once, whose words leave through a transpose
// instead of one scalar store each.
BF16 static void runs8_words(uint32_t *dst, long stride, const float *x, long ld, long rows, long kc) {
	for (long q = 0; q < kc; q += 32, dst += 16 * stride) {
		const long left = kc - q < 32 ? kc - q : 32, np = (left + 1) / 2;
		const __mmask16 m0 = kiln_mask16(left), m1 = kiln_mask16(left - 16);
		__m256i lo[8], hi[8]; // run i's words of pairs 0–7 and 8–15 of this step
		for (long i = 0; i < 8; i++) {
			lo[i] = hi[i] = _mm256_setzero_si256();
			if (i >= rows) continue;
			const float *xi = x + i * ld + q;
			lo[i] = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m0, xi));
			hi[i] = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m1, xi + 16));
		}
		transpose8(lo);
		transpose8(hi);
		for (long p = 0; p < np; p++) _mm256_storeu_si256((__m256i *)(dst + p * stride), p < 8 ? lo[p] : hi[p - 8]);
	}
}

// pack_a writes op(A)[0:mc, 0:kc] as 8-row panels of pairs: A's rows in
// place (ta 0: each row's k contiguous) or A transposed (ta 1: each k's rows
// contiguous); rows past mc are zero.
BF16 static void pack_a(uint32_t *dst, int ta, const float *a, long lda, long mc, long kc) {
	const long np = (kc + 1) / 2;
	for (long i0 = 0; i0 < mc; i0 += BMR, dst += BMR * np) {
		const long mr = mc - i0 < BMR ? mc - i0 : BMR;
		if (!ta) {
			runs8_words(dst, BMR, a + i0 * lda, lda, mr, kc);
			continue;
		}
		const __mmask16 m = (__mmask16)((1u << mr) - 1);
		for (long p = 0; p < np; p++) {
			const float *lo = a + 2 * p * lda + i0, *hi = 2 * p + 1 < kc ? lo + lda : NULL;
			_mm512_mask_storeu_epi32(dst + p * BMR, (__mmask16)((1u << BMR) - 1), words16(lo, hi, m));
		}
	}
}

// pack_b writes op(B)[0:kc, 0:nc] as 32-column panels of npad pairs (npad
// ≥ (kc + 1) / 2; AMX tiles take 16 at a time): B's rows in place (tb 0:
// each k's columns contiguous) or B transposed (tb 1: each column's k
// contiguous); columns past nc and pairs past kc are zero.
BF16 static void pack_b(uint32_t *dst, int tb, const float *b, long ldb, long kc, long nc, long npad) {
	const long np = (kc + 1) / 2;
	for (long j0 = 0; j0 < nc; j0 += BNR, dst += BNR * npad) {
		if (np < npad) memset(dst + BNR * np, 0, (size_t)(npad - np) * BNR * 4);
		const long nr = nc - j0 < BNR ? nc - j0 : BNR;
		if (tb) {
			for (long g = 0; g < BNR; g += 8)
				runs8_words(dst + g, BNR, b + (j0 + (g < nr ? g : 0)) * ldb, ldb, nr - g, kc);
			continue;
		}
		const __mmask16 m0 = kiln_mask16(nr), m1 = kiln_mask16(nr - 16);
		for (long p = 0; p < np; p++) {
			const float *lo = b + 2 * p * ldb + j0, *hi = 2 * p + 1 < kc ? lo + ldb : NULL;
			_mm512_storeu_si512(dst + p * BNR, words16(lo, hi, m0));
			_mm512_storeu_si512(dst + p * BNR + 16, words16(lo + 16, hi ? hi + 16 : NULL, m1));
		}
	}
}

// tile computes the 8×32 products of one A panel and one B panel over np
// pairs and writes c = alpha·acc + beta·c (c unread when beta is 0) for
// its mr × nr corner.
BF16 static void tile(long np, const uint32_t *ap, const uint32_t *bp, float *c, long ldc, long mr, long nr,
                      float alpha, float beta) {
	__m512 acc[BMR][2];
	for (int i = 0; i < BMR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
	for (long p = 0; p < np; p++) {
		const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + p * BNR);
		const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + p * BNR + 16);
		for (int i = 0; i < BMR; i++) {
			const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)ap[p * BMR + i]);
			acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
			acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
		}
	}
	const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
	const __mmask16 m[2] = {kiln_mask16(nr), kiln_mask16(nr - 16)};
	for (int i = 0; i < mr; i++)
		for (int v = 0; v < 2; v++) {
			float *ci = c + i * ldc + 16 * v;
			__m512 x = _mm512_mul_ps(va, acc[i][v]);
			if (beta != 0) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m[v], ci), x);
			_mm512_mask_storeu_ps(ci, m[v], x);
		}
}

BF16 static void gemm(int ta, int tb, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                      long ldb, float beta, float *c, long ldc, uint32_t *ap, uint32_t *bp, const float *bias) {
	for (long jc = 0; jc < n; jc += BNC) {
		const long nc = n - jc < BNC ? n - jc : BNC;
		for (long pc = 0; pc < k; pc += BKC) {
			const long kc = k - pc < BKC ? k - pc : BKC, np = (kc + 1) / 2;
			const float bet = pc == 0 ? beta : 1.0f;
			pack_b(bp, tb, tb ? b + jc * ldb + pc : b + pc * ldb + jc, ldb, kc, nc, np);
			for (long ic = 0; ic < m; ic += BMC) {
				const long mc = m - ic < BMC ? m - ic : BMC;
				pack_a(ap, ta, ta ? a + pc * lda + ic : a + ic * lda + pc, lda, mc, kc);
				for (long jr = 0; jr < nc; jr += BNR)
					for (long ir = 0; ir < mc; ir += BMR)
						tile(np, ap + ir * np, bp + jr * np, c + (ic + ir) * ldc + jc + jr, ldc,
						     mc - ir < BMR ? mc - ir : BMR, nc - jr < BNR ? nc - jr : BNR, alpha, bet);
				if (bias && pc + kc == k) kiln_add_row_bias_f32(c + ic * ldc + jc, ldc, bias + jc, mc, nc);
			}
		}
	}
}

// ---------------------------------------------------------------------------
// AMX: TDPBF16PS on 16×16 float32 tiles, where the CPU has AMX-BF16 and the
// kernel grants the tile state (arch_prctl ARCH_REQ_XCOMP_PERM). A block of
// 32 rows × 32 columns keeps four C tiles; per 32 values of k it loads two A
// tiles (16 rows × 16 pairs, from pack_a_amx) and two B tiles (16 pairs × 16
// columns: pack_b's panels, 128 bytes a pair) and runs four products.
//
// Numerics: within a KC slice an element of C starts at zero and gathers
// its products in TDPBF16PS's accumulator, whose order and rounding inside a
// tile Intel does not spell out (a sequential float32 sum, even or odd
// first, and an exact sum per tile step all differ from it in the last
// bits); then c = alpha·acc + beta·c as above. The result is the same run
// after run, and within float32 accumulation's bound of the float64 product
// (TestSgemmBF16MatchesEmulation).

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))

enum { AKC = BKC, ABLK = 32, AMC = 128 }; // AMC: rows of packed A per block, whole 32-row blocks

static int amx_state = -1; // -1 not asked, 0 no, 1 granted
static int amx_off;        // set by kiln_bf16_use_amx(0) (tests)

static void amx_ask(void) {
	int ok = 0;
	__builtin_cpu_init();
	if (kiln_cpu_bf16() && __builtin_cpu_supports("amx-bf16") && __builtin_cpu_supports("amx-tile"))
		ok = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
	__atomic_store_n(&amx_state, ok, __ATOMIC_RELEASE);
}

static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

// kiln_cpu_amx reports whether the bf16 product runs on AMX tiles.
int kiln_cpu_amx(void) {
	pthread_once(&amx_once, amx_ask);
	return __atomic_load_n(&amx_state, __ATOMIC_ACQUIRE) == 1 && !__atomic_load_n(&amx_off, __ATOMIC_RELAXED) &&
	       kiln_cpu_bf16();
}

// kiln_bf16_use_amx turns the AMX path off (0) or back on (1), for tests
// that check both paths.
void kiln_bf16_use_amx(int on) { __atomic_store_n(&amx_off, !on, __ATOMIC_RELAXED); }

typedef struct {
	uint8_t palette, start;
	uint8_t reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
} tile_config;

// pack_a_amx_t writes the pairs of a transposed A (A(i, p) = a[p·lda + i])
// into pack_a_amx's rows, 16 rows by 8 pairs at a time: words16 gives one
// pair of 16 rows (two rows of storage), two transposes turn eight such
// into eight words of each row. Pairs up to np rounded up to 8 are written
// (zeros past np); a scatter of each pair's 16 words, as before, took half
// the time of a weight gradient's product (gMLP's, 256×128×8192).
BF16 static void pack_a_amx_t(uint32_t *dst, const float *a, long lda, long mc, long kc, long npad) {
	const long np = (kc + 1) / 2;
	for (long i0 = 0; i0 < mc; i0 += 16) {
		const long mr = mc - i0 < 16 ? mc - i0 : 16;
		const __mmask16 m = kiln_mask16(mr);
		for (long p0 = 0; p0 < np; p0 += 8) {
			__m256i lo[8], hi[8]; // rows i0…i0+7 and i0+8…i0+15 of pairs p0 + q
			for (int q = 0; q < 8; q++) {
				const long p = p0 + q;
				__m512i w = _mm512_setzero_si512();
				if (p < np) w = words16(a + 2 * p * lda + i0, 2 * p + 1 < kc ? a + (2 * p + 1) * lda + i0 : NULL, m);
				lo[q] = _mm512_castsi512_si256(w);
				hi[q] = _mm512_extracti64x4_epi64(w, 1);
			}
			transpose8(lo);
			transpose8(hi);
			for (long i = 0; i < mr; i++)
				_mm256_storeu_si256((__m256i *)(dst + (i0 + i) * npad + p0), i < 8 ? lo[i] : hi[i - 8]);
		}
	}
}

// pack_a_amx writes op(A)[0:mc, 0:kc] as rows of npad words of k pairs
// (npad a multiple of 16), whole 32-row blocks: rows past mc and pairs past
// kc are zero.
BF16 static void pack_a_amx(uint32_t *dst, int ta, const float *a, long lda, long mc, long kc, long npad) {
	const long np = (kc + 1) / 2, written = ta ? (np + 7) / 8 * 8 : np; // pairs the packing writes
	const long rows = (mc + ABLK - 1) / ABLK * ABLK;
	for (long i = 0; i < rows; i++) {
		uint32_t *row = dst + i * npad;
		if (i < mc && !ta) run_words(row, a + i * lda, kc);
		const long from = i < mc ? written : 0;
		if (from < npad) memset(row + from, 0, (size_t)(npad - from) * 4); // a call of 0 bytes was 7% of the SGU's
	}
	if (ta) pack_a_amx_t(dst, a, lda, mc, kc, npad);
}

// amx_block computes a 32 × 32 block of products over npad pairs: A rows
// at ap (two groups of 16, npad words a row), B at bp (a 32-column panel,
// 32 words a pair), into acc (32 × 32 float32).
// With c (a whole block, alpha 1, beta 0 or 1) the tiles start from c
// (beta 1) or zero and are stored into c, skipping acc.
AMX static void amx_block(long npad, const uint32_t *ap, const uint32_t *bp, float *acc, float *c, long ldc,
                          float beta) {
	if (c && beta != 0) {
		_tile_loadd(0, c, ldc * 4);
		_tile_loadd(1, c + 16, ldc * 4);
		_tile_loadd(2, c + 16 * ldc, ldc * 4);
		_tile_loadd(3, c + 16 * ldc + 16, ldc * 4);
	} else {
		_tile_zero(0);
		_tile_zero(1);
		_tile_zero(2);
		_tile_zero(3);
	}
	for (long p = 0; p < npad; p += 16) {
		_tile_loadd(4, ap + p, npad * 4);
		_tile_loadd(5, ap + 16 * npad + p, npad * 4);
		_tile_loadd(6, bp + p * BNR, BNR * 4);
		_tile_loadd(7, bp + p * BNR + 16, BNR * 4);
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 4, 7);
		_tile_dpbf16ps(2, 5, 6);
		_tile_dpbf16ps(3, 5, 7);
	}
	if (c) {
		_tile_stored(0, c, ldc * 4);
		_tile_stored(1, c + 16, ldc * 4);
		_tile_stored(2, c + 16 * ldc, ldc * 4);
		_tile_stored(3, c + 16 * ldc + 16, ldc * 4);
		return;
	}
	_tile_stored(0, acc, ABLK * 4);
	_tile_stored(1, acc + 16, ABLK * 4);
	_tile_stored(2, acc + 16 * ABLK, ABLK * 4);
	_tile_stored(3, acc + 16 * ABLK + 16, ABLK * 4);
}

// amx_store writes c = alpha·acc + beta·c (c unread when beta is 0) for the
// block's mr × nr corner, as tile()'s store does.
BF16 static void amx_store(float *c, long ldc, const float *acc, long mr, long nr, float alpha, float beta) {
	const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
	const __mmask16 m[2] = {kiln_mask16(nr), kiln_mask16(nr - 16)};
	for (long i = 0; i < mr; i++)
		for (int v = 0; v < 2; v++) {
			float *ci = c + i * ldc + 16 * v;
			__m512 x = _mm512_mul_ps(va, _mm512_loadu_ps(acc + i * ABLK + 16 * v));
			if (beta != 0) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m[v], ci), x);
			_mm512_mask_storeu_ps(ci, m[v], x);
		}
}

// kiln_amx_config sets this thread's tiles 0–7 to 16 rows of 64 bytes
// (16 float32 or 16 bf16 pairs); _tile_release gives them back.
// The configuration is a constant in memory: built in a local, gcc 12
// dropped the stores of rows and colsb as dead (LDTILECFG's read of them is
// not modelled), and the tiles stayed unconfigured (SIGILL at the first
// tile instruction).
static const tile_config amx_tiles16 = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

AMX void kiln_amx_config(void) { _tile_loadconfig(&amx_tiles16); }

// amx_stream writes a whole 32 × 32 block, plus bias where not NULL, with
// streaming stores: no read of C's lines for ownership first.
BF16 static void amx_stream(float *c, long ldc, const float *acc, const float *bias) {
	for (long i = 0; i < ABLK; i++)
		for (int v = 0; v < 2; v++) {
			__m512 x = _mm512_loadu_ps(acc + i * ABLK + 16 * v);
			if (bias) x = _mm512_add_ps(x, _mm512_loadu_ps(bias + 16 * v));
			_mm512_stream_ps(c + i * ldc + 16 * v, x);
		}
}

// STREAM_MIN_BYTES: a C at least this large is written past the caches
// (amx_stream) when one K block makes it: with K ≤ 256 the tile products
// are too short to hide the reads of C's lines that ordinary stores make
// first (the four tile stores took a fifth of gemm_amx in gMLP's step), and
// a C this large leaves L2 before anything reads it. Smaller ones (the
// SGU's 32 KB a sample, read back at once) are stored in cache.
#define STREAM_MIN_BYTES (1L << 20)

AMX static void gemm_amx(int ta, int tb, long m, long n, long k, float alpha, const float *a, long lda,
                         const float *b, long ldb, float beta, float *c, long ldc, uint32_t *ap, uint32_t *bp,
                         const float *bias) {
	const int stream = k <= AKC && alpha == 1 && beta == 0 && ldc % 16 == 0 && m * n * 4 >= STREAM_MIN_BYTES;
	int streamed = 0;
	kiln_amx_config();
	float acc[ABLK * ABLK];
	for (long jc = 0; jc < n; jc += BNC) {
		const long nc = n - jc < BNC ? n - jc : BNC;
		for (long pc = 0; pc < k; pc += AKC) {
			const long kc = k - pc < AKC ? k - pc : AKC, npad = ((kc + 1) / 2 + 15) / 16 * 16;
			const float bet = pc == 0 ? beta : 1.0f;
			pack_b(bp, tb, tb ? b + jc * ldb + pc : b + pc * ldb + jc, ldb, kc, nc, npad);
			for (long ic = 0; ic < m; ic += AMC) {
				const long mc = m - ic < AMC ? m - ic : AMC;
				pack_a_amx(ap, ta, ta ? a + pc * lda + ic : a + ic * lda + pc, lda, mc, kc, npad);
				for (long jr = 0; jr < nc; jr += BNR)
					for (long ir = 0; ir < mc; ir += ABLK) {
						float *cb = c + (ic + ir) * ldc + jc + jr;
						const long mr = mc - ir < ABLK ? mc - ir : ABLK, nr = nc - jr < BNR ? nc - jr : BNR;
						const int whole = mr == ABLK && nr == BNR;
						if (stream && whole && ((uintptr_t)cb & 63) == 0) {
							amx_block(npad, ap + ir * npad, bp + jr * npad, acc, NULL, ldc, bet);
							amx_stream(cb, ldc, acc, bias ? bias + jc + jr : NULL);
							streamed = 1;
							continue;
						}
						const int direct = whole && alpha == 1 && (bet == 0 || bet == 1);
						amx_block(npad, ap + ir * npad, bp + jr * npad, acc, direct ? cb : NULL, ldc, bet);
						if (!direct) amx_store(cb, ldc, acc, mr, nr, alpha, bet);
						// The block is final after the last K block: its bias while it is in cache.
						if (bias && pc + kc == k) kiln_add_row_bias_f32(cb, ldc, bias + jc + jr, mr, nr);
					}
			}
		}
	}
	if (streamed) _mm_sfence(); // the streamed lines are visible before the caller hands C on
	_tile_release();
}

// kiln_sgemm_bf16_words gives the panel buffers' sizes for an m × n
// product, in 32-bit words: *aw for A's, *bw for B's (either path).
void kiln_sgemm_bf16_words(long m, long n, long *aw, long *bw) {
	const long kp = (BKC + 1) / 2, npad = (kp + 15) / 16 * 16, ncap = n < BNC ? n : BNC;
	const long a6 = ((m < BMC ? m : BMC) + BMR - 1) / BMR * BMR * kp;
	const long a32 = ((m < AMC ? m : AMC) + ABLK - 1) / ABLK * ABLK * npad;
	*aw = a6 > a32 ? a6 : a32;
	*bw = (ncap + BNR - 1) / BNR * BNR * npad;
}

// kiln_sgemm_bf16 runs the product with the caller's panel buffers
// (kiln_sgemm_bf16_words), on AMX tiles where it can, then adds bias (n
// floats, or NULL) to each row as kiln_sgemm_run does, and returns 1; or
// returns 0, having done nothing, where the CPU lacks AVX512_BF16.
int kiln_sgemm_bf16(int ta, int tb, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                    long ldb, float beta, float *c, long ldc, uint32_t *ap, uint32_t *bp, const float *bias) {
	if (!kiln_cpu_bf16()) return 0;
	if (m <= 0 || n <= 0) return 1;
	if (k <= 0) {
		for (long i = 0; i < m; i++)
			for (long j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
		if (bias) kiln_add_row_bias_f32(c, ldc, bias, m, n);
		return 1;
	}
	if (kiln_cpu_amx())
		gemm_amx(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ap, bp, bias);
	else
		gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ap, bp, bias);
	return 1;
}

#endif // __x86_64__
