// norm_cpu.c: LayerNorm rows and batch-norm channels for float32 tensors,
// vectorised but computed in double precision like the Go loops of norm.go
// (sums, x̂ and the gradient terms are doubles; only the stored results round
// to float). Sums run in eight double lanes over the row in order, a scalar
// tail after them, and the lanes are added in a fixed tree: deterministic,
// though not the bits of the Go loop's single chain. Rows may be strided (the
// SGU normalises the v half of rows twice as long).
//
// The kernels are written once, over "d8" (eight doubles: two ymm at AVX2,
// one zmm at AVX-512) and "f8" (float32 vectors of FL lanes for the
// batch-norm's float arithmetic), and compiled twice by including this file
// into itself. Both widths give the same eight double lanes and the same
// per-element float operations, so the AVX2 and AVX-512 levels give the
// same bits; AVX-512 does each eight in one instruction instead of two.

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
		double m, s;
		(zmm() ? ln_row_16 : ln_row_8)(out + r * ldo, &m, &s, x + r * ldx, gamma, beta, d, eps);
		if (mean) mean[r] = (float)m;
		if (rstd) rstd[r] = (float)s;
	}
}

void kiln_ln_backward_f32(float *dx, long lddx, double *dg, double *db, const float *dout, long lddout, const float *x,
                          long ldx, const float *mean, const float *rstd, const float *gamma, long rows, long d) {
	void (*row)(float *, double *, double *, const float *, const float *, double, double, const float *, long) =
	    zmm() ? ln_row_backward_16 : ln_row_backward_8;
	for (long r = 0; r < rows; r++)
		row(dx ? dx + r * lddx : 0, dg, db, dout + r * lddout, x + r * ldx, mean[r], rstd[r], gamma, d);
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
TARGET INLINE d8 L(d8_add)(d8 a, d8 b) { return (d8){_mm256_add_pd(a.lo, b.lo), _mm256_add_pd(a.hi, b.hi)}; }
TARGET INLINE d8 L(d8_sub)(d8 a, d8 b) { return (d8){_mm256_sub_pd(a.lo, b.lo), _mm256_sub_pd(a.hi, b.hi)}; }
TARGET INLINE d8 L(d8_mul)(d8 a, d8 b) { return (d8){_mm256_mul_pd(a.lo, b.lo), _mm256_mul_pd(a.hi, b.hi)}; }
TARGET INLINE d8 L(d8_fma)(d8 a, d8 b, d8 c) {
	return (d8){_mm256_fmadd_pd(a.lo, b.lo, c.lo), _mm256_fmadd_pd(a.hi, b.hi, c.hi)};
}
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

TARGET static void L(ln_row)(float *out, double *meanp, double *rstdp, const float *x, const float *gamma,
                             const float *beta, long d, double eps) {
	const long d8n = d & ~7L;
	d8 s = SET1(0);
	for (long j = 0; j < d8n; j += 8) s = ADD(s, LOAD(x + j));
	double tail = 0;
	for (long j = d8n; j < d; j++) tail += x[j];
	const double mean = (SUM(s) + tail) / (double)d;
	const d8 mv = SET1(mean);
	s = SET1(0);
	for (long j = 0; j < d8n; j += 8) {
		d8 a = SUB(LOAD(x + j), mv);
		s = FMA(a, a, s);
	}
	tail = 0;
	for (long j = d8n; j < d; j++) tail += (x[j] - mean) * (x[j] - mean);
	const double rstd = 1 / sqrt((SUM(s) + tail) / (double)d + eps);
	const d8 rv = SET1(rstd);
	for (long j = 0; j < d8n; j += 8) {
		d8 a = MUL(SUB(LOAD(x + j), mv), rv);
		if (gamma) a = MUL(a, LOAD(gamma + j));
		if (beta) a = ADD(a, LOAD(beta + j));
		L(d8_storef)(out + j, a);
	}
	for (long j = d8n; j < d; j++) {
		double y = (x[j] - mean) * rstd;
		if (gamma) y *= gamma[j];
		if (beta) y += beta[j];
		out[j] = (float)y;
	}
	*meanp = mean;
	*rstdp = rstd;
}

TARGET static void L(ln_row_backward)(float *dx, double *dg, double *db, const float *dout, const float *x,
                                      double mean, double rstd, const float *gamma, long d) {
	const long d8n = d & ~7L;
	const d8 mv = SET1(mean), rv = SET1(rstd);
	d8 sg = SET1(0), sx = sg;
	for (long j = 0; j < d8n; j += 8) {
		const d8 xa = MUL(SUB(LOAD(x + j), mv), rv);
		d8 ga = LOAD(dout + j);
		if (dg) L(d8_stored)(dg + j, FMA(ga, xa, L(d8_loadd)(dg + j)));
		if (db) L(d8_stored)(db + j, ADD(L(d8_loadd)(db + j), ga));
		if (gamma) ga = MUL(ga, LOAD(gamma + j));
		sg = ADD(sg, ga);
		sx = FMA(ga, xa, sx);
	}
	double tg = 0, tx = 0;
	for (long j = d8n; j < d; j++) {
		double xh = (x[j] - mean) * rstd, g = dout[j];
		if (dg) dg[j] += g * xh;
		if (db) db[j] += g;
		if (gamma) g *= gamma[j];
		tg += g;
		tx += g * xh;
	}
	if (!dx) return;
	const double a = (SUM(sg) + tg) / (double)d, b = (SUM(sx) + tx) / (double)d;
	const d8 av = SET1(a), bv = SET1(b);
	for (long j = 0; j < d8n; j += 8) {
		const d8 xa = MUL(SUB(LOAD(x + j), mv), rv);
		d8 ga = LOAD(dout + j);
		if (gamma) ga = MUL(ga, LOAD(gamma + j));
		// rstd·(g − a − x̂·b)
		L(d8_storef)(dx + j, MUL(rv, SUB(SUB(ga, av), MUL(xa, bv))));
	}
	for (long j = d8n; j < d; j++) {
		double xh = (x[j] - mean) * rstd, g = dout[j];
		if (gamma) g *= gamma[j];
		dx[j] = (float)(rstd * (g - a - xh * b));
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
#endif // NORM_W
#endif // __x86_64__
