// conv_cpu.c: float32 convolution kernels for the wide (stride-1) lowering
// that read the input in place instead of through a col matrix (an implicit
// GEMM). Row k = (r, t) of the product's right-hand side is the run of plane
// r of b that starts at tap t's offset, so
//
//	C[i, col] = init[i] + Σ_r Σ_t A[i, r, t] · b[r·ldbr + toff[t] + col]
//
// with toff[t] = base + (t / kw)·sh + (t % kw)·sw. Forward is A = W, b the
// (padded) input; the input gradient is the same sum with A = Wᵀ per tap and
// b the output gradient in a zero-margined wide frame (a full correlation).
// The weight gradient is the transposed product
//
//	dw[i, k] += Σ_col a[i, col] · b[r·ldbr + toff[t] + col]
//
// as dot products. Columns run over segments: nrows rows of rowlen columns,
// each row of b (and of C or a) a fixed stride after the previous one, so the
// same code serves the wide frame (one long row) and row-by-row output.
//
// Numerics: each element of C is one FMA chain over k = (r, t) in increasing
// order starting from init; each dw element is eight lane chains over the
// columns in order, added in a fixed tree at the end. Nothing depends on
// timing or threads. The AVX2/FMA code is compiled through a target
// attribute and only called when the CPU has both (kiln_conv_cpu_ok).

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>

#include "conv_cpu.h"
#include "isa_cpu.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

enum { MR = 6, NR = 16, DMR = 4, DNR = 3, MAXK = 4096 };


int kiln_conv_cpu_maxk(void) { return MAXK; }

// kiln_conv_pack writes A(i, r, t) = a[i·si + r·sr + t] as 6-row panels,
// k = r·nt + t (or k = t·nr + r when tapmajor) within a panel; rows past m
// are zero. dst holds ⌈m/6⌉·6·nr·nt floats.
void kiln_conv_pack(float *dst, const float *a, long m, long nr, long nt, long si, long sr, int tapmajor) {
	for (long p = 0; p < m; p += MR)
		for (long k = 0; k < nr * nt; k++) {
			const long r = tapmajor ? k % nr : k / nt, t = tapmajor ? k / nr : k % nt;
			for (long i = 0; i < MR; i++) *dst++ = p + i < m ? a[(p + i) * si + r * sr + t] : 0;
		}
}

// offsets fills koff[k] = r·ldbr + toff[t] for k = r·nt + t.
static void offsets(int32_t *koff, long nr, long nt, long ldbr, long kw, long base, long sh, long sw) {
	for (long r = 0; r < nr; r++)
		for (long t = 0; t < nt; t++) koff[r * nt + t] = (int32_t)(r * ldbr + base + (t / kw) * sh + (t % kw) * sw);
}

AVX2 INLINE __m256i lanes_below(int n) {
	return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// tile computes rows [0, mr) by up to 16 columns of C. nv is the number of
// ymm column vectors (1 or 2); masked says the last one holds fewer than 8
// valid columns, per mask. The accumulators are named variables, not an
// array: gcc keeps an array of vectors in memory and stores it every step.
#define ACC_DECL(I)                                                                   \
	__m256 a##I##0 = _mm256_setzero_ps(), a##I##1 = _mm256_setzero_ps();               \
	if (mr > I && init) a##I##0 = a##I##1 = _mm256_broadcast_ss(init + I);
#define ACC_FMA(I)                                                                    \
	if (mr > I) {                                                                     \
		__m256 av = _mm256_broadcast_ss(a + I);                                        \
		a##I##0 = _mm256_fmadd_ps(av, b0, a##I##0);                                    \
		if (nv == 2) a##I##1 = _mm256_fmadd_ps(av, b1, a##I##1);                       \
	}
#define ACC_STORE(I)                                                                  \
	if (mr > I) {                                                                     \
		float *ci = c + I * ldc;                                                      \
		if (nv == 1) {                                                                \
			if (masked)                                                               \
				_mm256_maskstore_ps(ci, mask, a##I##0);                               \
			else                                                                      \
				_mm256_storeu_ps(ci, a##I##0);                                        \
		} else {                                                                      \
			_mm256_storeu_ps(ci, a##I##0);                                            \
			if (masked)                                                               \
				_mm256_maskstore_ps(ci + 8, mask, a##I##1);                           \
			else                                                                      \
				_mm256_storeu_ps(ci + 8, a##I##1);                                    \
		}                                                                             \
	}

AVX2 INLINE void tile(const int mr, const int nv, const int masked, long k, const float *ap, const float *b,
                      const int32_t *koff, const float *init, float *c, long ldc, __m256i mask) {
	ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5)
	for (long p = 0; p < k; p++) {
		const float *bp = b + koff[p];
		__m256 b0, b1 = _mm256_setzero_ps();
		if (nv == 1) {
			b0 = masked ? _mm256_maskload_ps(bp, mask) : _mm256_loadu_ps(bp);
		} else {
			b0 = _mm256_loadu_ps(bp);
			b1 = masked ? _mm256_maskload_ps(bp + 8, mask) : _mm256_loadu_ps(bp + 8);
		}
		const float *a = ap + p * MR;
		ACC_FMA(0) ACC_FMA(1) ACC_FMA(2) ACC_FMA(3) ACC_FMA(4) ACC_FMA(5)
	}
	ACC_STORE(0) ACC_STORE(1) ACC_STORE(2) ACC_STORE(3) ACC_STORE(4) ACC_STORE(5)
}

#define TILE_CASES(NV, MASKED)                                                          \
	switch (mr) {                                                                       \
	case 1: tile(1, NV, MASKED, k, ap, b, koff, init, c, ldc, mask); break;             \
	case 2: tile(2, NV, MASKED, k, ap, b, koff, init, c, ldc, mask); break;             \
	case 3: tile(3, NV, MASKED, k, ap, b, koff, init, c, ldc, mask); break;             \
	case 4: tile(4, NV, MASKED, k, ap, b, koff, init, c, ldc, mask); break;             \
	case 5: tile(5, NV, MASKED, k, ap, b, koff, init, c, ldc, mask); break;             \
	default: tile(6, NV, MASKED, k, ap, b, koff, init, c, ldc, mask); break;            \
	}

AVX2 static void tile_any(int mr, int ncols, long k, const float *ap, const float *b, const int32_t *koff,
                          const float *init, float *c, long ldc) {
	if (ncols == 16) {
		__m256i mask = _mm256_setzero_si256();
		TILE_CASES(2, 0)
	} else if (ncols > 8) {
		__m256i mask = lanes_below(ncols - 8);
		TILE_CASES(2, 1)
	} else if (ncols == 8) {
		__m256i mask = _mm256_setzero_si256();
		TILE_CASES(1, 0)
	} else {
		__m256i mask = lanes_below(ncols);
		TILE_CASES(1, 1)
	}
}

AVX2 static void shift_gemm_avx2(float *c, long ldc, long m, const float *ap, long nr, long nt, const float *b,
                                 long ldbr, long kw, long base, long sh, long sw, const float *init, long nrows,
                                 long rowlen, long brs, long crs) {
	const long k = nr * nt;
	int32_t koff[k];
	offsets(koff, nr, nt, ldbr, kw, base, sh, sw);
	for (long p = 0; p < m; p += MR) {
		const int mr = m - p < MR ? (int)(m - p) : MR;
		const float *app = ap + p * k;
		const float *ini = init ? init + p : 0;
		for (long y = 0; y < nrows; y++) {
			const float *by = b + y * brs;
			float *cy = c + p * ldc + y * crs;
			for (long j = 0; j < rowlen; j += NR) {
				const int nc = rowlen - j < NR ? (int)(rowlen - j) : NR;
				tile_any(mr, nc, k, app, by + j, koff, ini, cy + j, ldc);
			}
		}
	}
}

int kiln_conv_shift_gemm(float *c, long ldc, long m, const float *ap, long nr, long nt, const float *b, long ldbr,
                         long kw, long base, long sh, long sw, const float *init, long nrows, long rowlen, long brs,
                         long crs) {
	if (nr * nt > MAXK) return 0;
	shift_gemm_avx2(c, ldc, m, ap, nr, nt, b, ldbr, kw, base, sh, sw, init, nrows, rowlen, brs, crs);
	return 1;
}

// kiln_conv_shift_gemm_dx is the input gradient's product, row by row, with
// A packed tap-major (k = t·nr + r, kiln_conv_pack) so that the kernel rows
// kh that read only the zero margins of the output gradient for output row y
// (those with y + ph − kh·dh outside [0, oh)) form a contiguous range of k
// and are skipped: they would add exact zeros.
AVX2 static void shift_gemm_dx_avx2(float *c, long ldc, long m, const float *ap, long nr, long khn, long kw,
                                    const float *b, long ldbr, long base, long sh, long sw, long nrows, long rowlen,
                                    long brs, long crs, long ph, long dh, long oh) {
	const long nt = khn * kw, k = nr * nt;
	int32_t koff[k];
	for (long t = 0; t < nt; t++)
		for (long r = 0; r < nr; r++) koff[t * nr + r] = (int32_t)(r * ldbr + base + (t / kw) * sh + (t % kw) * sw);
	for (long p = 0; p < m; p += MR) {
		const int mr = m - p < MR ? (int)(m - p) : MR;
		const float *app = ap + p * k;
		for (long y = 0; y < nrows; y++) {
			// Valid kernel rows: y + ph − oh < kh·dh ≤ y + ph.
			long lo = y + ph - oh + 1;
			lo = lo <= 0 ? 0 : (lo + dh - 1) / dh;
			long hi = (y + ph) / dh;
			hi = hi > khn - 1 ? khn - 1 : hi;
			const float *by = b + y * brs;
			float *cy = c + p * ldc + y * crs;
			const long k0 = lo * kw * nr, k1 = hi < lo ? k0 : (hi + 1) * kw * nr;
			for (long j = 0; j < rowlen; j += NR) {
				const int nc = rowlen - j < NR ? (int)(rowlen - j) : NR;
				tile_any(mr, nc, k1 - k0, app + k0 * MR, by + j, koff + k0, 0, cy + j, ldc);
			}
		}
	}
}

int kiln_conv_shift_gemm_dx(float *c, long ldc, long m, const float *ap, long nr, long khn, long kw, const float *b,
                            long ldbr, long base, long sh, long sw, long nrows, long rowlen, long brs, long crs,
                            long ph, long dh, long oh) {
	if (nr * khn * kw > MAXK) return 0;
	shift_gemm_dx_avx2(c, ldc, m, ap, nr, khn, kw, b, ldbr, base, sh, sw, nrows, rowlen, brs, crs, ph, dh, oh);
	return 1;
}

// dtile adds to dw rows [0, mr) × k columns [0, nc) the dot products of a's
// rows with the shifted runs of b over every segment.
#define D_DECL(I) __m256 d##I##0 = _mm256_setzero_ps(), d##I##1 = d##I##0, d##I##2 = d##I##0;
#define D_FMA(I, LOAD)                                                                \
	if (mr > I) {                                                                     \
		__m256 av = LOAD(ay + I * lda + q);                                           \
		d##I##0 = _mm256_fmadd_ps(av, b0, d##I##0);                                    \
		if (nc > 1) d##I##1 = _mm256_fmadd_ps(av, b1, d##I##1);                        \
		if (nc > 2) d##I##2 = _mm256_fmadd_ps(av, b2, d##I##2);                        \
	}
#define D_STEP(LOAD)                                                                  \
	{                                                                                 \
		__m256 b0 = LOAD(by + koff[0] + q), b1 = b0, b2 = b0;                          \
		if (nc > 1) b1 = LOAD(by + koff[1] + q);                                       \
		if (nc > 2) b2 = LOAD(by + koff[2] + q);                                       \
		D_FMA(0, LOAD) D_FMA(1, LOAD) D_FMA(2, LOAD) D_FMA(3, LOAD)                    \
	}
#define LOADU(p) _mm256_loadu_ps(p)
#define LOADM(p) _mm256_maskload_ps(p, mask)
#define D_OUT(I, J)                                                                   \
	if (mr > I && nc > J) dw[I * ldw + J] += hsum(d##I##J);

AVX2 INLINE float hsum(__m256 v) {
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

AVX2 INLINE void dtile(const int mr, const int nc, const float *a, long lda, const float *b, const int32_t *koff,
                       long nrows, long rowlen, long ars, long brs, float *dw, long ldw) {
	D_DECL(0) D_DECL(1) D_DECL(2) D_DECL(3)
	const long full = rowlen & ~7L;
	const __m256i mask = lanes_below((int)(rowlen - full));
	for (long y = 0; y < nrows; y++) {
		const float *ay = a + y * ars;
		const float *by = b + y * brs;
		long q = 0;
		for (; q < full; q += 8) D_STEP(LOADU)
		if (q < rowlen) D_STEP(LOADM)
	}
	D_OUT(0, 0) D_OUT(0, 1) D_OUT(0, 2) D_OUT(1, 0) D_OUT(1, 1) D_OUT(1, 2)
	D_OUT(2, 0) D_OUT(2, 1) D_OUT(2, 2) D_OUT(3, 0) D_OUT(3, 1) D_OUT(3, 2)
}

#define DTILE(MR_, NC_) dtile(MR_, NC_, a, lda, b, koff, nrows, rowlen, ars, brs, dw, ldw)
#define DTILE_NC(MR_)                          \
	switch (nc) {                              \
	case 1: DTILE(MR_, 1); break;              \
	case 2: DTILE(MR_, 2); break;              \
	default: DTILE(MR_, 3); break;             \
	}

AVX2 static void dtile_any(int mr, int nc, const float *a, long lda, const float *b, const int32_t *koff,
                           long nrows, long rowlen, long ars, long brs, float *dw, long ldw) {
	switch (mr) {
	case 1: DTILE_NC(1) break;
	case 2: DTILE_NC(2) break;
	case 3: DTILE_NC(3) break;
	default: DTILE_NC(4) break;
	}
}

AVX2 static void shift_dw_avx2(float *dw, long ldw, long m, const float *a, long lda, long nr, long nt,
                               const float *b, long ldbr, long kw, long base, long sh, long sw, long nrows,
                               long rowlen, long ars, long brs) {
	const long k = nr * nt;
	int32_t koff[k];
	offsets(koff, nr, nt, ldbr, kw, base, sh, sw);
	for (long i = 0; i < m; i += DMR) {
		const int mr = m - i < DMR ? (int)(m - i) : DMR;
		for (long j = 0; j < k; j += DNR) {
			const int nc = k - j < DNR ? (int)(k - j) : DNR;
			dtile_any(mr, nc, a + i * lda, lda, b, koff + j, nrows, rowlen, ars, brs, dw + i * ldw + j, ldw);
		}
	}
}

int kiln_conv_shift_dw(float *dw, long ldw, long m, const float *a, long lda, long nr, long nt, const float *b,
                       long ldbr, long kw, long base, long sh, long sw, long nrows, long rowlen, long ars, long brs) {
	if (nr * nt > MAXK) return 0;
	shift_dw_avx2(dw, ldw, m, a, lda, nr, nt, b, ldbr, kw, base, sh, sw, nrows, rowlen, ars, brs);
	return 1;
}

// ---------------------------------------------------------------------------
// Weight gradient as a product with the output gradient transposed: with
// dyT (Q × ldt, ldt a multiple of 8, zero past Cout) holding dout[co, q] at
// [q, co],
//
//	dwT[k, co] += Σ_q b[koff[k] + seg(q)] · dyT[q, co]
//
// in 6×16 register tiles that stay in registers over all of Q: no horizontal
// sums, no reloads of partial results. q runs over the segments in order
// (q = y·rowlen + x reads b at y·brs + x).

#define W_DECL(I) __m256 w##I##0 = _mm256_setzero_ps(), w##I##1 = _mm256_setzero_ps();
#define W_FMA(I)                                                                      \
	if (mr > I) {                                                                     \
		__m256 av = _mm256_broadcast_ss(p##I + x);                                     \
		w##I##0 = _mm256_fmadd_ps(av, d0, w##I##0);                                    \
		if (nv == 2) w##I##1 = _mm256_fmadd_ps(av, d1, w##I##1);                       \
	}
#define W_PTR(I) const float *p##I = mr > I ? by + koff[I] : by;
#define W_OUT(I)                                                                      \
	if (mr > I) {                                                                     \
		float *ci = c + I * ldw;                                                      \
		_mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(ci), w##I##0));            \
		if (nv == 2) _mm256_storeu_ps(ci + 8, _mm256_add_ps(_mm256_loadu_ps(ci + 8), w##I##1)); \
	}

AVX2 INLINE void wtile(const int mr, const int nv, const float *b, const int32_t *koff, const float *dyt, long ldt,
                       long nrows, long rowlen, long brs, float *c, long ldw) {
	W_DECL(0) W_DECL(1) W_DECL(2) W_DECL(3) W_DECL(4) W_DECL(5)
	const float *dq = dyt;
	for (long y = 0; y < nrows; y++) {
		const float *by = b + y * brs;
		W_PTR(0) W_PTR(1) W_PTR(2) W_PTR(3) W_PTR(4) W_PTR(5)
		for (long x = 0; x < rowlen; x++, dq += ldt) {
			__m256 d0 = _mm256_loadu_ps(dq), d1 = d0;
			if (nv == 2) d1 = _mm256_loadu_ps(dq + 8);
			W_FMA(0) W_FMA(1) W_FMA(2) W_FMA(3) W_FMA(4) W_FMA(5)
		}
	}
	W_OUT(0) W_OUT(1) W_OUT(2) W_OUT(3) W_OUT(4) W_OUT(5)
}

#define WTILE(MR_)                                                                    \
	if (nv == 2)                                                                      \
		wtile(MR_, 2, b, koff, dyt, ldt, nrows, rowlen, brs, c, ldw);                 \
	else                                                                              \
		wtile(MR_, 1, b, koff, dyt, ldt, nrows, rowlen, brs, c, ldw);

AVX2 static void wtile_any(int mr, int nv, const float *b, const int32_t *koff, const float *dyt, long ldt,
                           long nrows, long rowlen, long brs, float *c, long ldw) {
	switch (mr) {
	case 1: WTILE(1) break;
	case 2: WTILE(2) break;
	case 3: WTILE(3) break;
	case 4: WTILE(4) break;
	case 5: WTILE(5) break;
	default: WTILE(6) break;
	}
}

AVX2 static void shift_dwt_avx2(float *dwt, long ldw, float *db, const float *dyt, long ldt, long nr, long nt,
                                const float *b, long ldbr, long kw, long base, long sh, long sw, long nrows,
                                long rowlen, long brs) {
	const long k = nr * nt;
	int32_t koff[k];
	offsets(koff, nr, nt, ldbr, kw, base, sh, sw);
	for (long i = 0; i < k; i += MR) {
		const int mr = k - i < MR ? (int)(k - i) : MR;
		for (long j = 0; j < ldt; j += NR) {
			const int nv = ldt - j >= NR ? 2 : 1;
			wtile_any(mr, nv, b, koff + i, dyt + j, ldt, nrows, rowlen, brs, dwt + i * ldw + j, ldw);
		}
	}
	if (!db) return;
	const long q = nrows * rowlen;
	for (long j = 0; j < ldt; j += 8) {
		__m256 s = _mm256_setzero_ps();
		for (long p = 0; p < q; p++) s = _mm256_add_ps(s, _mm256_loadu_ps(dyt + p * ldt + j));
		_mm256_storeu_ps(db + j, _mm256_add_ps(_mm256_loadu_ps(db + j), s));
	}
}

// kiln_conv_shift_dwt adds the weight gradient, transposed (K × ldw), and
// when db is not NULL the bias gradient (ldt wide), from one image group.
int kiln_conv_shift_dwt(float *dwt, long ldw, float *db, const float *dyt, long ldt, long nr, long nt, const float *b,
                        long ldbr, long kw, long base, long sh, long sw, long nrows, long rowlen, long brs) {
	if (nr * nt > MAXK || ldt % 8 != 0) return 0;
	shift_dwt_avx2(dwt, ldw, db, dyt, ldt, nr, nt, b, ldbr, kw, base, sh, sw, nrows, rowlen, brs);
	return 1;
}

// kiln_conv_dyt writes dyT[q, co] = dy[co, ·] for co < m (columns m..ldt-1
// are left alone, zero in the caller's scratch): q runs over the output rows
// (oh, ow) → oh·qrow + ow, with qrow = OW for row-by-row segments or Wp for
// the wide frame (whose junk rows stay zero).
void kiln_conv_dyt(float *dyt, long ldt, const float *dy, long m, long oh, long ow, long qrow) {
	for (long co = 0; co < m; co++) {
		const float *d = dy + co * oh * ow;
		for (long y = 0; y < oh; y++)
			for (long x = 0; x < ow; x++) dyt[(y * qrow + x) * ldt + co] = d[y * ow + x];
	}
}

#endif // __x86_64__
