// conv_bf16_cpu.c: the bf16 convolution's implicit GEMM (conv_bf16.go), on
// CPUs with AVX512_BF16. VDPBF16PS multiplies pairs of bf16 held in one
// 32-bit word, so each product pairs two values of its reduction:
//
//   - forward and input gradient pair channels. The image (or the margined
//     output gradient) is copied once per image into channel-pair planes,
//     word (c2, q) = (x[2·c2, q], x[2·c2 + 1, q]), so the pair-row (c2, tap)
//     of the right-hand side is one run of words at c2·plane + tap offset:
//     read in place, 32 columns by two loads, never packed. The weights are
//     packed once per call into 8-row panels of the same pairs.
//   - the weight gradient pairs neighbouring pixels: dWᵀ[(c, tap), co] =
//     Σ_p x[c, off + 2p .. 2p+1] · dout[co, 2p .. 2p+1], A's words read in
//     place from a bf16 copy of the image at each tap's offset (broadcast),
//     B the output gradient's words transposed into 32-column panels once
//     per image.
//
// Numerics: each element of C is one chain of VDPBF16PS over its pairs in
// order from zero (then + beta·C): float32 sums of exact bf16 products,
// independent of tiling and threads. A lone last channel pairs with zero.

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "bf16_cpu.h"

#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))

enum { CMR = 8, CNR = 32 };

static inline uint32_t pair_word(float lo, float hi) {
	uint32_t l, h;
	memcpy(&l, &lo, 4);
	memcpy(&h, &hi, 4);
	return (uint32_t)kiln_round_bf16(l) | (uint32_t)kiln_round_bf16(h) << 16;
}

// kiln_conv_bf16_pack_w packs A[i, (c2, t)] = (w[i·rs + 2c2·cs + t],
// w[i·rs + (2c2+1)·cs + t]) for m rows, nch channels (a lone last one paired
// with zero) and taps taps, as 8-row panels: panel i0's word (p, i) at
// ap[i0·np + p·8 + i], np = ⌈nch/2⌉·taps; rows past m are zero.
void kiln_conv_bf16_pack_w(uint32_t *ap, const float *w, long m, long rs, long nch, long cs, long taps) {
	const long nc2 = (nch + 1) / 2, np = nc2 * taps;
	for (long i0 = 0; i0 < m; i0 += CMR)
		for (long c2 = 0; c2 < nc2; c2++)
			for (long t = 0; t < taps; t++)
				for (long i = 0; i < CMR; i++) {
					uint32_t word = 0;
					if (i0 + i < m) {
						const float *wi = w + (i0 + i) * rs + 2 * c2 * cs + t;
						word = pair_word(wi[0], 2 * c2 + 1 < nch ? wi[cs] : 0.0f);
					}
					ap[i0 * np + (c2 * taps + t) * CMR + i] = word;
				}
}

// kiln_bf16_pair_rows copies nplanes planes of nrows rows of rowlen floats
// (src, strides splane and srow) into ⌈nplanes/2⌉ planes of channel-pair
// words (dst, strides dplane and drow); a lone last plane pairs with zero.
// What it does not write (margins) it leaves as it is.
BF16 void kiln_bf16_pair_rows(uint32_t *dst, long dplane, long drow, const float *src, long splane, long srow,
                              long nplanes, long nrows, long rowlen) {
	for (long c = 0; c < nplanes; c += 2) {
		const int two = c + 1 < nplanes;
		for (long r = 0; r < nrows; r++) {
			const float *lo = src + c * splane + r * srow, *hi = lo + splane;
			uint32_t *d = dst + c / 2 * dplane + r * drow;
			for (long j = 0; j < rowlen; j += 16) {
				const __mmask16 m = kiln_mask16(rowlen - j);
				const __m256i l = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, lo + j));
				const __m256i h = two ? (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, hi + j))
				                      : _mm256_setzero_si256();
				const __m512i w = _mm512_or_si512(_mm512_cvtepu16_epi32(l),
				                                  _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
				_mm512_mask_storeu_epi32(d + j, m, w);
			}
		}
	}
}

// kiln_bf16_rows is kiln_bf16_pair_rows without the pairing: plane by plane
// into bf16.
BF16 void kiln_bf16_rows(uint16_t *dst, long dplane, long drow, const float *src, long splane, long srow,
                         long nplanes, long nrows, long rowlen) {
	for (long c = 0; c < nplanes; c++)
		for (long r = 0; r < nrows; r++) {
			const float *s = src + c * splane + r * srow;
			uint16_t *d = dst + c * dplane + r * drow;
			for (long j = 0; j < rowlen; j += 16) {
				const __mmask16 m = kiln_mask16(rowlen - j);
				_mm256_mask_storeu_epi16(d + j, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s + j)));
			}
		}
}

// A tile's 8 × 32 accumulators are 16 named registers, not an array: gcc
// -O3 keeps an array of them in memory as well and stores all 16 at every
// step. TILE_STEP adds row i's word A_WORD(i) times the pair-rows b0, b1.
#define TILE_ACCUMULATORS                                                                          \
	__m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, \
	       c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00
#define TILE_ROW(i)                                                                                \
	do {                                                                                           \
		const __m512bh a_ = (__m512bh)_mm512_set1_epi32((int)A_WORD(i));                           \
		c##i##0 = _mm512_dpbf16_ps(c##i##0, a_, b0);                                               \
		c##i##1 = _mm512_dpbf16_ps(c##i##1, a_, b1);                                               \
	} while (0)
#define TILE_STEP                                                                                  \
	TILE_ROW(0);                                                                                   \
	TILE_ROW(1);                                                                                   \
	TILE_ROW(2);                                                                                   \
	TILE_ROW(3);                                                                                   \
	TILE_ROW(4);                                                                                   \
	TILE_ROW(5);                                                                                   \
	TILE_ROW(6);                                                                                   \
	TILE_ROW(7)
// TILE_STORE writes c = acc (+ beta·c) for the tile's first mr rows, the
// columns masked by cm.
#define TILE_STORE(c, ldc, mr, cm, beta)                                                           \
	do {                                                                                           \
		const __m512 acc_[CMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},               \
		                             {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};              \
		store_rows(acc_, c, ldc, mr, cm, beta);                                                    \
	} while (0)

BF16 static void store_rows(const __m512 acc[CMR][2], float *c, long ldc, long mr, const __mmask16 cm[2],
                            float beta) {
	const __m512 vb = _mm512_set1_ps(beta);
	for (long i = 0; i < mr; i++)
		for (int v = 0; v < 2; v++) {
			float *ci = c + i * ldc + 16 * v;
			__m512 x = acc[i][v];
			if (beta != 0) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(cm[v], ci), x);
			_mm512_mask_storeu_ps(ci, cm[v], x);
		}
}

// kiln_conv_bf16_gemm_bx: C[i, j] = Σ_p A[i, p]·B[p, j] (+ beta·C) for m × n,
// A packed by kiln_conv_bf16_pack_w (np pairs), B's pair-row p the words at
// x2 + poff[p] (read in place, columns 0..n−1).
// tile_bx is one 8 × 32 tile of kiln_conv_bf16_gemm_bx.
BF16 static void tile_bx(long np, const uint32_t *a, const uint32_t *x2, const int32_t *poff, long j0,
                         const __mmask16 cm[2], float *c, long ldc, long mr, float beta) {
	TILE_ACCUMULATORS;
	for (long p = 0; p < np; p++) {
		const uint32_t *b = x2 + poff[p] + j0;
		const __m512bh b0 = (__m512bh)_mm512_maskz_loadu_epi32(cm[0], b);
		const __m512bh b1 = (__m512bh)_mm512_maskz_loadu_epi32(cm[1], b + 16);
		const uint32_t *ap = a + p * CMR;
#define A_WORD(i) ap[i]
		TILE_STEP;
#undef A_WORD
	}
	TILE_STORE(c, ldc, mr, cm, beta);
}

BF16 void kiln_conv_bf16_gemm_bx(long m, long n, long np, const uint32_t *ap, const uint32_t *x2, const int32_t *poff,
                                 float *c, long ldc, float beta) {
	for (long j0 = 0; j0 < n; j0 += CNR) {
		const __mmask16 cm[2] = {kiln_mask16(n - j0), kiln_mask16(n - j0 - 16)};
		for (long i0 = 0; i0 < m; i0 += CMR)
			tile_bx(np, ap + i0 * np, x2, poff, j0, cm, c + i0 * ldc + j0, ldc, m - i0 < CMR ? m - i0 : CMR, beta);
	}
}

// dout_panel is the weight gradient's panel width: 16 columns when there
// are no more (few output channels), else 32.
static inline long dout_panel(long m) { return m <= 16 ? 16 : CNR; }

// transpose16 transposes 16 × 16 words: r[i]'s word j becomes r[j]'s word
// i (pairs of words, then quads, then 128-bit lanes twice).
BF16 static inline void transpose16(__m512i r[16]) {
	__m512i t[16];
	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
	}
	for (int i = 0; i < 16; i += 4) {
		r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
		r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
		r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
		r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
	}
	for (int h = 0; h < 16; h += 8)
		for (int i = 0; i < 4; i++) {
			t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
			t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
		}
	for (int i = 0; i < 8; i++) {
		r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
		r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
	}
}

// kiln_conv_bf16_pack_dout transposes the words of m rows (row i at dy +
// i·ldy, np words) into panels of w = dout_panel(m) columns: panel j0's
// word (p, j) at bp[j0·np + p·w + j]; columns past m are zero. 16 rows by
// 16 words at a time, through transpose16.
BF16 void kiln_conv_bf16_pack_dout(uint32_t *bp, const uint32_t *dy, long ldy, long m, long np) {
	const long w = dout_panel(m);
	for (long j0 = 0; j0 < m; j0 += 16) {
		uint32_t *panel = bp + (j0 - j0 % w) * np + j0 % w;
		for (long p0 = 0; p0 < np; p0 += 16) {
			const __mmask16 pm = kiln_mask16(np - p0);
			__m512i r[16];
			for (long i = 0; i < 16; i++)
				r[i] = j0 + i < m ? _mm512_maskz_loadu_epi32(pm, dy + (j0 + i) * ldy + p0) : _mm512_setzero_si512();
			transpose16(r);
			const long np16 = np - p0 < 16 ? np - p0 : 16;
			for (long p = 0; p < np16; p++) _mm512_storeu_si512(panel + (p0 + p) * w, r[p]);
		}
	}
}

static inline uint32_t load_word(const uint16_t *p) {
	uint32_t w;
	memcpy(&w, p, 4);
	return w;
}

// tile_ax is one 8 × 32 tile of kiln_conv_bf16_gemm_ax.
BF16 static void tile_ax(long np, const uint16_t *xb, const int32_t *aoff, const uint32_t *b, const __mmask16 cm[2],
                         float *c, long ldc, long mr, float beta) {
	const uint16_t *row[CMR];
	for (long i = 0; i < CMR; i++) row[i] = xb + aoff[i < mr ? i : 0];
	TILE_ACCUMULATORS;
	for (long p = 0; p < np; p++) {
		const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * CNR);
		const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + p * CNR + 16);
#define A_WORD(i) load_word(row[i] + 2 * p)
		TILE_STEP;
#undef A_WORD
	}
	TILE_STORE(c, ldc, mr, cm, beta);
}

// tile_ax16 is one 16 × 16 tile of kiln_conv_bf16_gemm_ax, for C of 16
// columns or fewer (the tiles of 32 would be half empty or worse).
BF16 static void tile_ax16(long np, const uint16_t *xb, const int32_t *aoff, const uint32_t *b, __mmask16 cm,
                           float *c, long ldc, long mr, float beta) {
	const uint16_t *row[16];
	for (long i = 0; i < 16; i++) row[i] = xb + aoff[i < mr ? i : 0];
	__m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0,
	       c10 = c0, c11 = c0, c12 = c0, c13 = c0, c14 = c0, c15 = c0;
	for (long p = 0; p < np; p++) {
		const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * 16);
#define ROW16(i) c##i = _mm512_dpbf16_ps(c##i, (__m512bh)_mm512_set1_epi32((int)load_word(row[i] + 2 * p)), b0)
		ROW16(0); ROW16(1); ROW16(2); ROW16(3); ROW16(4); ROW16(5); ROW16(6); ROW16(7);
		ROW16(8); ROW16(9); ROW16(10); ROW16(11); ROW16(12); ROW16(13); ROW16(14); ROW16(15);
#undef ROW16
	}
	const __m512 acc[16] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15};
	const __m512 vb = _mm512_set1_ps(beta);
	for (long i = 0; i < mr; i++) {
		__m512 x = acc[i];
		if (beta != 0) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(cm, c + i * ldc), x);
		_mm512_mask_storeu_ps(c + i * ldc, cm, x);
	}
}

// kiln_conv_bf16_gemm_ax: C[i, j] = Σ_p A[i, p]·B[p, j] (+ beta·C) for m × n,
// A's row i the words at xb + aoff[i] (bf16 elements: pixel pairs, read in
// place), B packed by kiln_conv_bf16_pack_dout (np pairs).
BF16 void kiln_conv_bf16_gemm_ax(long m, long n, long np, const uint16_t *xb, const int32_t *aoff, const uint32_t *bp,
                                 float *c, long ldc, float beta) {
	if (dout_panel(n) == 16) {
		const __mmask16 cm = kiln_mask16(n);
		for (long i0 = 0; i0 < m; i0 += 16)
			tile_ax16(np, xb, aoff + i0, bp, cm, c + i0 * ldc, ldc, m - i0 < 16 ? m - i0 : 16, beta);
		return;
	}
	for (long j0 = 0; j0 < n; j0 += CNR) {
		const __mmask16 cm[2] = {kiln_mask16(n - j0), kiln_mask16(n - j0 - 16)};
		for (long i0 = 0; i0 < m; i0 += CMR)
			tile_ax(np, xb, aoff + i0, bp + j0 * np, cm, c + i0 * ldc + j0, ldc, m - i0 < CMR ? m - i0 : CMR, beta);
	}
}

// ---------------------------------------------------------------------------
// AMX (where kiln_cpu_amx): the same products on TDPBF16PS, 16 × 16 float32
// C tiles in blocks of up to 32 × 32, four C tiles, two A and two B tiles
// (tiles 0–7, each 16 rows of 64 bytes: kiln_amx_config). A tile loads 16
// rows one stride apart, so the reductions are ordered for that:
//
//   - forward and input gradient order the pairs tap-major, (t, c2), with
//     the channel pairs padded to c2p, a multiple of 16: B's 16 pair-rows
//     (t, c2 .. c2+15) are one plane apart in the channel-pair planes,
//     loaded in place; the planes past the real pairs are zero. C's columns
//     come in whole 32s, the rows in 16s (c's row stride and rows cover
//     them: the junk lands past the frame).
//   - the weight gradient's A rows are 16 channels at one tap, one plane
//     apart in the bf16 image (in place, at any alignment); B is the output
//     gradient's words from kiln_conv_bf16_pack_dout, whose pixel pairs are
//     padded with zeros to a multiple of 16; C is dWᵀ, accumulated in the
//     tiles over the image's pixels.
//
// Numerics: TDPBF16PS's, as in gemm_bf16_cpu.c: the same bits run after run,
// within float32 accumulation's bound of the exact sum of the rounded inputs.

#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))

// kiln_conv_amx_pack_w packs A[i, t·c2p + c2] = (w[i·rs + 2c2·cs + t],
// w[i·rs + (2c2+1)·cs + t]) as mp rows of taps·c2p words; rows past m and
// pairs past ⌈nch/2⌉ are zero.
void kiln_conv_amx_pack_w(uint32_t *ap, const float *w, long m, long rs, long nch, long cs, long taps, long mp,
                          long c2p) {
	const long nc2 = (nch + 1) / 2, kp = taps * c2p;
	for (long i = 0; i < mp; i++)
		for (long t = 0; t < taps; t++)
			for (long c2 = 0; c2 < c2p; c2++) {
				uint32_t word = 0;
				if (i < m && c2 < nc2) {
					const float *wi = w + i * rs + 2 * c2 * cs + t;
					word = pair_word(wi[0], 2 * c2 + 1 < nch ? wi[cs] : 0.0f);
				}
				ap[i * kp + t * c2p + c2] = word;
			}
}

// amx_load_c starts a block's C tiles from c (rows rs floats apart);
// amx_store_c writes them back. two_i, two_j: the block's second row and
// column of tiles are real.
AMX static void amx_load_c(const float *c, long rs, int two_i, int two_j) {
	_tile_loadd(0, c, rs * 4);
	if (two_j) _tile_loadd(1, c + 16, rs * 4);
	if (two_i) _tile_loadd(2, c + 16 * rs, rs * 4);
	if (two_i && two_j) _tile_loadd(3, c + 16 * rs + 16, rs * 4);
}

AMX static void amx_store_c(float *c, long rs, int two_i, int two_j) {
	_tile_stored(0, c, rs * 4);
	if (two_j) _tile_stored(1, c + 16, rs * 4);
	if (two_i) _tile_stored(2, c + 16 * rs, rs * 4);
	if (two_i && two_j) _tile_stored(3, c + 16 * rs + 16, rs * 4);
}

// amx_products adds A·B to the block's C tiles: A's tiles loaded from a0
// (and a0 + 16 rows), B's from b0 and b1, each tile's rows the given
// strides apart (bytes).
#define AMX_PRODUCTS(a0, a1, sa, b0, b1, sb, two_i, two_j)                                        \
	do {                                                                                           \
		_tile_loadd(4, a0, sa);                                                                    \
		if (two_i) _tile_loadd(5, a1, sa);                                                         \
		_tile_loadd(6, b0, sb);                                                                    \
		if (two_j) _tile_loadd(7, b1, sb);                                                         \
		_tile_dpbf16ps(0, 4, 6);                                                                   \
		if (two_j) _tile_dpbf16ps(1, 4, 7);                                                        \
		if (two_i) _tile_dpbf16ps(2, 5, 6);                                                        \
		if (two_i && two_j) _tile_dpbf16ps(3, 5, 7);                                               \
	} while (0)

// kiln_conv_amx_bx: C[i, dst[k] + j] = start + Σ_t Σ_c2 A[i, t·c2p + c2]·
// x2[c2·bplane + toff[t] + src[k] + j] for i < mp (a multiple of 16), over
// nch chunks of 16 columns (j < 16), in blocks of two; A from
// kiln_conv_amx_pack_w. start is bias16's row i (16 floats alike), or zero
// where bias16 is NULL. The chunks let C be the output itself where its
// rows are whole chunks (no junk columns to drop), or the wide frame.
AMX void kiln_conv_amx_bx(long mp, long nch, const int32_t *src, const int32_t *dst, long taps, long c2p,
                          const uint32_t *ap, const uint32_t *x2, long bplane, const int32_t *toff, const float *bias16,
                          float *c, long ldc) {
	kiln_amx_config();
	const long kp = taps * c2p;
	for (long k = 0; k < nch; k += 2) {
		const int two_j = nch - k > 1;
		for (long i0 = 0; i0 < mp; i0 += 32) {
			const int two_i = mp - i0 > 16;
			if (bias16) {
				_tile_loadd(0, bias16 + i0 * 16, 64);
				_tile_loadd(1, bias16 + i0 * 16, 64);
				_tile_loadd(2, bias16 + (two_i ? i0 + 16 : i0) * 16, 64);
				_tile_loadd(3, bias16 + (two_i ? i0 + 16 : i0) * 16, 64);
			} else {
				_tile_zero(0);
				_tile_zero(1);
				_tile_zero(2);
				_tile_zero(3);
			}
			const uint32_t *a = ap + i0 * kp;
			const long s0 = src[k], s1 = two_j ? src[k + 1] : s0;
			for (long t = 0; t < taps; t++)
				for (long c2 = 0; c2 < c2p; c2 += 16) {
					const uint32_t *b = x2 + c2 * bplane + toff[t], *ak = a + t * c2p + c2;
					AMX_PRODUCTS(ak, ak + 16 * kp, kp * 4, b + s0, b + s1, bplane * 4, two_i, two_j);
				}
			float *c0 = c + i0 * ldc + dst[k], *c1 = c + i0 * ldc + (two_j ? dst[k + 1] : 0);
			_tile_stored(0, c0, ldc * 4);
			if (two_j) _tile_stored(1, c1, ldc * 4);
			if (two_i) _tile_stored(2, c0 + 16 * ldc, ldc * 4);
			if (two_i && two_j) _tile_stored(3, c1 + 16 * ldc, ldc * 4);
		}
	}
	_tile_release();
}

// kiln_conv_amx_ax: C[(i·taps + t)·ldc + j] += Σ_p (xb[i·plane + toff[t] +
// 2p], xb[… + 2p + 1])·B[p, j] for i < m (channels) and j < n (output
// channels), both multiples of 16, over np pixel pairs (a multiple of 16),
// B packed by kiln_conv_bf16_pack_dout(…, n, np).
AMX void kiln_conv_amx_ax(long m, long taps, long n, long np, const uint16_t *xb, long plane, const int32_t *toff,
                          const uint32_t *bp, float *c, long ldc) {
	kiln_amx_config();
	const long w = dout_panel(n), rs = taps * ldc;
	for (long t = 0; t < taps; t++)
		for (long i0 = 0; i0 < m; i0 += 32)
			for (long j0 = 0; j0 < n; j0 += 32) {
				const int two_i = m - i0 > 16, two_j = n - j0 > 16;
				float *cb = c + (i0 * taps + t) * ldc + j0;
				amx_load_c(cb, rs, two_i, two_j);
				const uint16_t *a = xb + i0 * plane + toff[t];
				const uint32_t *b0 = bp + (j0 - j0 % w) * np + j0 % w;
				const uint32_t *b1 = bp + (j0 + 16 - (j0 + 16) % w) * np + (j0 + 16) % w;
				for (long p = 0; p < np; p += 16)
					AMX_PRODUCTS(a + 2 * p, a + 16 * plane + 2 * p, plane * 2, b0 + p * w, b1 + p * w, w * 4, two_i,
					             two_j);
				amx_store_c(cb, rs, two_i, two_j);
			}
	_tile_release();
}

#endif // __x86_64__
