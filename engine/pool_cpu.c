// The 2×2, stride-2 max pool forward in C, because Go does not vectorise it:
// compare and blend, 8 outputs at a time with AVX2 and 16 with AVX-512.

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include <stdint.h>
#include <string.h>
#include "pool_cpu.h"
#include "isa_cpu.h"

// No code reads FP exception flags; with trapping math on, gcc will not turn
// the compares into blends (see activation_cpu.c).
#pragma GCC optimize("no-trapping-math")

#include <immintrin.h>

// lanes_avx2 is a mask of the first n of eight lanes (n ≤ 8).
__attribute__((target("avx2"))) static inline __m256i lanes_avx2(int n) {
	return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// store_lanes_avx2 stores v's first n lanes (n ≤ 8; none below 1) at p by
// whole 128-, 64- and 32-bit stores: VMASKMOVPS stores are slow on AMD
// (Zen 4: LeNet's second pool, rows of 5, ran 3.3× its AVX-512 time with
// them). Stores copy bits, so an int32 vector may go through it cast.
__attribute__((target("avx2"))) static inline void store_lanes_avx2(float *p, __m256 v, int n) {
	if (n >= 8) {
		_mm256_storeu_ps(p, v);
		return;
	}
	__m128 x = _mm256_castps256_ps128(v);
	if (n >= 4) {
		_mm_storeu_ps(p, x);
		x = _mm256_extractf128_ps(v, 1);
		p += 4;
		n -= 4;
	}
	if (n >= 2) {
		_mm_storel_pi((__m64 *)p, x);
		x = _mm_movehl_ps(x, x);
		p += 2;
		n -= 2;
	}
	if (n > 0) _mm_store_ss(p, x);
}

// pool8_avx2 picks eight outputs from two input rows' 16 columns each (p0,
// p1 from the first row, q0, q1 from the second), the first of j's window at
// flat index at0: the rows are split into even and odd columns (a, b from
// the first; c, d from the second) and the first largest picked with strict
// compares and blends, as in the scalar loop. It sets *idx to the picks'
// indices and ors a NaN's lanes into *nan.
__attribute__((target("avx2"))) static inline __m256 pool8_avx2(__m256 p0, __m256 p1, __m256 q0, __m256 q1,
                                                                 int32_t at0, int w, int relu, __m256i *idx,
                                                                 __m256 *nan) {
	const __m256i lane2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
	const __m256i one = _mm256_set1_epi32(1), wv = _mm256_set1_epi32(w);
	// shuffle_ps works per 128-bit lane; the 64-bit permute restores order.
	__m256 a = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(p0, p1, 0x88)), 0xd8));
	__m256 b = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(p0, p1, 0xdd)), 0xd8));
	__m256 c = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(q0, q1, 0x88)), 0xd8));
	__m256 d = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(q0, q1, 0xdd)), 0xd8));
	*nan = _mm256_or_ps(*nan, _mm256_or_ps(_mm256_cmp_ps(a, b, _CMP_UNORD_Q), _mm256_cmp_ps(c, d, _CMP_UNORD_Q)));
	__m256 m = a;
	__m256i at = _mm256_add_epi32(_mm256_set1_epi32(at0), lane2);
	__m256 gt = _mm256_cmp_ps(b, m, _CMP_GT_OQ);
	m = _mm256_blendv_ps(m, b, gt);
	__m256i res = _mm256_castps_si256(
	    _mm256_blendv_ps(_mm256_castsi256_ps(at), _mm256_castsi256_ps(_mm256_add_epi32(at, one)), gt));
	__m256i ac = _mm256_add_epi32(at, wv);
	gt = _mm256_cmp_ps(c, m, _CMP_GT_OQ);
	m = _mm256_blendv_ps(m, c, gt);
	res = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(res), _mm256_castsi256_ps(ac), gt));
	gt = _mm256_cmp_ps(d, m, _CMP_GT_OQ);
	m = _mm256_blendv_ps(m, d, gt);
	*idx = _mm256_castps_si256(
	    _mm256_blendv_ps(_mm256_castsi256_ps(res), _mm256_castsi256_ps(_mm256_add_epi32(ac, one)), gt));
	if (relu) m = _mm256_and_ps(m, _mm256_cmp_ps(m, _mm256_setzero_ps(), _CMP_GT_OQ));
	return m;
}

// pool_row_avx2 does one output row eight outputs at a time. With ow ≥ 8 the
// last eight overlap the previous block when ow is not a multiple of 8 (they
// are recomputed to the same values); a narrower row (LeNet's 10×10 planes)
// is one block read and written under lane masks, its missing columns zero.
// It returns non-zero when a NaN was met.
__attribute__((target("avx2"))) static int pool_row_avx2(float *restrict o, int32_t *restrict ai,
                                                          const float *r0, const float *r1, int32_t rowbase,
                                                          int w, int ow, int relu) {
	__m256 nan = _mm256_setzero_ps();
	__m256i idx;
	if (ow < 8) {
		const __m256i lo = lanes_avx2(2 * ow < 8 ? 2 * ow : 8), hi = lanes_avx2(2 * ow - 8);
		__m256 m = pool8_avx2(_mm256_maskload_ps(r0, lo), _mm256_maskload_ps(r0 + 8, hi),
		                      _mm256_maskload_ps(r1, lo), _mm256_maskload_ps(r1 + 8, hi), rowbase, w, relu, &idx,
		                      &nan);
		store_lanes_avx2(o, m, ow);
		if (ai) store_lanes_avx2((float *)ai, _mm256_castsi256_ps(idx), ow);
		return _mm256_movemask_ps(nan);
	}
	for (int j0 = 0; j0 < ow; j0 += 8) {
		const int j = j0 + 8 <= ow ? j0 : ow - 8;
		__m256 m = pool8_avx2(_mm256_loadu_ps(r0 + 2 * j), _mm256_loadu_ps(r0 + 2 * j + 8),
		                      _mm256_loadu_ps(r1 + 2 * j), _mm256_loadu_ps(r1 + 2 * j + 8), rowbase + 2 * j, w,
		                      relu, &idx, &nan);
		_mm256_storeu_ps(o + j, m);
		if (ai) _mm256_storeu_si256((__m256i *)(ai + j), idx);
	}
	return _mm256_movemask_ps(nan);
}

// block_masks16 sets the lane masks of a block of the 2×2 pool's row at
// AVX-512 with left outputs still to do: out its min(left, 16) outputs, lo
// and hi the twice as many inputs of each input row, over two vectors.
static inline void block_masks16(int left, __mmask16 *out, __mmask16 *lo, __mmask16 *hi) {
	const int n = left < 16 ? left : 16;
	*out = (__mmask16)((1u << n) - 1);
	*lo = (__mmask16)((1u << (2 * n < 16 ? 2 * n : 16)) - 1);
	*hi = (__mmask16)((1u << (2 * n > 16 ? 2 * n - 16 : 0)) - 1);
}

// pool_row_avx512 is pool_row_avx2 sixteen outputs at a time, the last
// block (or a row narrower than 16: LeNet's rows of 14 and 5) read and
// written under lane masks, which AVX-512 stores at full speed where
// VMASKMOVPS stores are slow (Zen 4: the AVX2 path's masked rows took 40% of
// LeNet's second pool): the even and odd columns come out of two-register
// permutes, the picks are mask blends; the same compares in the same order,
// so the same results.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2"))) static int pool_row_avx512(
    float *restrict o, int32_t *restrict ai, const float *r0, const float *r1, int32_t rowbase, int w, int ow,
    int relu) {
	__mmask16 nan = 0;
	const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
	const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
	const __m512i one = _mm512_set1_epi32(1), wv = _mm512_set1_epi32(w);
	for (int j = 0; j < ow; j += 16) {
		__mmask16 out, lo, hi;
		block_masks16(ow - j, &out, &lo, &hi);
		__m512 p0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * j), q0 = _mm512_maskz_loadu_ps(lo, r1 + 2 * j);
		__m512 p1 = _mm512_setzero_ps(), q1 = p1;
		if (hi) p1 = _mm512_maskz_loadu_ps(hi, r0 + 2 * j + 16), q1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * j + 16);
		__m512 a = _mm512_permutex2var_ps(p0, even, p1), b = _mm512_permutex2var_ps(p0, odd, p1);
		__m512 c = _mm512_permutex2var_ps(q0, even, q1), d = _mm512_permutex2var_ps(q0, odd, q1);
		nan |= _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(c, d, _CMP_UNORD_Q);
		__m512i at = _mm512_add_epi32(_mm512_set1_epi32(rowbase + 2 * j), even);
		__m512 m = a;
		__mmask16 gt = _mm512_cmp_ps_mask(b, m, _CMP_GT_OQ);
		m = _mm512_mask_blend_ps(gt, m, b);
		__m512i res = _mm512_mask_blend_epi32(gt, at, _mm512_add_epi32(at, one));
		__m512i ac = _mm512_add_epi32(at, wv);
		gt = _mm512_cmp_ps_mask(c, m, _CMP_GT_OQ);
		m = _mm512_mask_blend_ps(gt, m, c);
		res = _mm512_mask_blend_epi32(gt, res, ac);
		gt = _mm512_cmp_ps_mask(d, m, _CMP_GT_OQ);
		m = _mm512_mask_blend_ps(gt, m, d);
		res = _mm512_mask_blend_epi32(gt, res, _mm512_add_epi32(ac, one));
		if (relu) m = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_GT_OQ), m);
		_mm512_mask_storeu_ps(o + j, out, m);
		if (ai) _mm512_mask_storeu_epi32(ai + j, out, res);
	}
	return nan != 0;
}

// pool_plane does one plane. The first largest of a, b, c, d in that order
// wins, as in PyTorch; -0 and +0 tie. With relu, each output is then
// max(m, 0) (a zero is +0). Returns 0, with out unspecified, when the plane
// holds a NaN.
static int pool_plane(float* restrict out, int32_t* restrict am, const float* restrict x, int w, int oh, int ow,
                      int relu) {
	int nan = 0;
	const int avx2 = kiln_isa() >= KILN_ISA_AVX2, avx512 = kiln_isa() >= KILN_ISA_AVX512;
	for (int i = 0; i < oh; i++) {
		const float* r0 = x + 2 * i * w;
		const float* r1 = r0 + w;
		float* o = out + i * ow;
		int32_t rowbase = 2 * i * w;
		if (avx512) {
			nan |= pool_row_avx512(o, am ? am + i * ow : 0, r0, r1, rowbase, w, ow, relu);
			continue;
		}
		if (avx2) {
			nan |= pool_row_avx2(o, am ? am + i * ow : 0, r0, r1, rowbase, w, ow, relu);
			continue;
		}
		if (am) {
			int32_t* ai = am + i * ow;
			for (int j = 0; j < ow; j++) {
				float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
				nan |= (a != a) | (b != b) | (c != c) | (d != d);
				int32_t base = rowbase + 2 * j;
				float m = a;
				int32_t at = base;
				if (b > m) { m = b; at = base + 1; }
				if (c > m) { m = c; at = base + w; }
				if (d > m) { m = d; at = base + w + 1; }
				o[j] = relu && !(m > 0) ? 0.0f : m;
				ai[j] = at;
			}
		} else {
			for (int j = 0; j < ow; j++) {
				float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
				nan |= (a != a) | (b != b) | (c != c) | (d != d);
				float m = a;
				if (b > m) m = b;
				if (c > m) m = c;
				if (d > m) m = d;
				o[j] = relu && !(m > 0) ? 0.0f : m;
			}
		}
	}
	return !nan;
}

// The general max pool forward (any window, stride and padding) per plane:
// the order keys and the two passes of maxPlaneFloat32 in pool.go, so the
// same picks, with the 64-bit maxima in loops gcc vectorises at each ISA
// level. Each input becomes its order key (−0 and +0 both 0, NaN above +Inf)
// times 2³² plus 0x7fffffff minus its index, so a plain integer maximum is
// the window's first largest input. work holds h·w + (h+1)·ow int64s.
// Returns 0 when the plane holds a NaN.
#define BODY static inline __attribute__((always_inline))

static inline int64_t imax64(int64_t a, int64_t b) { return a > b ? a : b; }

// inside_cols sets [o0, o1) to the output columns whose window lies inside
// the row: their loops need no clipping.
static inline void inside_cols(int w, int ow, int kw, int sw, int pw, int *o0, int *o1) {
	*o0 = (pw + sw - 1) / sw;
	*o1 = w - kw + pw >= 0 ? (w - kw + pw) / sw + 1 : 0;
	if (*o1 > ow) *o1 = ow;
	if (*o0 > *o1) *o0 = *o1;
}

// rows_of clips output row r's window to the input's rows [*lo, *hi).
static inline void rows_of(int r, int sh, int ph, int kh, int h, int *lo, int *hi) {
	*lo = r * sh - ph;
	*hi = *lo + kh;
	*lo = *lo < 0 ? 0 : *lo;
	*hi = *hi > h ? h : *hi;
}

// clipped_max is the largest of the n keys from k[lo] that lie in [0, w).
static inline int64_t clipped_max(const int64_t *k, int lo, int n, int w) {
	int hi = lo + n;
	lo = lo < 0 ? 0 : lo;
	hi = hi > w ? w : hi;
	int64_t m = k[lo];
	for (int j = lo + 1; j < hi; j++) m = imax64(m, k[j]);
	return m;
}

BODY void kiln_maxpool_plane_body(float *restrict out, int32_t *restrict am, const float *restrict xf,
                                  int64_t *restrict work, const int *restrict g, int relu, int *restrict ok) {
	const int h = g[0], w = g[1], oh = g[2], ow = g[3], kh = g[4], kw = g[5], sh = g[6], sw = g[7], ph = g[8],
	          pw = g[9];
	const int32_t *x = (const int32_t *)xf;
	int64_t *keys = work, *rows = work + (long)h * w, *acc = rows + (long)h * ow;
	int64_t nan = 0;
	for (long i = 0; i < (long)h * w; i++) {
		int64_t kb = x[i];
		const int64_t sb = kb >> 63;
		kb &= 0x7fffffff;
		nan |= 0x7f800000 - kb;
		keys[i] = (int64_t)((uint64_t)((kb ^ sb) - sb) << 32) | (int64_t)(0x7fffffff - i);
	}
	if (nan < 0) {
		*ok = 0;
		return;
	}
	int o0, o1;
	inside_cols(w, ow, kw, sw, pw, &o0, &o1);
	for (int ih = 0; ih < h; ih++) {
		const int64_t *kr = keys + (long)ih * w;
		int64_t *rr = rows + (long)ih * ow;
		for (int o = 0; o < o0; o++) rr[o] = clipped_max(kr, o * sw - pw, kw, w);
		for (int o = o1; o < ow; o++) rr[o] = clipped_max(kr, o * sw - pw, kw, w);
		for (int o = o0; o < o1; o++) rr[o] = kr[o * sw - pw];
		for (int t = 1; t < kw; t++)
			for (int o = o0; o < o1; o++) rr[o] = imax64(rr[o], kr[o * sw - pw + t]);
	}
	for (int r = 0; r < oh; r++) {
		int lo, hi;
		rows_of(r, sh, ph, kh, h, &lo, &hi);
		for (int o = 0; o < ow; o++) acc[o] = rows[(long)lo * ow + o];
		for (int ih = lo + 1; ih < hi; ih++)
			for (int o = 0; o < ow; o++) acc[o] = imax64(acc[o], rows[(long)ih * ow + o]);
		for (int o = 0; o < ow; o++) {
			const int32_t at = 0x7fffffff - (int32_t)(acc[o] & 0xffffffff);
			const float v = xf[at];
			out[(long)r * ow + o] = relu && !(v > 0.0f) ? 0.0f : v;
			if (am) am[(long)r * ow + o] = at;
		}
	}
	*ok = 1;
}

KILN_ISA_DISPATCH(kiln_maxpool_plane,
                  (float *restrict out, int32_t *restrict am, const float *restrict xf, int64_t *restrict work,
                   const int *restrict g, int relu, int *restrict ok),
                  (out, am, xf, work, g, relu, ok))

// kiln_maxpool_f32 runs planes consecutive planes of the general max pool
// (geom: h, w, oh, ow, kh, kw, sh, sw, ph, pw) and returns how many it
// finished: fewer when the next one holds a NaN, for the caller to redo.
int kiln_maxpool_f32(float *restrict out, int32_t *restrict am, const float *restrict x, int64_t *restrict work,
                     int h, int w, int oh, int ow, int kh, int kw, int sh, int sw, int ph, int pw, int planes,
                     int relu) {
	const int g[10] = {h, w, oh, ow, kh, kw, sh, sw, ph, pw};
	const long in = (long)h * w, on = (long)oh * ow;
	for (int p = 0; p < planes; p++) {
		int ok = 0;
		kiln_maxpool_plane(out + p * on, am ? am + p * on : 0, x + p * in, work, g, relu, &ok);
		if (!ok) return p;
	}
	return planes;
}

// The general average pool (any window, stride and padding), PyTorch's
// AvgPool2d with count_include_pad: every window's sum is divided by kh·kw.
// The sums are separable, so they are taken in two passes as the max pool's
// maxima are: along each input row's windows into work (h·ow floats), then
// down each window's rows, in loops gcc vectorises at each ISA level (the
// Go loop summed each window on its own, 8 ns an output). Each output's sum
// starts from +0, so a window of −0s gives +0 as PyTorch's does.

// clipped_sum is the sum of the n inputs from x[lo] that lie in [0, w).
static inline float clipped_sum(const float *x, int lo, int n, int w) {
	int hi = lo + n;
	lo = lo < 0 ? 0 : lo;
	hi = hi > w ? w : hi;
	float s = 0.0f;
	for (int j = lo; j < hi; j++) s += x[j];
	return s;
}

// clipped_spread adds v to the n inputs from dx[lo] that lie in [0, w).
static inline void clipped_spread(float *dx, float v, int lo, int n, int w) {
	int hi = lo + n;
	lo = lo < 0 ? 0 : lo;
	hi = hi > w ? w : hi;
	for (int j = lo; j < hi; j++) dx[j] += v;
}

BODY void kiln_avgpool_plane_body(float *restrict out, const float *restrict x, float *restrict work,
                                  const int *restrict g) {
	const int h = g[0], w = g[1], oh = g[2], ow = g[3], kh = g[4], kw = g[5], sh = g[6], sw = g[7], ph = g[8],
	          pw = g[9];
	const float div = (float)(kh * kw);
	int o0, o1;
	inside_cols(w, ow, kw, sw, pw, &o0, &o1);
	for (int ih = 0; ih < h; ih++) {
		const float *xr = x + (long)ih * w;
		float *rr = work + (long)ih * ow;
		for (int o = 0; o < o0; o++) rr[o] = clipped_sum(xr, o * sw - pw, kw, w);
		for (int o = o1; o < ow; o++) rr[o] = clipped_sum(xr, o * sw - pw, kw, w);
		for (int o = o0; o < o1; o++) rr[o] = xr[o * sw - pw];
		for (int t = 1; t < kw; t++)
			for (int o = o0; o < o1; o++) rr[o] += xr[o * sw - pw + t];
	}
	for (int r = 0; r < oh; r++) {
		int lo, hi;
		rows_of(r, sh, ph, kh, h, &lo, &hi);
		float *o = out + (long)r * ow;
		for (int c = 0; c < ow; c++) o[c] = 0.0f;
		for (int ih = lo; ih < hi; ih++)
			for (int c = 0; c < ow; c++) o[c] += work[(long)ih * ow + c];
		for (int c = 0; c < ow; c++) o[c] /= div;
	}
}

// The backward, the same two passes the other way round: each output's
// gradient over kh·kw is summed down into the rows its window covers (into
// work), then each row's sums are spread along their windows.
BODY void kiln_avgpool_backward_plane_body(float *restrict dx, const float *restrict dout, float *restrict work,
                                           const int *restrict g) {
	const int h = g[0], w = g[1], oh = g[2], ow = g[3], kh = g[4], kw = g[5], sh = g[6], sw = g[7], ph = g[8],
	          pw = g[9];
	const float div = (float)(kh * kw);
	for (long i = 0; i < (long)h * ow; i++) work[i] = 0.0f;
	for (int r = 0; r < oh; r++) {
		int lo, hi;
		rows_of(r, sh, ph, kh, h, &lo, &hi);
		const float *d = dout + (long)r * ow;
		for (int ih = lo; ih < hi; ih++)
			for (int c = 0; c < ow; c++) work[(long)ih * ow + c] += d[c] / div;
	}
	int o0, o1;
	inside_cols(w, ow, kw, sw, pw, &o0, &o1);
	for (int ih = 0; ih < h; ih++) {
		float *dr = dx + (long)ih * w;
		const float *cr = work + (long)ih * ow;
		for (int j = 0; j < w; j++) dr[j] = 0.0f;
		for (int t = 0; t < kw; t++)
			for (int o = o0; o < o1; o++) dr[o * sw - pw + t] += cr[o];
		for (int o = 0; o < o0; o++) clipped_spread(dr, cr[o], o * sw - pw, kw, w);
		for (int o = o1; o < ow; o++) clipped_spread(dr, cr[o], o * sw - pw, kw, w);
	}
}

KILN_ISA_DISPATCH(kiln_avgpool_plane,
                  (float *restrict out, const float *restrict x, float *restrict work, const int *restrict g),
                  (out, x, work, g))
KILN_ISA_DISPATCH(kiln_avgpool_backward_plane,
                  (float *restrict dx, const float *restrict dout, float *restrict work, const int *restrict g),
                  (dx, dout, work, g))

// kiln_avgpool_f32 runs planes consecutive planes of the general average
// pool (geom as kiln_maxpool_f32's), forward or, with backward, dx from
// dout; work holds h·ow floats.
void kiln_avgpool_f32(float *restrict a, const float *restrict b, float *restrict work, int h, int w, int oh,
                      int ow, int kh, int kw, int sh, int sw, int ph, int pw, int planes, int backward) {
	const int g[10] = {h, w, oh, ow, kh, kw, sh, sw, ph, pw};
	const long in = (long)h * w, on = (long)oh * ow;
	for (int p = 0; p < planes; p++) {
		if (backward)
			kiln_avgpool_backward_plane(a + p * in, b + p * on, work, g);
		else
			kiln_avgpool_plane(a + p * on, b + p * in, work, g);
	}
}

// One row of the 2×2 backward: each gradient goes to the input its window
// picked and the window's other three inputs get 0, so the plane is written
// once instead of cleared and scattered into. 0 + g, as the scatter's sum
// into a cleared plane gives (−0 becomes +0). With keep (the fused ReLU's
// output), a gradient passes only where keep > 0. Each returns non-zero when
// an index lies outside its window. The picks are bit masks, not branches:
// the index is random on real data.
static inline float pick_if(int c, float v) {
	uint32_t u;
	memcpy(&u, &v, sizeof u);
	u &= -(uint32_t)c;
	memcpy(&v, &u, sizeof v);
	return v;
}

static int back_row_scalar(float *restrict r0, float *restrict r1, const float *restrict g,
                           const float *restrict keep, const int32_t *restrict am, int32_t rowbase, int w, int ow) {
	int bad = 0;
	for (int j = 0; j < ow; j++) {
		const int32_t pos = am[j] - (rowbase + 2 * j);
		float v = 0.0f + g[j];
		if (keep) v = pick_if(keep[j] > 0.0f, v);
		r0[2 * j] = pick_if(pos == 0, v);
		r0[2 * j + 1] = pick_if(pos == 1, v);
		r1[2 * j] = pick_if(pos == w, v);
		r1[2 * j + 1] = pick_if(pos == w + 1, v);
		bad |= (pos != 0) & (pos != 1) & (pos != w) & (pos != w + 1);
	}
	return bad;
}

// back8_avx2 spreads eight outputs' gradients v over their windows, the
// first of j's window at flat index at0: each input of the two rows gets v
// where argmax am picks it and 0 elsewhere, returned interleaved back into
// the rows' 16 columns each (r0lo, r0hi; r1lo, r1hi). It ors into *none the
// lanes whose index lies outside its window.
__attribute__((target("avx2"))) static inline void back8_avx2(__m256 v, __m256i am, int32_t at0, int w,
                                                              __m256 *r0lo, __m256 *r0hi, __m256 *r1lo,
                                                              __m256 *r1hi, __m256 *none) {
	const __m256i lane2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
	const __m256i one = _mm256_set1_epi32(1), wv = _mm256_set1_epi32(w), w1 = _mm256_set1_epi32(w + 1);
	const __m256i pos = _mm256_sub_epi32(am, _mm256_add_epi32(_mm256_set1_epi32(at0), lane2));
	const __m256 ka = _mm256_castsi256_ps(_mm256_cmpeq_epi32(pos, _mm256_setzero_si256()));
	const __m256 kb = _mm256_castsi256_ps(_mm256_cmpeq_epi32(pos, one));
	const __m256 kc = _mm256_castsi256_ps(_mm256_cmpeq_epi32(pos, wv));
	const __m256 kd = _mm256_castsi256_ps(_mm256_cmpeq_epi32(pos, w1));
	*none = _mm256_or_ps(*none, _mm256_andnot_ps(_mm256_or_ps(_mm256_or_ps(ka, kb), _mm256_or_ps(kc, kd)),
	                                             _mm256_castsi256_ps(_mm256_set1_epi32(-1))));
	const __m256 a = _mm256_and_ps(ka, v), b = _mm256_and_ps(kb, v);
	const __m256 c = _mm256_and_ps(kc, v), d = _mm256_and_ps(kd, v);
	// unpack works per 128-bit lane; permute2f128 puts the halves in order.
	const __m256 ablo = _mm256_unpacklo_ps(a, b), abhi = _mm256_unpackhi_ps(a, b);
	const __m256 cdlo = _mm256_unpacklo_ps(c, d), cdhi = _mm256_unpackhi_ps(c, d);
	*r0lo = _mm256_permute2f128_ps(ablo, abhi, 0x20);
	*r0hi = _mm256_permute2f128_ps(ablo, abhi, 0x31);
	*r1lo = _mm256_permute2f128_ps(cdlo, cdhi, 0x20);
	*r1hi = _mm256_permute2f128_ps(cdlo, cdhi, 0x31);
}

// back_row_avx2 does eight outputs at a time (the last eight overlap the
// previous block when ow is not a multiple of 8: the same values again); a
// row narrower than eight is one block read and written under lane masks.
__attribute__((target("avx2"))) static int back_row_avx2(float *restrict r0, float *restrict r1,
                                                          const float *restrict g, const float *restrict keep,
                                                          const int32_t *restrict am, int32_t rowbase, int w,
                                                          int ow) {
	__m256 none = _mm256_setzero_ps(), a, b, c, d;
	if (ow < 8) {
		const __m256i in = lanes_avx2(ow);
		__m256 v = _mm256_add_ps(_mm256_setzero_ps(), _mm256_maskload_ps(g, in));
		if (keep) v = _mm256_and_ps(v, _mm256_cmp_ps(_mm256_maskload_ps(keep, in), _mm256_setzero_ps(), _CMP_GT_OQ));
		back8_avx2(v, _mm256_maskload_epi32((const int *)am, in), rowbase, w, &a, &b, &c, &d, &none);
		const int nlo = 2 * ow < 8 ? 2 * ow : 8, nhi = 2 * ow - nlo;
		store_lanes_avx2(r0, a, nlo);
		store_lanes_avx2(r0 + 8, b, nhi);
		store_lanes_avx2(r1, c, nlo);
		store_lanes_avx2(r1 + 8, d, nhi);
		return _mm256_movemask_ps(_mm256_and_ps(none, _mm256_castsi256_ps(in))) != 0;
	}
	for (int j0 = 0; j0 < ow; j0 += 8) {
		const int j = j0 + 8 <= ow ? j0 : ow - 8;
		__m256 v = _mm256_add_ps(_mm256_setzero_ps(), _mm256_loadu_ps(g + j));
		if (keep) v = _mm256_and_ps(v, _mm256_cmp_ps(_mm256_loadu_ps(keep + j), _mm256_setzero_ps(), _CMP_GT_OQ));
		back8_avx2(v, _mm256_loadu_si256((const __m256i *)(am + j)), rowbase + 2 * j, w, &a, &b, &c, &d, &none);
		_mm256_storeu_ps(r0 + 2 * j, a);
		_mm256_storeu_ps(r0 + 2 * j + 8, b);
		_mm256_storeu_ps(r1 + 2 * j, c);
		_mm256_storeu_ps(r1 + 2 * j + 8, d);
	}
	return _mm256_movemask_ps(none) != 0;
}

// back_row_avx512 is back_row_avx2 sixteen outputs at a time (the last
// block masked): the four candidates' values are picked with compares and
// interleaved back into the two input rows with two-register permutes.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2"))) static int back_row_avx512(
    float *restrict r0, float *restrict r1, const float *restrict g, const float *restrict keep,
    const int32_t *restrict am, int32_t rowbase, int w, int ow) {
	const __m512i lane2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
	const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
	const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
	const __m512i one = _mm512_set1_epi32(1), wv = _mm512_set1_epi32(w), w1 = _mm512_set1_epi32(w + 1);
	__mmask16 bad = 0;
	for (int j = 0; j < ow; j += 16) {
		__mmask16 m, mlo, mhi;
		block_masks16(ow - j, &m, &mlo, &mhi);
		__m512 v = _mm512_add_ps(_mm512_setzero_ps(), _mm512_maskz_loadu_ps(m, g + j));
		if (keep) v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m, keep + j), _mm512_setzero_ps(),
		                                                     _CMP_GT_OQ), v);
		const __m512i pos = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(m, am + j),
		                                     _mm512_add_epi32(_mm512_set1_epi32(rowbase + 2 * j), lane2));
		const __mmask16 ka = _mm512_cmpeq_epi32_mask(pos, _mm512_setzero_si512());
		const __mmask16 kb = _mm512_cmpeq_epi32_mask(pos, one);
		const __mmask16 kc = _mm512_cmpeq_epi32_mask(pos, wv);
		const __mmask16 kd = _mm512_cmpeq_epi32_mask(pos, w1);
		bad |= m & ~(ka | kb | kc | kd);
		const __m512 a = _mm512_maskz_mov_ps(ka, v), b = _mm512_maskz_mov_ps(kb, v);
		const __m512 c = _mm512_maskz_mov_ps(kc, v), d = _mm512_maskz_mov_ps(kd, v);
		_mm512_mask_storeu_ps(r0 + 2 * j, mlo, _mm512_permutex2var_ps(a, lo, b));
		_mm512_mask_storeu_ps(r1 + 2 * j, mlo, _mm512_permutex2var_ps(c, lo, d));
		if (!mhi) continue; // a row of at most 8 (LeNet's 5): an empty masked store still costs its cycles
		_mm512_mask_storeu_ps(r0 + 2 * j + 16, mhi, _mm512_permutex2var_ps(a, hi, b));
		_mm512_mask_storeu_ps(r1 + 2 * j + 16, mhi, _mm512_permutex2var_ps(c, hi, d));
	}
	return bad != 0;
}

// back_plane writes the whole dx plane (h×w) from dout (oh×ow) and argmax,
// the columns and rows no window covers as 0. Returns 0 when an index lies
// outside its window.
static int back_plane(float *restrict dx, const float *restrict dout, const float *restrict keep,
                      const int32_t *restrict am, int w, int h, int oh, int ow) {
	int miss = 0;
	const int avx2 = kiln_isa() >= KILN_ISA_AVX2, avx512 = kiln_isa() >= KILN_ISA_AVX512;
	for (int i = 0; i < oh; i++) {
		float *r0 = dx + 2 * i * w;
		const float *k = keep ? keep + i * ow : 0;
		if (avx512)
			miss |= back_row_avx512(r0, r0 + w, dout + i * ow, k, am + i * ow, 2 * i * w, w, ow);
		else if (avx2)
			miss |= back_row_avx2(r0, r0 + w, dout + i * ow, k, am + i * ow, 2 * i * w, w, ow);
		else
			miss |= back_row_scalar(r0, r0 + w, dout + i * ow, k, am + i * ow, 2 * i * w, w, ow);
		for (int j = 2 * ow; j < w; j++) r0[j] = r0[w + j] = 0.0f;
	}
	for (int r = 2 * oh; r < h; r++)
		for (int j = 0; j < w; j++) dx[r * w + j] = 0.0f;
	return !miss;
}

// The entry points run consecutive planes in one call (a cgo call costs as
// much as pooling a small plane) and return how many they finished: fewer
// than planes when the next one holds a NaN (forward) or an index outside its
// window (backward), for the caller to redo in Go and go on after it.
int kiln_maxpool2x2_f32(float *restrict out, int32_t *restrict am, const float *restrict x, int w, int h, int oh,
                        int ow, int planes, int relu) {
	const long in = (long)h * w, on = (long)oh * ow;
	for (int p = 0; p < planes; p++)
		if (!pool_plane(out + p * on, am ? am + p * on : 0, x + p * in, w, oh, ow, relu)) return p;
	return planes;
}

int kiln_maxpool2x2_backward_f32(float *restrict dx, const float *restrict dout, const float *restrict keep,
                                 const int32_t *restrict am, int w, int h, int oh, int ow, int planes) {
	const long in = (long)h * w, on = (long)oh * ow;
	for (int p = 0; p < planes; p++)
		if (!back_plane(dx + p * in, dout + p * on, keep ? keep + p * on : 0, am + p * on, w, h, oh, ow)) return p;
	return planes;
}

#endif // __x86_64__
