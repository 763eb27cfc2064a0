// norm_cpu.c: LayerNorm rows and batch-norm channels for float32 tensors.
// Batch norm's sums, like the Go loops of norm.go, are doubles (its
// channels sum a whole batch of planes); LayerNorm's rows compute in
// float32 as PyTorch's CPU kernel does (a row of a few hundred floats;
// in double it ran compute-bound at 2.6 Gelem/s on two Emerald Rapids cores,
// 13% of gmlp's step), its γ/β gradients summed per block of 16 rows in
// float, then in double. Sums run in a fixed number of lanes over the row in
// order, a scalar tail after them, and the lanes are added in a fixed tree:
// deterministic, though not the bits of the Go loop's single chain. Rows may
// be strided (the SGU normalises the v half of rows twice as long).
//
// The kernels are written once, over "d8" (eight doubles), "f16" (sixteen
// floats: LayerNorm's lanes) — each two ymm at AVX2, one zmm at AVX-512 —
// and "F" (float32 vectors of FL lanes for the batch norm's float
// arithmetic), and compiled twice by including this file into itself. Both
// widths give the same lanes and the same per-element float operations, so
// the AVX2 and AVX-512 levels give the same bits; AVX-512 does each in one
// instruction instead of two.

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#ifndef NORM_W
#include <immintrin.h>
#include <math.h>

#include "norm_cpu.h"
#include "isa_cpu.h"

#define INLINE static inline __attribute__((always_inline))

#define NORM_W 8
#include "norm_cpu.c"
#undef NORM_W
#define NORM_W 16
#include "norm_cpu.c"
#undef NORM_W

static int zmm(void) { return kiln_isa() >= KILN_ISA_AVX512; }

void kiln_ln_forward_f32(float *out, long ldo, float *mean, float *rstd, const float *x, long ldx, const float *gamma,
                         const float *beta, long rows, long d, double eps) {
	for (long r = 0; r < rows; r++) {
		float m, s;
		(zmm() ? ln_row_16 : ln_row_8)(out + r * ldo, &m, &s, x + r * ldx, gamma, beta, d, eps);
		if (mean) mean[r] = m;
		if (rstd) rstd[r] = s;
	}
}

void kiln_ln_backward_f32(float *dx, long lddx, double *dg, double *db, const float *dout, long lddout, const float *x,
                          long ldx, const float *mean, const float *rstd, const float *gamma, long rows, long d) {
	(zmm() ? ln_backward_16 : ln_backward_8)(dx, lddx, dg, db, dout, lddout, x, ldx, mean, rstd, gamma, rows, d);
}

void kiln_bn_moments_f32(const float *x, long n, long stride, long hw, double *mean, double *ss) {
	(zmm() ? bn_moments_16 : bn_moments_8)(x, n, stride, hw, mean, ss);
}

void kiln_bn_apply_f32(float *out, const float *x, long n, long stride, long hw, float a, float b, int relu) {
	(zmm() ? bn_apply_16 : bn_apply_8)(out, x, n, stride, hw, a, b, relu);
}

void kiln_bn_backward_sums_f32(const float *x, const float *dout, const float *y, long n, long stride, long hw,
                               double mean, double *sumD, double *sumDX) {
	(zmm() ? bn_backward_sums_16 : bn_backward_sums_8)(x, dout, y, n, stride, hw, mean, sumD, sumDX);
}

void kiln_bn_backward_dx_f32(float *dx, const float *x, const float *dout, const float *y, long n, long stride,
                             long hw, float k, float a, float b) {
	(zmm() ? bn_backward_dx_16 : bn_backward_dx_8)(dx, x, dout, y, n, stride, hw, k, a, b);
}

#else // NORM_W: the kernels, once per width; L(name) is name_W.

#if NORM_W == 8
#define TARGET __attribute__((target("avx2,fma")))
#define L(name) name##_8
// Eight doubles as two ymm.
typedef struct {
	__m256d lo, hi;
} d8_8;
#define d8 d8_8
TARGET INLINE d8 L(d8_cvt)(__m256 v) {
	return (d8){_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))};
}
TARGET INLINE d8 L(d8_set1)(double v) { return (d8){_mm256_set1_pd(v), _mm256_set1_pd(v)}; }
// A pair of ymm's operations, half by half.
#define PAIR2(T, name, op)                                                                                             \
	TARGET INLINE T L(name)(T a, T b) { return (T){op(a.lo, b.lo), op(a.hi, b.hi)}; }
#define PAIR3(T, name, op)                                                                                             \
	TARGET INLINE T L(name)(T a, T b, T c) { return (T){op(a.lo, b.lo, c.lo), op(a.hi, b.hi, c.hi)}; }
PAIR2(d8, d8_add, _mm256_add_pd)
PAIR2(d8, d8_sub, _mm256_sub_pd)
PAIR2(d8, d8_mul, _mm256_mul_pd)
PAIR3(d8, d8_fma, _mm256_fmadd_pd)
TARGET INLINE d8 L(d8_loadd)(const double *p) { return (d8){_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4)}; }
TARGET INLINE void L(d8_stored)(double *p, d8 v) {
	_mm256_storeu_pd(p, v.lo);
	_mm256_storeu_pd(p + 4, v.hi);
}
TARGET INLINE void L(d8_storef)(float *p, d8 v) {
	_mm256_storeu_ps(p, _mm256_set_m128(_mm256_cvtpd_ps(v.hi), _mm256_cvtpd_ps(v.lo)));
}
// The fixed tree: lanes i and i+4, then the 128-bit halves, then the pair.
TARGET INLINE double L(d8_sum)(d8 v) {
	__m256d s = _mm256_add_pd(v.lo, v.hi);
	__m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
	return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}
// Sixteen floats as two ymm (LayerNorm's lanes).
typedef struct {
	__m256 lo, hi;
} f16_8;
#define f16 f16_8
TARGET INLINE f16 L(f16_load)(const float *p) { return (f16){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
TARGET INLINE void L(f16_store)(float *p, f16 v) {
	_mm256_storeu_ps(p, v.lo);
	_mm256_storeu_ps(p + 8, v.hi);
}
TARGET INLINE f16 L(f16_set1)(float v) { return (f16){_mm256_set1_ps(v), _mm256_set1_ps(v)}; }
PAIR2(f16, f16_add, _mm256_add_ps)
PAIR2(f16, f16_sub, _mm256_sub_ps)
PAIR2(f16, f16_mul, _mm256_mul_ps)
PAIR3(f16, f16_fma, _mm256_fmadd_ps)
PAIR3(f16, f16_fnma, _mm256_fnmadd_ps)
#undef PAIR2
#undef PAIR3
// The fixed tree: lanes i and i+8, i and i+4, then 0+2 and 1+3, then the pair.
TARGET INLINE float L(f16_sum8)(__m256 s) {
	__m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
	h = _mm_add_ps(h, _mm_movehl_ps(h, h));
	return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}
TARGET INLINE float L(f16_sum)(f16 v) { return L(f16_sum8)(_mm256_add_ps(v.lo, v.hi)); }
// d[0:16] += v, in double.
TARGET INLINE void L(f16_add_to_doubles)(double *d, f16 v) {
	L(d8_stored)(d, L(d8_add)(L(d8_loadd)(d), L(d8_cvt)(v.lo)));
	L(d8_stored)(d + 8, L(d8_add)(L(d8_loadd)(d + 8), L(d8_cvt)(v.hi)));
}
// Float32 vectors for the batch norm's float arithmetic.
#define FL 8
#define F __m256
#define F_LOAD _mm256_loadu_ps
#define F_STORE _mm256_storeu_ps
#define F_SET1 _mm256_set1_ps
#define F_FMA _mm256_fmadd_ps
#define F_MAX0(v) _mm256_max_ps(_mm256_setzero_ps(), v) // v < 0 ? 0 : v, a NaN passes
#define F_WHERE_POS(g, y) _mm256_and_ps(g, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ))
#else
#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define L(name) name##_16
// Eight doubles as one zmm: the same lanes as the two ymm above.
#define d8 __m512d
TARGET INLINE d8 L(d8_cvt)(__m256 v) { return _mm512_cvtps_pd(v); }
TARGET INLINE d8 L(d8_set1)(double v) { return _mm512_set1_pd(v); }
TARGET INLINE d8 L(d8_add)(d8 a, d8 b) { return _mm512_add_pd(a, b); }
TARGET INLINE d8 L(d8_sub)(d8 a, d8 b) { return _mm512_sub_pd(a, b); }
TARGET INLINE d8 L(d8_mul)(d8 a, d8 b) { return _mm512_mul_pd(a, b); }
TARGET INLINE d8 L(d8_fma)(d8 a, d8 b, d8 c) { return _mm512_fmadd_pd(a, b, c); }
TARGET INLINE d8 L(d8_loadd)(const double *p) { return _mm512_loadu_pd(p); }
TARGET INLINE void L(d8_stored)(double *p, d8 v) { _mm512_storeu_pd(p, v); }
TARGET INLINE void L(d8_storef)(float *p, d8 v) { _mm256_storeu_ps(p, _mm512_cvtpd_ps(v)); }
TARGET INLINE double L(d8_sum)(d8 v) {
	__m256d s = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
	__m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
	return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}
// Sixteen floats as one zmm: the same lanes and tree as the two ymm above.
#define f16 __m512
TARGET INLINE f16 L(f16_load)(const float *p) { return _mm512_loadu_ps(p); }
TARGET INLINE void L(f16_store)(float *p, f16 v) { _mm512_storeu_ps(p, v); }
TARGET INLINE f16 L(f16_set1)(float v) { return _mm512_set1_ps(v); }
TARGET INLINE f16 L(f16_add)(f16 a, f16 b) { return _mm512_add_ps(a, b); }
TARGET INLINE f16 L(f16_sub)(f16 a, f16 b) { return _mm512_sub_ps(a, b); }
TARGET INLINE f16 L(f16_mul)(f16 a, f16 b) { return _mm512_mul_ps(a, b); }
TARGET INLINE f16 L(f16_fma)(f16 a, f16 b, f16 c) { return _mm512_fmadd_ps(a, b, c); }
TARGET INLINE f16 L(f16_fnma)(f16 a, f16 b, f16 c) { return _mm512_fnmadd_ps(a, b, c); }
TARGET INLINE float L(f16_sum)(f16 v) {
	__m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
	__m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
	h = _mm_add_ps(h, _mm_movehl_ps(h, h));
	return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}
TARGET INLINE void L(f16_add_to_doubles)(double *d, f16 v) {
	_mm512_storeu_pd(d, _mm512_add_pd(_mm512_loadu_pd(d), _mm512_cvtps_pd(_mm512_castps512_ps256(v))));
	_mm512_storeu_pd(d + 8, _mm512_add_pd(_mm512_loadu_pd(d + 8), _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1))));
}
#define FL 16
#define F __m512
#define F_LOAD _mm512_loadu_ps
#define F_STORE _mm512_storeu_ps
#define F_SET1 _mm512_set1_ps
#define F_FMA _mm512_fmadd_ps
#define F_MAX0(v) _mm512_max_ps(_mm512_setzero_ps(), v)
#define F_WHERE_POS(g, y) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GT_OQ), g)
#endif
// Eight floats of the gradient g, zero where the fused ReLU's output y is
// not positive (y NULL: all of g), as doubles.
TARGET INLINE d8 L(d8_grad)(const float *g, const float *y) {
	__m256 v = _mm256_loadu_ps(g);
	if (y) v = _mm256_and_ps(v, _mm256_cmp_ps(_mm256_loadu_ps(y), _mm256_setzero_ps(), _CMP_GT_OQ));
	return L(d8_cvt)(v);
}
#define LOAD(p) L(d8_cvt)(_mm256_loadu_ps(p))
#define SET1 L(d8_set1)
#define ADD L(d8_add)
#define SUB L(d8_sub)
#define MUL L(d8_mul)
#define FMA L(d8_fma)
#define SUM L(d8_sum)
#define F16_LOAD L(f16_load)
#define F16_STORE L(f16_store)
#define F16_SET1 L(f16_set1)
#define F16_ADD L(f16_add)
#define F16_SUB L(f16_sub)
#define F16_MUL L(f16_mul)
#define F16_FMA L(f16_fma)
#define F16_FNMA L(f16_fnma)
#define F16_SUM L(f16_sum)
#define F16_ADD_TO_DOUBLES L(f16_add_to_doubles)

// LayerNorm rows compute in float32, as PyTorch's CPU kernel does, over a
// fixed 16 lanes ("f16": two ymm at AVX2, one zmm at AVX-512) with the same
// per-lane operations and reduction tree at both levels, so both give the
// same bits. A row's sums run in lane order over its 16-float chunks, the
// tail (d mod 16) one float at a time, added after the tree.
TARGET INLINE float L(ln_tail_sum)(const float *x, long from, long d) {
	float t = 0;
	for (long j = from; j < d; j++) t += x[j];
	return t;
}

TARGET static void L(ln_row)(float *out, float *meanp, float *rstdp, const float *x, const float *gamma,
                             const float *beta, long d, double eps) {
	const long d16 = d & ~15L;
	f16 s = F16_SET1(0);
	for (long j = 0; j < d16; j += 16) s = F16_ADD(s, F16_LOAD(x + j));
	const float mean = (F16_SUM(s) + L(ln_tail_sum)(x, d16, d)) / (float)d;
	const f16 mv = F16_SET1(mean);
	s = F16_SET1(0);
	for (long j = 0; j < d16; j += 16) {
		const f16 a = F16_SUB(F16_LOAD(x + j), mv);
		s = F16_FMA(a, a, s);
	}
	float tail = 0;
	for (long j = d16; j < d; j++) tail = fmaf(x[j] - mean, x[j] - mean, tail);
	const float rstd = (float)(1 / sqrt((double)((F16_SUM(s) + tail) / (float)d) + eps));
	const f16 rv = F16_SET1(rstd);
	for (long j = 0; j < d16; j += 16) {
		f16 a = F16_MUL(F16_SUB(F16_LOAD(x + j), mv), rv);
		if (gamma && beta)
			a = F16_FMA(a, F16_LOAD(gamma + j), F16_LOAD(beta + j));
		else if (gamma)
			a = F16_MUL(a, F16_LOAD(gamma + j));
		else if (beta)
			a = F16_ADD(a, F16_LOAD(beta + j));
		F16_STORE(out + j, a);
	}
	for (long j = d16; j < d; j++) {
		float y = (x[j] - mean) * rstd;
		if (gamma && beta)
			y = fmaf(y, gamma[j], beta[j]);
		else if (gamma)
			y *= gamma[j];
		else if (beta)
			y += beta[j];
		out[j] = y;
	}
	*meanp = mean;
	*rstdp = rstd;
}

// ln_rows_backward_dx: per row, with x̂ = (x − mean)·rstd and g = dout·γ,
// dx = rstd·((g − mean(g)) − x̂·mean(g·x̂)). dx may be dout itself.
TARGET static void L(ln_rows_backward_dx)(float *dx, long lddx, const float *dout, long lddout, const float *x,
                                          long ldx, const float *mean, const float *rstd, const float *gamma,
                                          long rows, long d) {
	const long d16 = d & ~15L;
	for (long r = 0; r < rows; r++) {
		const float *xr = x + r * ldx, *gr = dout + r * lddout;
		const float m = mean[r], rs = rstd[r];
		const f16 mv = F16_SET1(m), rv = F16_SET1(rs);
		f16 sg = F16_SET1(0), sx = sg;
		for (long j = 0; j < d16; j += 16) {
			const f16 xa = F16_MUL(F16_SUB(F16_LOAD(xr + j), mv), rv);
			f16 g = F16_LOAD(gr + j);
			if (gamma) g = F16_MUL(g, F16_LOAD(gamma + j));
			sg = F16_ADD(sg, g);
			sx = F16_FMA(g, xa, sx);
		}
		float tg = 0, tx = 0;
		for (long j = d16; j < d; j++) {
			const float xa = (xr[j] - m) * rs, g = gamma ? gr[j] * gamma[j] : gr[j];
			tg += g;
			tx = fmaf(g, xa, tx);
		}
		const float a = (F16_SUM(sg) + tg) / (float)d, b = (F16_SUM(sx) + tx) / (float)d;
		const f16 av = F16_SET1(a), bv = F16_SET1(b);
		float *dr = dx + r * lddx;
		for (long j = 0; j < d16; j += 16) {
			const f16 xa = F16_MUL(F16_SUB(F16_LOAD(xr + j), mv), rv);
			f16 g = F16_LOAD(gr + j);
			if (gamma) g = F16_MUL(g, F16_LOAD(gamma + j));
			F16_STORE(dr + j, F16_MUL(rv, F16_FNMA(xa, bv, F16_SUB(g, av))));
		}
		for (long j = d16; j < d; j++) {
			const float xa = (xr[j] - m) * rs, g = gamma ? gr[j] * gamma[j] : gr[j];
			dr[j] = rs * fmaf(-xa, b, g - a);
		}
	}
}

// ln_rows_backward_params adds Σ dout·x̂ to dg and Σ dout to db (either may be
// NULL) over up to LN_BLOCK rows: the block's sums in float, rows in order,
// then each column's block sum added to its double.
#define LN_BLOCK 16
TARGET static void L(ln_rows_backward_params)(double *dg, double *db, const float *dout, long lddout,
                                              const float *x, long ldx, const float *mean, const float *rstd,
                                              long rows, long d) {
	const long d16 = d & ~15L;
	for (long j = 0; j < d16; j += 16) {
		f16 sg = F16_SET1(0), sb = sg;
		for (long r = 0; r < rows; r++) {
			const f16 xa = F16_MUL(F16_SUB(F16_LOAD(x + r * ldx + j), F16_SET1(mean[r])), F16_SET1(rstd[r]));
			const f16 g = F16_LOAD(dout + r * lddout + j);
			sg = F16_FMA(g, xa, sg);
			sb = F16_ADD(sb, g);
		}
		if (dg) F16_ADD_TO_DOUBLES(dg + j, sg);
		if (db) F16_ADD_TO_DOUBLES(db + j, sb);
	}
	for (long j = d16; j < d; j++) {
		float sg = 0, sb = 0;
		for (long r = 0; r < rows; r++) {
			const float g = dout[r * lddout + j];
			sg = fmaf(g, (x[r * ldx + j] - mean[r]) * rstd[r], sg);
			sb += g;
		}
		if (dg) dg[j] += sg;
		if (db) db[j] += sb;
	}
}

TARGET static void L(ln_backward)(float *dx, long lddx, double *dg, double *db, const float *dout, long lddout,
                                  const float *x, long ldx, const float *mean, const float *rstd,
                                  const float *gamma, long rows, long d) {
	for (long r = 0; r < rows; r += LN_BLOCK) {
		const long n = rows - r < LN_BLOCK ? rows - r : LN_BLOCK;
		// The parameters' sums first: dx may overwrite dout.
		if (dg || db)
			L(ln_rows_backward_params)(dg, db, dout + r * lddout, lddout, x + r * ldx, ldx, mean + r, rstd + r, n,
			                           d);
		if (dx)
			L(ln_rows_backward_dx)(dx + r * lddx, lddx, dout + r * lddout, lddout, x + r * ldx, ldx, mean + r,
			                       rstd + r, gamma, n, d);
	}
}

// ---------------------------------------------------------------------------
// Batch norm, one channel at a time: the channel's block in sample i is
// x + i·stride, hw long. Sums in double lanes, as above.

TARGET static void L(bn_moments)(const float *x, long n, long stride, long hw, double *meanp, double *ssp) {
	const long h8 = hw & ~7L;
	d8 s = SET1(0);
	double tail = 0;
	for (long i = 0; i < n; i++) {
		const float *xi = x + i * stride;
		for (long j = 0; j < h8; j += 8) s = ADD(s, LOAD(xi + j));
		for (long j = h8; j < hw; j++) tail += xi[j];
	}
	const double m = (double)(n * hw), mean = (SUM(s) + tail) / m;
	const d8 mv = SET1(mean);
	s = SET1(0);
	tail = 0;
	for (long i = 0; i < n; i++) {
		const float *xi = x + i * stride;
		for (long j = 0; j < h8; j += 8) {
			d8 a = SUB(LOAD(xi + j), mv);
			s = FMA(a, a, s);
		}
		for (long j = h8; j < hw; j++) tail += (xi[j] - mean) * (xi[j] - mean);
	}
	*meanp = mean;
	*ssp = SUM(s) + tail;
}

// out = a·x + b in float32 (a fused multiply-add), FL lanes at a time, then
// with relu max(·, 0) as ReLU takes it (v < 0 ? 0 : v).
TARGET INLINE void L(bn_apply_rows)(float *out, const float *x, long n, long stride, long hw, float a, float b,
                                   const int relu) {
	const F av = F_SET1(a), bv = F_SET1(b);
	const long hv = hw & ~(long)(FL - 1);
	for (long i = 0; i < n; i++) {
		const float *xi = x + i * stride;
		float *oi = out + i * stride;
		for (long j = 0; j < hv; j += FL) {
			F v = F_FMA(av, F_LOAD(xi + j), bv);
			F_STORE(oi + j, relu ? F_MAX0(v) : v);
		}
		for (long j = hv; j < hw; j++) {
			const float v = __builtin_fmaf(a, xi[j], b);
			oi[j] = relu && v < 0 ? 0 : v;
		}
	}
}

TARGET static void L(bn_apply)(float *out, const float *x, long n, long stride, long hw, float a, float b, int relu) {
	if (relu)
		L(bn_apply_rows)(out, x, n, stride, hw, a, b, 1);
	else
		L(bn_apply_rows)(out, x, n, stride, hw, a, b, 0);
}

// Σ dout and Σ dout·(x − mean) over the channel, dout taken only where the
// fused ReLU's output y is positive when y is not NULL.
TARGET static void L(bn_backward_sums)(const float *x, const float *dout, const float *y, long n, long stride,
                                       long hw, double mean, double *sumD, double *sumDX) {
	const d8 mv = SET1(mean);
	d8 sd = SET1(0), sx = sd;
	double td = 0, tx = 0;
	const long h8 = hw & ~7L;
	for (long i = 0; i < n; i++) {
		const float *xi = x + i * stride, *gi = dout + i * stride, *yi = y ? y + i * stride : 0;
		for (long j = 0; j < h8; j += 8) {
			const d8 g = L(d8_grad)(gi + j, yi ? yi + j : 0);
			sd = ADD(sd, g);
			sx = FMA(g, SUB(LOAD(xi + j), mv), sx);
		}
		for (long j = h8; j < hw; j++) {
			const float g = yi && !(yi[j] > 0) ? 0 : gi[j];
			td += g;
			tx += (double)g * (xi[j] - mean);
		}
	}
	*sumD = SUM(sd) + td;
	*sumDX = SUM(sx) + tx;
}

// dx = k·dout + a·x + b in float32, FL lanes at a time; dout is taken
// only where y is positive when y is not NULL (the fused ReLU).
TARGET INLINE void L(bn_dx_rows)(float *dx, const float *x, const float *dout, const float *y, long n, long stride,
                                 long hw, float k, float a, float b, const int masked) {
	const F kv = F_SET1(k), av = F_SET1(a), bv = F_SET1(b);
	const long hv = hw & ~(long)(FL - 1);
	for (long i = 0; i < n; i++) {
		const float *xi = x + i * stride, *gi = dout + i * stride, *yi = masked ? y + i * stride : 0;
		float *di = dx + i * stride;
		for (long j = 0; j < hv; j += FL) {
			F g = F_LOAD(gi + j);
			if (masked) g = F_WHERE_POS(g, F_LOAD(yi + j));
			F_STORE(di + j, F_FMA(kv, g, F_FMA(av, F_LOAD(xi + j), bv)));
		}
		for (long j = hv; j < hw; j++) {
			const float g = masked && !(yi[j] > 0) ? 0 : gi[j];
			di[j] = __builtin_fmaf(k, g, __builtin_fmaf(a, xi[j], b));
		}
	}
}

TARGET static void L(bn_backward_dx)(float *dx, const float *x, const float *dout, const float *y, long n,
                                     long stride, long hw, float k, float a, float b) {
	if (y)
		L(bn_dx_rows)(dx, x, dout, y, n, stride, hw, k, a, b, 1);
	else
		L(bn_dx_rows)(dx, x, dout, y, n, stride, hw, k, a, b, 0);
}

#undef TARGET
#undef L
#undef d8
#undef FL
#undef F
#undef F_LOAD
#undef F_STORE
#undef F_SET1
#undef F_FMA
#undef F_MAX0
#undef F_WHERE_POS
#undef LOAD
#undef SET1
#undef ADD
#undef SUB
#undef MUL
#undef FMA
#undef SUM
#undef f16
#undef F16_LOAD
#undef F16_STORE
#undef F16_SET1
#undef F16_ADD
#undef F16_SUB
#undef F16_MUL
#undef F16_FMA
#undef F16_FNMA
#undef F16_SUM
#undef F16_ADD_TO_DOUBLES
#undef LN_BLOCK
#endif // NORM_W
#endif // __x86_64__
