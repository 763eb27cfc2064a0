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
// order starting from init, and each element of the transposed weight
// gradient one chain over the columns in order, so those give the same bits
// at every vector width; a dot-product dw element is VL lane chains over the
// columns, added in a fixed tree at the end. Nothing depends on timing or
// threads.
//
// Each kernel is written once, in the second half of this file, in terms of
// a vector of VL floats (V, V_FMA, ...), and compiled twice by including this
// file into itself: VL = 8 (ymm, AVX2 and FMA) and VL = 16 (zmm, AVX-512).
// The exported functions pick one at each call by kiln_isa(); the Go side
// calls them only at AVX2 or above (haveConvFast).

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#ifndef CONV_VL
// ---------------------------------------------------------------------------
// Shared by both widths, and the exported entry points.

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "conv_cpu.h"
#include "isa_cpu.h"
#include "transpose_cpu.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

enum { MAXK = 4096 };

// dw_rows is the rows of shift_dw's next tile at AVX2 with left rows to go:
// four, but threes where fours would leave one or two (six rows are 3 + 3,
// not 4 + 2: a two-row tile reloads the taps for half the FMAs and ran 40%
// of LeNet's first weight gradient for a third of its work).
static long dw_rows(long left) {
	if (left <= 4) return left;
	return left == 5 || left == 6 || left == 9 ? 3 : 4;
}

// dw_rows_zmm is the same at AVX-512, whose 32 registers hold tiles of up to
// 6 rows by 4 taps (24 accumulators): LeNet's 6 channels in one tile.
static long dw_rows_zmm(long left) {
	if (left <= 6) return left;
	return left <= 8 ? 4 : 6;
}

int kiln_conv_cpu_maxk(void) { return MAXK; }

// The caller reads the width once per convolution (kiln_conv_cpu_lanes) and
// passes it to every kernel it calls, so that the weights it packed and the
// products that read them agree even if the level changes meanwhile.
int kiln_conv_cpu_lanes(void) { return kiln_isa() >= KILN_ISA_AVX512 ? 16 : 8; }

// kiln_conv_cpu_panel is the rows of C a tile holds at width vl: 6 × 2
// vectors fill AVX2's 16 ymm registers with the operands; AVX-512's 32 zmm
// hold 8 × 2 (and 32 and 64 channels are whole panels of 8).
int kiln_conv_cpu_panel(int vl) { return vl == 16 ? 8 : 6; }

// FLAT_RB is how many planes flat_gemm takes a tap over before the next tap
// (conv_cpu.c's flat paths: k in blocks of FLAT_RB planes, tap-major inside
// a block). Tap-major over all planes strided the loads by whole planes,
// which alias in L1 when a plane is a multiple of 4 KiB (32×32): cnn's 32×32
// convolution ran a third slower at AVX2.
enum { FLAT_RB = 8 };

long kiln_conv_flat_block(void) { return FLAT_RB; }

// kiln_conv_pack writes A(i, r, t) = a[i·si + r·sr + t] as mr-row panels, k
// within a panel running over blocks of rb planes, tap-major inside each: k
// = r0·nt + t·len + (r − r0) for the block [r0, r0 + len) holding r. rb = 1
// is k = r·nt + t, rb = nr is k = t·nr + r. Rows past m are zero. dst holds
// ⌈m/mr⌉·mr·nr·nt floats.
void kiln_conv_pack(float *dst, const float *a, long m, long nr, long nt, long si, long sr, long rb, int mr) {
	for (long p = 0; p < m; p += mr, dst += mr * nr * nt)
		for (long r = 0; r < nr; r++) {
			const long r0 = r / rb * rb, len = nr - r0 < rb ? nr - r0 : rb;
			for (long t = 0; t < nt; t++) {
				float *d = dst + (r0 * nt + t * len + r - r0) * mr;
				for (long i = 0; i < mr; i++) d[i] = p + i < m ? a[(p + i) * si + r * sr + t] : 0;
			}
		}
}

// offsets fills koff[k] = r·ldbr + toff[t] for k = r·nt + t.
static void offsets(int32_t *koff, long nr, long nt, long ldbr, long kw, long base, long sh, long sw) {
	for (long r = 0; r < nr; r++)
		for (long t = 0; t < nt; t++) koff[r * nt + t] = (int32_t)(r * ldbr + base + (t / kw) * sh + (t % kw) * sw);
}

// max_offset is the largest of koff[0..k).
static long max_offset(const int32_t *koff, long k) {
	long m = koff[0];
	for (long i = 1; i < k; i++) m = koff[i] > m ? koff[i] : m;
	return m;
}

// dx_rows gives the range [k0, k1) of tap-major k that output-gradient row y
// reads inside [0, oh): kernel rows kh with y + ph − oh < kh·dh ≤ y + ph.
static void dx_rows(long y, long ph, long dh, long oh, long khn, long kwnr, long *k0, long *k1) {
	long lo = y + ph - oh + 1;
	lo = lo <= 0 ? 0 : (lo + dh - 1) / dh;
	long hi = (y + ph) / dh;
	hi = hi > khn - 1 ? khn - 1 : hi;
	*k0 = lo * kwnr;
	*k1 = hi < lo ? *k0 : (hi + 1) * kwnr;
}

// The tile macros, expanded in each width's kernels. A tile is rows [0, mr ≤ 8)
// of C by nv vectors of columns: the first at b and c, the second boff
// further in b and coff in c (the next VL columns, or the next row when
// rows are short); m0 and m1 say which of them hold fewer than VL valid
// columns, per mask. The accumulators are named variables, not an array:
// gcc keeps an array of vectors in memory and stores it every step.
#define ACC_DECL(I)                                                                   \
	V a##I##0 = V_ZERO(), a##I##1 = V_ZERO();                                         \
	if (mr > I && init) a##I##0 = a##I##1 = V_BCAST(init + I);
#define ACC_FMA(I)                                                                    \
	if (mr > I) {                                                                     \
		V av = V_BCAST(a + I);                                                        \
		a##I##0 = V_FMA(av, b0, a##I##0);                                             \
		if (nv == 2) a##I##1 = V_FMA(av, b1, a##I##1);                                \
	}
#define V_PUT(p, masked, v)                                                           \
	if (masked)                                                                       \
		V_STOREM(p, mask, v);                                                         \
	else                                                                              \
		V_STORE(p, v);
#define ACC_STORE(I)                                                                  \
	if (mr > I) {                                                                     \
		float *ci = c + I * ldc;                                                      \
		V_PUT(ci, m0, a##I##0)                                                        \
		if (nv == 2) V_PUT(ci + coff, m1, a##I##1)                                     \
	}
// A tile's m0/m1: 0 a whole vector; 1 fewer than VL columns, loaded and
// stored under the mask; 2 the same stored under the mask but loaded whole,
// reading past the columns (the caller has checked that b goes on that far).
#define V_GET(p, masked) ((masked) == 1 ? V_LOADM(p, mask) : V_LOAD(p))
#define TILE_ARGS k, ap, b, boff, koff, init, c, coff, ldc, mask
#define TILE_CASES(NV, M0, M1)                                                          \
	switch (mr) {                                                                       \
	case 1: L(tile)(1, NV, M0, M1, TILE_ARGS); break;                                   \
	case 2: L(tile)(2, NV, M0, M1, TILE_ARGS); break;                                   \
	case 3: L(tile)(3, NV, M0, M1, TILE_ARGS); break;                                   \
	case 4: L(tile)(4, NV, M0, M1, TILE_ARGS); break;                                   \
	case 5: L(tile)(5, NV, M0, M1, TILE_ARGS); break;                                   \
	case 6: L(tile)(6, NV, M0, M1, TILE_ARGS); break;                                   \
	case 7: L(tile)(7, NV, M0, M1, TILE_ARGS); break;                                   \
	default: L(tile)(8, NV, M0, M1, TILE_ARGS); break;                                  \
	}

// The dot-product tile's macros (dtile).
#define D_DECL(I) V d##I##0 = V_ZERO(), d##I##1 = d##I##0, d##I##2 = d##I##0, d##I##3 = d##I##0, d##I##4 = d##I##0, d##I##5 = d##I##0;
#define D_FMA(I, M)                                                                   \
	if (mr > I) {                                                                     \
		V av = V_GET(ay + I * lda + q, M);                                            \
		d##I##0 = V_FMA(av, b0, d##I##0);                                             \
		if (nc > 1) d##I##1 = V_FMA(av, b1, d##I##1);                                 \
		if (nc > 2) d##I##2 = V_FMA(av, b2, d##I##2);                                 \
		if (nc > 3) d##I##3 = V_FMA(av, b3, d##I##3);                                 \
		if (nc > 4) d##I##4 = V_FMA(av, b4, d##I##4);                                 \
		if (nc > 5) d##I##5 = V_FMA(av, b5, d##I##5);                                 \
	}
#define D_STEP(M)                                                                     \
	{                                                                                 \
		V b0 = V_GET(by + koff[0] + q, M), b1 = b0, b2 = b0, b3 = b0, b4 = b0, b5 = b0; \
		if (nc > 1) b1 = V_GET(by + koff[1] + q, M);                                  \
		if (nc > 2) b2 = V_GET(by + koff[2] + q, M);                                  \
		if (nc > 3) b3 = V_GET(by + koff[3] + q, M);                                  \
		if (nc > 4) b4 = V_GET(by + koff[4] + q, M);                                  \
		if (nc > 5) b5 = V_GET(by + koff[5] + q, M);                                  \
		D_FMA(0, M) D_FMA(1, M) D_FMA(2, M) D_FMA(3, M) D_FMA(4, M) D_FMA(5, M)       \
	}
#define D_OUT(I, J)                                                                   \
	if (mr > I && nc > J) dw[I * ldw + J] += V_HSUM(d##I##J);
#define D_OUT_ROW(I) D_OUT(I, 0) D_OUT(I, 1) D_OUT(I, 2) D_OUT(I, 3) D_OUT(I, 4) D_OUT(I, 5)
#define DTILE(MR_, NC_) L(dtile)(MR_, NC_, a, lda, b, koff, nrows, rowlen, ars, brs, dw, ldw)

// The transposed weight gradient's tile macros (wtile).
#define W_DECL(I) V w##I##0 = V_ZERO(), w##I##1 = V_ZERO();
#define W_FMA(I)                                                                      \
	if (mr > I) {                                                                     \
		V av = V_BCAST(p##I + x);                                                     \
		w##I##0 = V_FMA(av, d0, w##I##0);                                             \
		if (nv == 2) w##I##1 = V_FMA(av, d1, w##I##1);                                \
	}
#define W_PTR(I) const float *p##I = mr > I ? by + koff[I] : by;
#define W_OUT(I)                                                                      \
	if (mr > I) {                                                                     \
		float *ci = c + I * ldw;                                                      \
		V_PUT(ci, m0, V_ADD(V_GET(ci, m0), w##I##0))                                  \
		if (nv == 2) V_PUT(ci + VL, m1, V_ADD(V_GET(ci + VL, m1), w##I##1))           \
	}
#define WTILE(MR_, NV, M0, M1) L(wtile)(MR_, NV, M0, M1, b, koff, dyt, ldt, nrows, rowlen, brs, c, ldw, mask)
#define WTILE_CASES(NV, M0, M1)                          \
	switch (mr) {                                        \
	case 1: WTILE(1, NV, M0, M1); break;                 \
	case 2: WTILE(2, NV, M0, M1); break;                 \
	case 3: WTILE(3, NV, M0, M1); break;                 \
	case 4: WTILE(4, NV, M0, M1); break;                 \
	case 5: WTILE(5, NV, M0, M1); break;                 \
	case 6: WTILE(6, NV, M0, M1); break;                 \
	case 7: WTILE(7, NV, M0, M1); break;                 \
	default: WTILE(8, NV, M0, M1); break;                \
	}

#define CONV_VL 8
#include "conv_cpu.c"
#undef CONV_VL
#define CONV_VL 16
#include "conv_cpu.c"
#undef CONV_VL

int kiln_conv_shift_gemm(float *c, long ldc, long m, const float *ap, long nr, long nt, const float *b, long blen,
                         long ldbr, long kw, long base, long sh, long sw, const float *init, long nrows, long rowlen,
                         long brs, long crs, int vl) {
	if (nr * nt > MAXK) return 0;
	(vl == 16 ? shift_gemm_16 : shift_gemm_8)(c, ldc, m, ap, nr, nt, b, blen, ldbr, kw, base, sh, sw, init, nrows,
	                                       rowlen, brs, crs);
	return 1;
}

// kiln_conv_oc_gemm is the forward product with the output channels in the
// lanes (oc_gemm), wp packed by kiln_conv_pack with mr = 2·vl, writing C's
// rows as one run of nrows·rowlen pixels each (crs = rowlen), tiles of tw
// pixels; yt holds nrows·rowlen × ldt floats, ldt a multiple of vl at least m.
int kiln_conv_oc_gemm(float *c, long ldc, long m, const float *wp, long nr, long nt, const float *b, long ldbr,
                      long kw, long base, long sh, long sw, const float *init, long nrows, long rowlen, long brs,
                      float *yt, long ldt, long tw, int vl) {
	if (nr * nt > MAXK || ldt % vl != 0 || ldt < m || tw < 1 || tw > kiln_conv_cpu_panel(vl)) return 0;
	(vl == 16 ? oc_gemm_16 : oc_gemm_8)(c, ldc, m, wp, nr, nt, b, ldbr, kw, base, sh, sw, init, nrows, rowlen, brs,
	                                   yt, ldt, tw);
	return 1;
}

// kiln_conv_flat_mask_bytes is the size of flat_masks' table for an h×w
// plane and nt taps at width vl.
long kiln_conv_flat_mask_bytes(long h, long w, long nt, int vl) {
	return (h * w + vl - 1) / vl * nt * (vl == 16 ? (long)sizeof(__mmask16) : (long)sizeof(__m256i));
}

void kiln_conv_flat_masks(void *dst, long h, long w, long kh, long kw, long ph, long pw, int neg, int vl) {
	(vl == 16 ? flat_masks_16 : flat_masks_8)(dst, h, w, kh, kw, ph, pw, neg);
}

// kiln_conv_flat_gemm is a "same" stride-1 convolution's product over the
// unpadded h×w planes of b (ldbr apart): tap t = (i, j) reads at the flat
// offset (i − ph)·w + (j − pw), negated for the input gradient (neg), in the
// lanes masks (kiln_conv_flat_masks, same neg) allows.
int kiln_conv_flat_gemm(float *c, long ldc, long m, const float *ap, long nr, long kh, long kw, long ph, long pw,
                        int neg, const float *b, long ldbr, long w, const void *masks, const float *init, long nq,
                        int vl) {
	const long nt = kh * kw;
	if (nr * nt > MAXK) return 0;
	int32_t toff[nt];
	for (long t = 0; t < nt; t++) {
		const long off = (t / kw - ph) * w + (t % kw - pw);
		toff[t] = (int32_t)(neg ? -off : off);
	}
	(vl == 16 ? flat_gemm_16 : flat_gemm_8)(c, ldc, m, ap, nr, nt, b, ldbr, toff, masks, init, nq);
	return 1;
}

// kiln_conv_shift_gemm_dx is the input gradient's product, row by row, with
// A packed tap-major (k = t·nr + r, kiln_conv_pack) so that the kernel rows
// kh that read only the zero margins of the output gradient for output row y
// (those with y + ph − kh·dh outside [0, oh)) form a contiguous range of k
// and are skipped: they would add exact zeros.
int kiln_conv_shift_gemm_dx(float *c, long ldc, long m, const float *ap, long nr, long khn, long kw, const float *b,
                            long blen, long ldbr, long base, long sh, long sw, long nrows, long rowlen, long brs,
                            long crs, long ph, long dh, long oh, int vl) {
	if (nr * khn * kw > MAXK) return 0;
	(vl == 16 ? shift_gemm_dx_16 : shift_gemm_dx_8)(c, ldc, m, ap, nr, khn, kw, b, blen, ldbr, base, sh, sw, nrows,
	                                             rowlen, brs, crs, ph, dh, oh);
	return 1;
}

int kiln_conv_shift_dw(float *dw, long ldw, long m, const float *a, long lda, long nr, long nt, const float *b,
                       long ldbr, long kw, long base, long sh, long sw, long nrows, long rowlen, long ars, long brs,
                       int vl) {
	if (nr * nt > MAXK) return 0;
	(vl == 16 ? shift_dw_16 : shift_dw_8)(dw, ldw, m, a, lda, nr, nt, b, ldbr, kw, base, sh, sw, nrows, rowlen, ars,
	                                   brs);
	return 1;
}

// kiln_conv_shift_dwt adds the weight gradient, transposed (K × ldw), and
// when db is not NULL the bias gradient (ldt wide), from one image group.
// The bias sums are 8-lane chains at both widths: the same bits.
AVX2 static void dwt_bias(float *db, const float *dyt, long ldt, long q) {
	for (long j = 0; j < ldt; j += 8) {
		__m256 s = _mm256_setzero_ps();
		for (long p = 0; p < q; p++) s = _mm256_add_ps(s, _mm256_loadu_ps(dyt + p * ldt + j));
		_mm256_storeu_ps(db + j, _mm256_add_ps(_mm256_loadu_ps(db + j), s));
	}
}

int kiln_conv_shift_dwt(float *dwt, long ldw, float *db, const float *dyt, long ldt, long nr, long nt, const float *b,
                        long ldbr, long kw, long base, long sh, long sw, long nrows, long rowlen, long brs, int vl) {
	if (nr * nt > MAXK || ldt % 8 != 0) return 0;
	(vl == 16 ? shift_dwt_16 : shift_dwt_8)(dwt, ldw, dyt, ldt, nr, nt, b, ldbr, kw, base, sh, sw, nrows, rowlen, brs);
	if (db) dwt_bias(db, dyt, ldt, nrows * rowlen);
	return 1;
}

// kiln_conv_copy_rows copies np planes of nrows rows of rowlen floats, the
// rows drow (srow) apart and the planes dplane (splane) apart: the padded
// input, the wide frame narrowed, the output gradient into its wide frame.
// Go's copy per row costs more than the copy on rows of a few dozen floats.
void kiln_conv_copy_rows(float *dst, long dplane, long drow, const float *src, long splane, long srow, long np,
                         long nrows, long rowlen) {
	for (long p = 0; p < np; p++)
		for (long y = 0; y < nrows; y++)
			memcpy(dst + p * dplane + y * drow, src + p * splane + y * srow, rowlen * sizeof(float));
}

// kiln_conv_add_row_sums adds to db[r] the sum of row r of dy (rows of len
// floats, one after another) for r < rows: a convolution's bias gradient,
// a channel's plane per row. Element j goes to lane j mod 32 (four ymm
// accumulators, the tail one float at a time), then the lanes meet in a
// fixed tree: one order at every ISA level, about eight floats a cycle
// where Go's four scalar sums did one (2% of LeNet's step at b128).
AVX2 void kiln_conv_add_row_sums(float *db, const float *dy, long rows, long len) {
	for (long r = 0; r < rows; r++) {
		const float *x = dy + r * len;
		__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
		long j = 0;
		for (; j + 32 <= len; j += 32) {
			s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + j));
			s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + j + 8));
			s2 = _mm256_add_ps(s2, _mm256_loadu_ps(x + j + 16));
			s3 = _mm256_add_ps(s3, _mm256_loadu_ps(x + j + 24));
		}
		float lane[32];
		_mm256_storeu_ps(lane, s0);
		_mm256_storeu_ps(lane + 8, s1);
		_mm256_storeu_ps(lane + 16, s2);
		_mm256_storeu_ps(lane + 24, s3);
		for (; j < len; j++) lane[j & 31] += x[j];
		for (int w = 16; w > 0; w /= 2)
			for (int l = 0; l < w; l++) lane[l] += lane[l + w];
		db[r] += lane[0];
	}
}

// kiln_conv_dyt writes dyT[q, co] = dy[co, ·] for co < m (columns m..ldt-1
// are left alone, zero in the caller's scratch): q runs over the output rows
// (oh, ow) → oh·qrow + ow, with qrow = OW for row-by-row segments or Wp for
// the wide frame (whose junk rows stay zero). With qrow = OW both sides are
// one run of oh·ow and go 8×8 blocks at a time.
AVX2 void kiln_conv_dyt(float *dyt, long ldt, const float *dy, long m, long oh, long ow, long qrow) {
	const long q = oh * ow;
	long co = 0, p0 = 0;
	if (qrow == ow) {
		for (; co + 8 <= m; co += 8)
			for (long p = 0; p + 8 <= q; p += 8) kiln_transpose8(dyt + p * ldt + co, ldt, dy + co * q + p, q);
		p0 = q & ~7L; // the columns past the last block, for the channels done so far
		for (long c = 0; c < co; c++)
			for (long p = p0; p < q; p++) dyt[p * ldt + c] = dy[c * q + p];
	}
	for (; co < m; co++) {
		const float *d = dy + co * q;
		for (long y = 0; y < oh; y++)
			for (long x = 0; x < ow; x++) dyt[(y * qrow + x) * ldt + co] = d[y * ow + x];
	}
}

#else // CONV_VL
// ---------------------------------------------------------------------------
// The kernels, once per vector width VL: L(name) is name_VL.

#if CONV_VL == 8
#define TARGET __attribute__((target("avx2,fma")))
#define V __m256
#define VMASK __m256i
#define V_ZERO() _mm256_setzero_ps()
#define V_BCAST(p) _mm256_broadcast_ss(p)
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_LOADM(p, m) _mm256_maskload_ps(p, m)
#define V_STORE(p, v) _mm256_storeu_ps(p, v)
#define V_STOREM(p, m, v) _mm256_maskstore_ps(p, m, v)
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_ADD(a, b) _mm256_add_ps(a, b)
#define V_NOMASK() _mm256_setzero_si256()
#define V_BELOW(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define V_HSUM(v) hsum8(v)
#define L(name) name##_8
#define TMR 6
#define MK_GET(tab, i) _mm256_loadu_si256((const __m256i *)(tab) + (i))
#define MK_FULL(k) (_mm256_movemask_ps(_mm256_castsi256_ps(k)) == 0xFF)

TARGET INLINE float hsum8(__m256 v) {
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}
#else
#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define V __m512
#define VMASK __mmask16
#define V_ZERO() _mm512_setzero_ps()
#define V_BCAST(p) _mm512_set1_ps(*(p))
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_LOADM(p, m) _mm512_maskz_loadu_ps(m, p)
#define V_STORE(p, v) _mm512_storeu_ps(p, v)
#define V_STOREM(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_ADD(a, b) _mm512_add_ps(a, b)
#define V_NOMASK() ((__mmask16)0)
#define V_BELOW(n) ((__mmask16)((1u << (n)) - 1))
#define V_HSUM(v) _mm512_reduce_add_ps(v)
#define L(name) name##_16
#define TMR 8
#define MK_GET(tab, i) (((const __mmask16 *)(tab))[i])
#define MK_FULL(k) ((k) == (__mmask16)0xFFFF)
#endif
#define VL CONV_VL

TARGET INLINE void L(tile)(const int mr, const int nv, const int m0, const int m1, long k, const float *ap,
                           const float *b, long boff, const int32_t *koff, const float *init, float *c, long coff,
                           long ldc, VMASK mask) {
	ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5) ACC_DECL(6) ACC_DECL(7)
	for (long p = 0; p < k; p++) {
		const float *bp = b + koff[p];
		V b0 = V_GET(bp, m0), b1 = V_ZERO();
		if (nv == 2) b1 = V_GET(bp + boff, m1);
		const float *a = ap + p * TMR;
		ACC_FMA(0) ACC_FMA(1) ACC_FMA(2) ACC_FMA(3) ACC_FMA(4) ACC_FMA(5) ACC_FMA(6) ACC_FMA(7)
	}
	ACC_STORE(0) ACC_STORE(1) ACC_STORE(2) ACC_STORE(3) ACC_STORE(4) ACC_STORE(5) ACC_STORE(6) ACC_STORE(7)
}

// tile_cols computes a tile over ncols ≤ 2·VL adjacent columns; over says
// that b may be read a whole vector past them (AVX2 uses it).
TARGET static void L(tile_cols)(int mr, int ncols, int over, long k, const float *ap, const float *b,
                                const int32_t *koff, const float *init, float *c, long ldc) {
	const long boff = VL, coff = VL;
	over = over && VL == 8;
	if (ncols == 2 * VL) {
		VMASK mask = V_NOMASK();
		TILE_CASES(2, 0, 0)
	} else if (ncols > VL) {
		VMASK mask = V_BELOW(ncols - VL);
		if (over)
			TILE_CASES(2, 0, 2)
		else
			TILE_CASES(2, 0, 1)
	} else if (ncols == VL) {
		VMASK mask = V_NOMASK();
		TILE_CASES(1, 0, 0)
	} else {
		VMASK mask = V_BELOW(ncols);
		if (over)
			TILE_CASES(1, 2, 0)
		else
			TILE_CASES(1, 1, 0)
	}
}

// tile_rows2 computes a tile over two rows of ncols ≤ VL columns, the second
// boff after the first in b and coff in c: short rows still fill the 2·mr
// accumulators that keep both FMA pipes busy.
TARGET static void L(tile_rows2)(int mr, int ncols, int over, long k, const float *ap, const float *b, long boff,
                                 const int32_t *koff, const float *init, float *c, long coff, long ldc) {
	if (ncols == VL) {
		VMASK mask = V_NOMASK();
		TILE_CASES(2, 0, 0)
	} else if (over && VL == 8) {
		VMASK mask = V_BELOW(ncols);
		TILE_CASES(2, 2, 2)
	} else {
		VMASK mask = V_BELOW(ncols);
		TILE_CASES(2, 1, 1)
	}
}

// tile_row computes one row of C's rows [0, mr), tile after tile.
TARGET static void L(tile_row)(int mr, long rowlen, long room, long k, const float *ap, const float *b,
                               const int32_t *koff, const float *init, float *c, long ldc) {
	for (long j = 0; j < rowlen; j += 2 * VL) {
		const int nc = rowlen - j < 2 * VL ? (int)(rowlen - j) : 2 * VL;
		L(tile_cols)(mr, nc, j + 2 * VL <= room, k, ap, b + j, koff, init, c + j, ldc);
	}
}

TARGET static void L(shift_gemm)(float *c, long ldc, long m, const float *ap, long nr, long nt, const float *b,
                                 long blen, long ldbr, long kw, long base, long sh, long sw, const float *init,
                                 long nrows, long rowlen, long brs, long crs) {
	const long k = nr * nt;
	int32_t koff[k];
	offsets(koff, nr, nt, ldbr, kw, base, sh, sw);
	const long reach = blen - max_offset(koff, k);
	for (long p = 0; p < m; p += TMR) {
		const int mr = m - p < TMR ? (int)(m - p) : TMR;
		const float *app = ap + p * k;
		const float *ini = init ? init + p : 0;
		float *cp = c + p * ldc;
		long y = 0;
		for (; rowlen <= VL && y + 1 < nrows; y += 2)
			L(tile_rows2)(mr, (int)rowlen, (y + 1) * brs + VL <= reach, k, app, b + y * brs, brs, koff, ini,
			              cp + y * crs, crs, ldc);
		for (; y < nrows; y++)
			L(tile_row)(mr, rowlen, reach - y * brs, k, app, b + y * brs, koff, ini, cp + y * crs, ldc);
	}
}

TARGET static void L(shift_gemm_dx)(float *c, long ldc, long m, const float *ap, long nr, long khn, long kw,
                                    const float *b, long blen, long ldbr, long base, long sh, long sw, long nrows,
                                    long rowlen, long brs, long crs, long ph, long dh, long oh) {
	const long nt = khn * kw, k = nr * nt;
	int32_t koff[k];
	for (long t = 0; t < nt; t++)
		for (long r = 0; r < nr; r++) koff[t * nr + r] = (int32_t)(r * ldbr + base + (t / kw) * sh + (t % kw) * sw);
	const long reach = blen - max_offset(koff, k);
	const int pairs = rowlen <= VL;
	for (long p = 0; p < m; p += TMR) {
		const int mr = m - p < TMR ? (int)(m - p) : TMR;
		const float *app = ap + p * k;
		float *cp = c + p * ldc;
		for (long y = 0; y < nrows; y++) {
			long k0, k1, n0, n1;
			dx_rows(y, ph, dh, oh, khn, kw * nr, &k0, &k1);
			const float *apk = app + k0 * TMR, *by = b + y * brs;
			if (pairs && y + 1 < nrows) {
				dx_rows(y + 1, ph, dh, oh, khn, kw * nr, &n0, &n1);
				if (n0 == k0 && n1 == k1) { // the same taps: one tile for both rows
					L(tile_rows2)(mr, (int)rowlen, (y + 1) * brs + VL <= reach, k1 - k0, apk, by, brs, koff + k0, 0,
					              cp + y * crs, crs, ldc);
					y++;
					continue;
				}
			}
			L(tile_row)(mr, rowlen, reach - y * brs, k1 - k0, apk, by, koff + k0, 0, cp + y * crs, ldc);
		}
	}
}

// dtile adds to dw rows [0, mr) × k columns [0, nc) the dot products of a's
// rows with the shifted runs of b over every segment.
TARGET INLINE void L(dtile)(const int mr, const int nc, const float *a, long lda, const float *b, const int32_t *koff,
                            long nrows, long rowlen, long ars, long brs, float *dw, long ldw) {
	D_DECL(0) D_DECL(1) D_DECL(2) D_DECL(3) D_DECL(4) D_DECL(5)
	const long full = rowlen & ~(long)(VL - 1);
	const VMASK mask = V_BELOW((int)(rowlen - full));
	for (long y = 0; y < nrows; y++) {
		const float *ay = a + y * ars;
		const float *by = b + y * brs;
		long q = 0;
		for (; q < full; q += VL) D_STEP(0)
		if (q < rowlen) D_STEP(1)
	}
	D_OUT_ROW(0) D_OUT_ROW(1) D_OUT_ROW(2) D_OUT_ROW(3) D_OUT_ROW(4) D_OUT_ROW(5)
}

// dtile_any runs a tile of mr rows by nc taps (shift_dw's choice: at most
// 12 accumulators at AVX2, 24 at AVX-512), each accumulator its own
// element's chain over q, so the tile's shape changes no bit.
TARGET static void L(dtile_any)(int mr, int nc, const float *a, long lda, const float *b, const int32_t *koff,
                                long nrows, long rowlen, long ars, long brs, float *dw, long ldw) {
#define DTILE_CASE(MR_, NC_)                                                          \
	case (MR_) * 8 + (NC_): DTILE(MR_, NC_); break;
	switch (mr * 8 + nc) {
		DTILE_CASE(1, 1) DTILE_CASE(1, 2) DTILE_CASE(1, 3) DTILE_CASE(1, 4) DTILE_CASE(1, 5) DTILE_CASE(1, 6)
		DTILE_CASE(2, 1) DTILE_CASE(2, 2) DTILE_CASE(2, 3) DTILE_CASE(2, 4) DTILE_CASE(2, 5) DTILE_CASE(2, 6)
		DTILE_CASE(3, 1) DTILE_CASE(3, 2) DTILE_CASE(3, 3) DTILE_CASE(3, 4)
		DTILE_CASE(4, 1) DTILE_CASE(4, 2) DTILE_CASE(4, 3)
#if CONV_VL == 16
		DTILE_CASE(4, 4) DTILE_CASE(4, 5) DTILE_CASE(4, 6) DTILE_CASE(3, 5) DTILE_CASE(3, 6)
		DTILE_CASE(5, 1) DTILE_CASE(5, 2) DTILE_CASE(5, 3) DTILE_CASE(5, 4)
		DTILE_CASE(6, 1) DTILE_CASE(6, 2) DTILE_CASE(6, 3) DTILE_CASE(6, 4)
#endif
	default: __builtin_trap(); // a shape shift_dw never asks for
	}
#undef DTILE_CASE
}

TARGET static void L(shift_dw)(float *dw, long ldw, long m, const float *a, long lda, long nr, long nt,
                               const float *b, long ldbr, long kw, long base, long sh, long sw, long nrows,
                               long rowlen, long ars, long brs) {
	const long k = nr * nt;
	int32_t koff[k];
	offsets(koff, nr, nt, ldbr, kw, base, sh, sw);
	for (long i = 0, mr; i < m; i += mr) {
		mr = VL == 8 ? dw_rows(m - i) : dw_rows_zmm(m - i);
		const long dnr = VL == 16 ? (mr >= 5 ? 4 : 6) : mr <= 2 ? 6 : 12 / mr;
		for (long j = 0; j < k; j += dnr) {
			const int nc = k - j < dnr ? (int)(k - j) : (int)dnr;
			L(dtile_any)((int)mr, nc, a + i * lda, lda, b, koff + j, nrows, rowlen, ars, brs, dw + i * ldw + j,
			             ldw);
		}
	}
}

// ---------------------------------------------------------------------------
// Weight gradient as a product with the output gradient transposed: with
// dyT (Q × ldt, ldt a multiple of 8, zero past Cout) holding dout[co, q] at
// [q, co],
//
//	dwT[k, co] += Σ_q b[koff[k] + seg(q)] · dyT[q, co]
//
// in TMR×2·VL register tiles that stay in registers over all of Q: no
// horizontal sums, no reloads of partial results. q runs over the segments
// in order (q = y·rowlen + x reads b at y·brs + x).

TARGET INLINE void L(wtile)(const int mr, const int nv, const int m0, const int m1, const float *b,
                            const int32_t *koff, const float *dyt, long ldt, long nrows, long rowlen, long brs,
                            float *c, long ldw, VMASK mask) {
	W_DECL(0) W_DECL(1) W_DECL(2) W_DECL(3) W_DECL(4) W_DECL(5) W_DECL(6) W_DECL(7)
	const float *dq = dyt;
	for (long y = 0; y < nrows; y++) {
		const float *by = b + y * brs;
		W_PTR(0) W_PTR(1) W_PTR(2) W_PTR(3) W_PTR(4) W_PTR(5) W_PTR(6) W_PTR(7)
		for (long x = 0; x < rowlen; x++, dq += ldt) {
			V d0 = V_GET(dq, m0), d1 = d0;
			if (nv == 2) d1 = V_GET(dq + VL, m1);
			W_FMA(0) W_FMA(1) W_FMA(2) W_FMA(3) W_FMA(4) W_FMA(5) W_FMA(6) W_FMA(7)
		}
	}
	W_OUT(0) W_OUT(1) W_OUT(2) W_OUT(3) W_OUT(4) W_OUT(5) W_OUT(6) W_OUT(7)
}

// wtile_cols adds a tile over ncols ≤ 2·VL adjacent output channels.
TARGET static void L(wtile_cols)(int mr, int ncols, const float *b, const int32_t *koff, const float *dyt, long ldt,
                                 long nrows, long rowlen, long brs, float *c, long ldw) {
	if (ncols == 2 * VL) {
		VMASK mask = V_NOMASK();
		WTILE_CASES(2, 0, 0)
	} else if (ncols > VL) {
		VMASK mask = V_BELOW(ncols - VL);
		WTILE_CASES(2, 0, 1)
	} else if (ncols == VL) {
		VMASK mask = V_NOMASK();
		WTILE_CASES(1, 0, 0)
	} else {
		VMASK mask = V_BELOW(ncols);
		WTILE_CASES(1, 1, 0)
	}
}

TARGET static void L(shift_dwt)(float *dwt, long ldw, const float *dyt, long ldt, long nr, long nt, const float *b,
                                long ldbr, long kw, long base, long sh, long sw, long nrows, long rowlen, long brs) {
	const long k = nr * nt;
	int32_t koff[k];
	offsets(koff, nr, nt, ldbr, kw, base, sh, sw);
	for (long i = 0; i < k; i += TMR) {
		const int mr = k - i < TMR ? (int)(k - i) : TMR;
		for (long j = 0; j < ldt; j += 2 * VL) {
			const int nc = ldt - j < 2 * VL ? (int)(ldt - j) : 2 * VL;
			L(wtile_cols)(mr, nc, b, koff + i, dyt + j, ldt, nrows, rowlen, brs, dwt + i * ldw + j, ldw);
		}
	}
}

// ---------------------------------------------------------------------------
// Forward with the output channels in the lanes: a few adjacent pixels of an
// output row at a time by a panel of 2·VL channels,
//
//	yT[q, o] = init[o] + Σ_k wp[k, o] · b[pix(q) + koff[k]]
//
// each pixel's input broadcast, the panel's weights (kiln_conv_pack with mr
// = 2·VL: k-major, channels inside) loaded whole. Each element is the same
// FMA chain in the same k order as shift_gemm's (the product's operands
// swapped, which an FMA does not see): the same bits. It pays where output
// rows are short and channels many: LeNet's second convolution writes rows of
// 12 (or 10), which fill 75% (62%) of shift_gemm's lanes, and 16 channels,
// which fill all of these. A row's tiles are tw ≤ TMR pixels wide (the
// caller's choice), so that each pixel's read is a constant offset from the
// tile's. yT (q·ldt + o,
// ldt ≥ the channels rounded up to VL) is the caller's scratch; oc_gemm
// transposes it into C.
#define O_DECL(I) V o##I##0 = i0, o##I##1 = i1;
#define O_FMA(I)                                                                      \
	if (mr > I) {                                                                     \
		V xv = V_BCAST(bk + I);                                                       \
		o##I##0 = V_FMA(xv, w0, o##I##0);                                             \
		if (nv == 2) o##I##1 = V_FMA(xv, w1, o##I##1);                                \
	}
#define O_OUT(I)                                                                      \
	if (mr > I) {                                                                     \
		V_STORE(yt + I * ldt, o##I##0);                                               \
		if (nv == 2) V_STORE(yt + I * ldt + VL, o##I##1);                             \
	}

TARGET INLINE void L(otile)(const int mr, const int nv, long k, const float *wp, const float *b, const int32_t *koff,
                            const float *ini, float *yt, long ldt) {
	const V i0 = V_LOAD(ini), i1 = V_LOAD(ini + VL);
	O_DECL(0) O_DECL(1) O_DECL(2) O_DECL(3) O_DECL(4) O_DECL(5) O_DECL(6) O_DECL(7)
	for (long p = 0; p < k; p++) {
		const float *bk = b + koff[p];
		const V w0 = V_LOAD(wp + p * 2 * VL), w1 = nv == 2 ? V_LOAD(wp + p * 2 * VL + VL) : V_ZERO();
		O_FMA(0) O_FMA(1) O_FMA(2) O_FMA(3) O_FMA(4) O_FMA(5) O_FMA(6) O_FMA(7)
	}
	O_OUT(0) O_OUT(1) O_OUT(2) O_OUT(3) O_OUT(4) O_OUT(5) O_OUT(6) O_OUT(7)
}

#define OTILE(MR_, NV) L(otile)(MR_, NV, k, wo, b + y * brs + x, koff, ini, yt + (y * rowlen + x) * ldt + o, ldt)
#define OTILE_CASES(NV)              \
	switch (mr) {                    \
	case 1: OTILE(1, NV); break;     \
	case 2: OTILE(2, NV); break;     \
	case 3: OTILE(3, NV); break;     \
	case 4: OTILE(4, NV); break;     \
	case 5: OTILE(5, NV); break;     \
	case 6: OTILE(6, NV); break;     \
	case 7: OTILE(7, NV); break;     \
	default: OTILE(8, NV); break;    \
	}

TARGET static void L(oc_gemm)(float *c, long ldc, long m, const float *wp, long nr, long nt, const float *b,
                              long ldbr, long kw, long base, long sh, long sw, const float *init, long nrows,
                              long rowlen, long brs, float *yt, long ldt, long tw) {
	const long k = nr * nt, np = nrows * rowlen;
	int32_t koff[k];
	offsets(koff, nr, nt, ldbr, kw, base, sh, sw);
	float ini[2 * VL];
	for (long o = 0; o < m; o += 2 * VL) {
		const long mo = m - o < 2 * VL ? m - o : 2 * VL;
		for (long j = 0; j < 2 * VL; j++) ini[j] = init && j < mo ? init[o + j] : 0;
		const float *wo = wp + o * k;
		for (long y = 0; y < nrows; y++)
			for (long x = 0; x < rowlen; x += tw) {
				const int mr = rowlen - x < tw ? (int)(rowlen - x) : (int)tw;
				if (mo > VL)
					OTILE_CASES(2)
				else
					OTILE_CASES(1)
			}
	}
	// yT → C, 8×8 blocks where both sides have them (C's rows are the plane's
	// pixels, one run of np).
	long o = 0;
	for (; o + 8 <= m; o += 8)
		for (long q = 0; q + 8 <= np; q += 8) kiln_transpose8(c + o * ldc + q, ldc, yt + q * ldt + o, ldt);
	const long q0 = np & ~7L;
	for (long j = 0; j < m; j++)
		for (long q = j < o ? q0 : 0; q < np; q++) c[j * ldc + q] = yt[q * ldt + j];
}

// ---------------------------------------------------------------------------
// A "same" stride-1 convolution over the planes laid flat, without a padded
// copy: C[i, q] = init[i] + Σ_(t,r) A[i, (t,r)] · b[r·ldbr + q + toff[t]],
// the term of tap t taken only in the lanes where its read is inside the
// plane (mk: the lane masks of each vector of columns, per tap; masked lanes
// load zero and fault nothing). k runs tap-major within blocks of FLAT_RB
// planes (kiln_conv_pack) so that a tap's two masks are read once per block:
// read per k, they cost a tenth of the product. Each element is one FMA
// chain in that order, at both widths.
TARGET INLINE void L(ftile)(const int mr, const int nv, const int m0, const int m1, long nr, long nt,
                            const float *ap, const float *b, long ldbr, const int32_t *toff, const void *mk0,
                            const void *mk1, const float *init, float *c, long ldc, VMASK mask, int inner) {
	const long coff = VL;
	(void)inner;
	ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5) ACC_DECL(6) ACC_DECL(7)
	for (long r0 = 0; r0 < nr; r0 += FLAT_RB) {
		const long len = nr - r0 < FLAT_RB ? nr - r0 : FLAT_RB;
		const float *br = b + r0 * ldbr, *ab = ap + r0 * nt * TMR;
		for (long t = 0; t < nt; t++) {
			const VMASK k0 = MK_GET(mk0, t), k1 = nv == 2 ? MK_GET(mk1, t) : V_NOMASK();
			const float *bp = br + toff[t], *a = ab + t * len * TMR;
			if (MK_FULL(k0) && (nv == 1 || MK_FULL(k1))) { // inside the plane: plain loads cost less
				for (long r = 0; r < len; r++, bp += ldbr, a += TMR) {
					V b0 = V_LOAD(bp), b1 = V_ZERO();
					if (nv == 2) b1 = V_LOAD(bp + VL);
					ACC_FMA(0) ACC_FMA(1) ACC_FMA(2) ACC_FMA(3) ACC_FMA(4) ACC_FMA(5) ACC_FMA(6) ACC_FMA(7)
				}
				continue;
			}
#if CONV_VL == 8
			// AVX2 has too few registers to hold the masks beside the tile,
			// and VMASKMOVPS costs a third of the product on Zen 4: inside
			// the plane (inner: every read of the tile within its planes)
			// whole loads are safe and AND with the masks in memory instead.
			// The masks are read again at each step: the empty asm hides that
			// they do not change, or gcc would keep them in two of the 16
			// registers and spill the accumulators instead.
			const float *f0 = (const float *)mk0 + 8 * t, *f1 = (const float *)mk1 + 8 * t;
			if (inner) {
				for (long r = 0; r < len; r++, bp += ldbr, a += TMR) {
					__asm__("" : "+r"(f0), "+r"(f1));
					V b0 = _mm256_and_ps(V_LOAD(bp), V_LOAD(f0)), b1 = V_ZERO();
					if (nv == 2) b1 = _mm256_and_ps(V_LOAD(bp + VL), V_LOAD(f1));
					ACC_FMA(0) ACC_FMA(1) ACC_FMA(2) ACC_FMA(3) ACC_FMA(4) ACC_FMA(5) ACC_FMA(6) ACC_FMA(7)
				}
				continue;
			}
			for (long r = 0; r < len; r++, bp += ldbr, a += TMR) {
				__asm__("" : "+r"(f0), "+r"(f1));
				V b0 = V_LOADM(bp, _mm256_castps_si256(V_LOAD(f0))), b1 = V_ZERO();
				if (nv == 2) b1 = V_LOADM(bp + VL, _mm256_castps_si256(V_LOAD(f1)));
				ACC_FMA(0) ACC_FMA(1) ACC_FMA(2) ACC_FMA(3) ACC_FMA(4) ACC_FMA(5) ACC_FMA(6) ACC_FMA(7)
			}
			continue;
#endif
			for (long r = 0; r < len; r++, bp += ldbr, a += TMR) {
				V b0 = V_LOADM(bp, k0), b1 = V_ZERO();
				if (nv == 2) b1 = V_LOADM(bp + VL, k1);
				ACC_FMA(0) ACC_FMA(1) ACC_FMA(2) ACC_FMA(3) ACC_FMA(4) ACC_FMA(5) ACC_FMA(6) ACC_FMA(7)
			}
		}
	}
	ACC_STORE(0) ACC_STORE(1) ACC_STORE(2) ACC_STORE(3) ACC_STORE(4) ACC_STORE(5) ACC_STORE(6) ACC_STORE(7)
}

#define FTILE_ARGS nr, nt, ap, b, ldbr, toff, mk0, mk1, init, c, ldc, mask, inner
#define FTILE_CASES(NV, M0, M1)                                                         \
	switch (mr) {                                                                       \
	case 1: L(ftile)(1, NV, M0, M1, FTILE_ARGS); break;                                 \
	case 2: L(ftile)(2, NV, M0, M1, FTILE_ARGS); break;                                 \
	case 3: L(ftile)(3, NV, M0, M1, FTILE_ARGS); break;                                 \
	case 4: L(ftile)(4, NV, M0, M1, FTILE_ARGS); break;                                 \
	case 5: L(ftile)(5, NV, M0, M1, FTILE_ARGS); break;                                 \
	case 6: L(ftile)(6, NV, M0, M1, FTILE_ARGS); break;                                 \
	case 7: L(ftile)(7, NV, M0, M1, FTILE_ARGS); break;                                 \
	default: L(ftile)(8, NV, M0, M1, FTILE_ARGS); break;                                \
	}

// ftile_cols runs a tile over the ncols ≤ 2·VL columns from c (and b): whole
// vectors stored whole, a last short one under the mask.
TARGET static void L(ftile_cols)(int mr, int ncols, long nr, long nt, const float *ap, const float *b, long ldbr,
                                 const int32_t *toff, const void *mk0, const void *mk1, const float *init, float *c,
                                 long ldc, int inner) {
	if (ncols == 2 * VL) {
		VMASK mask = V_NOMASK();
		FTILE_CASES(2, 0, 0)
	} else if (ncols > VL) {
		VMASK mask = V_BELOW(ncols - VL);
		FTILE_CASES(2, 0, 1)
	} else if (ncols == VL) {
		VMASK mask = V_NOMASK();
		FTILE_CASES(1, 0, 0)
	} else {
		VMASK mask = V_BELOW(ncols);
		FTILE_CASES(1, 1, 0)
	}
}

// flat_gemm: C (m × nq, rows ldc apart) over the flat planes of b, masks
// holding nt masks per vector of VL columns (flat_masks).
TARGET static void L(flat_gemm)(float *c, long ldc, long m, const float *ap, long nr, long nt, const float *b,
                                long ldbr, const int32_t *toff, const void *masks, const float *init, long nq) {
	const long k = nr * nt, msz = VL == 16 ? sizeof(__mmask16) : sizeof(__m256i);
	long reach = 0; // the farthest a tap reads from its column
	for (long t = 0; t < nt; t++) reach = toff[t] > reach ? toff[t] : -toff[t] > reach ? -toff[t] : reach;
	for (long p = 0; p < m; p += TMR) {
		const int mr = m - p < TMR ? (int)(m - p) : TMR;
		const float *app = ap + p * k, *ini = init ? init + p : 0;
		for (long q = 0; q < nq; q += 2 * VL) {
			const int nc = nq - q < 2 * VL ? (int)(nq - q) : 2 * VL;
			const char *mk = (const char *)masks + q / VL * nt * msz;
			const int inner = q >= reach && q + 2 * VL + reach <= nq;
			L(ftile_cols)(mr, nc, nr, nt, app, b + q, ldbr, toff, mk, mk + nt * msz, ini, c + p * ldc + q, ldc, inner);
		}
	}
}

// flat_masks writes, for each vector v of VL columns of an h×w plane and
// each tap t = (i, j) of a kh×kw kernel, the lanes q = v·VL + l (q < h·w) whose
// read at (y + di, x + dj) is inside the plane, with (di, dj) = (i − ph,
// j − pw) forward, or its negation for the input gradient (neg).
TARGET static void L(flat_masks)(void *dst, long h, long w, long kh, long kw, long ph, long pw, int neg) {
	const long nq = h * w, nv = (nq + VL - 1) / VL;
	for (long v = 0; v < nv; v++)
		for (long t = 0; t < kh * kw; t++) {
			long di = t / kw - ph, dj = t % kw - pw;
			if (neg) di = -di, dj = -dj;
			unsigned bits = 0;
			for (long l = 0; l < VL; l++) {
				const long q = v * VL + l, y = q / w + di, x = q % w + dj;
				bits |= (unsigned)(q < nq && y >= 0 && y < h && x >= 0 && x < w) << l;
			}
#if CONV_VL == 8 // a lane of all ones per bit, as VMASKMOVPS and the AND take it
			int32_t *lanes = (int32_t *)((char *)dst + (v * kh * kw + t) * sizeof(__m256i));
			for (long l = 0; l < VL; l++) lanes[l] = bits >> l & 1 ? -1 : 0;
#else
			((__mmask16 *)dst)[v * kh * kw + t] = (__mmask16)bits;
#endif
		}
}

#undef TARGET
#undef V
#undef VMASK
#undef V_ZERO
#undef V_BCAST
#undef V_LOAD
#undef V_LOADM
#undef V_STORE
#undef V_STOREM
#undef V_FMA
#undef V_ADD
#undef V_NOMASK
#undef V_BELOW
#undef V_HSUM
#undef L
#undef VL
#undef TMR
#undef MK_GET
#undef MK_FULL
#endif // CONV_VL
#endif // __x86_64__
