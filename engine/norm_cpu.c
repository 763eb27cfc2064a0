// norm_cpu.c: LayerNorm rows for float32 tensors, vectorised with AVX2 but
// computed in double precision like the Go loops of norm.go (sums, x̂ and the
// gradient terms are doubles; only the stored results round to float). Sums
// run in eight double lanes (two ymm) over the row in order, a scalar tail
// after them, and the lanes are added in a fixed tree: deterministic, though
// not the bits of the Go loop's single chain. Rows may be strided (the SGU
// normalises the v half of rows twice as long).

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#include "norm_cpu.h"
#include "isa_cpu.h"

#define AVX2 __attribute__((target("avx2,fma")))


AVX2 static inline double hsum2(__m256d a, __m256d b) {
	__m256d s = _mm256_add_pd(a, b);
	__m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
	return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

// load8 reads eight floats at p as two vectors of four doubles.
#define LOAD8(p, lo, hi) __m256d lo, hi; load8(p, &lo, &hi)
AVX2 static inline __attribute__((always_inline)) void load8(const float *p, __m256d *lo, __m256d *hi) {
	__m256 v = _mm256_loadu_ps(p);
	*lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
	*hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}

AVX2 static void ln_row(float *out, double *meanp, double *rstdp, const float *x, const float *gamma,
                        const float *beta, long d, double eps) {
	const long d8 = d & ~7L;
	__m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
	for (long j = 0; j < d8; j += 8) {
		LOAD8(x + j, a, b);
		s0 = _mm256_add_pd(s0, a);
		s1 = _mm256_add_pd(s1, b);
	}
	double tail = 0;
	for (long j = d8; j < d; j++) tail += x[j];
	const double mean = (hsum2(s0, s1) + tail) / (double)d;
	const __m256d mv = _mm256_set1_pd(mean);
	s0 = s1 = _mm256_setzero_pd();
	for (long j = 0; j < d8; j += 8) {
		LOAD8(x + j, a, b);
		a = _mm256_sub_pd(a, mv);
		b = _mm256_sub_pd(b, mv);
		s0 = _mm256_fmadd_pd(a, a, s0);
		s1 = _mm256_fmadd_pd(b, b, s1);
	}
	tail = 0;
	for (long j = d8; j < d; j++) tail += (x[j] - mean) * (x[j] - mean);
	const double rstd = 1 / sqrt((hsum2(s0, s1) + tail) / (double)d + eps);
	const __m256d rv = _mm256_set1_pd(rstd);
	for (long j = 0; j < d8; j += 8) {
		LOAD8(x + j, a, b);
		a = _mm256_mul_pd(_mm256_sub_pd(a, mv), rv);
		b = _mm256_mul_pd(_mm256_sub_pd(b, mv), rv);
		if (gamma) {
			LOAD8(gamma + j, ga, gb);
			a = _mm256_mul_pd(a, ga);
			b = _mm256_mul_pd(b, gb);
		}
		if (beta) {
			LOAD8(beta + j, ba, bb);
			a = _mm256_add_pd(a, ba);
			b = _mm256_add_pd(b, bb);
		}
		_mm256_storeu_ps(out + j, _mm256_set_m128(_mm256_cvtpd_ps(b), _mm256_cvtpd_ps(a)));
	}
	for (long j = d8; j < d; j++) {
		double y = (x[j] - mean) * rstd;
		if (gamma) y *= gamma[j];
		if (beta) y += beta[j];
		out[j] = (float)y;
	}
	*meanp = mean;
	*rstdp = rstd;
}

void kiln_ln_forward_f32(float *out, long ldo, float *mean, float *rstd, const float *x, long ldx, const float *gamma,
                         const float *beta, long rows, long d, double eps) {
	for (long r = 0; r < rows; r++) {
		double m, s;
		ln_row(out + r * ldo, &m, &s, x + r * ldx, gamma, beta, d, eps);
		if (mean) mean[r] = (float)m;
		if (rstd) rstd[r] = (float)s;
	}
}

AVX2 static void ln_row_backward(float *dx, double *dg, double *db, const float *dout, const float *x, double mean,
                                 double rstd, const float *gamma, long d) {
	const long d8 = d & ~7L;
	const __m256d mv = _mm256_set1_pd(mean), rv = _mm256_set1_pd(rstd);
	__m256d sg0 = _mm256_setzero_pd(), sg1 = sg0, sx0 = sg0, sx1 = sg0;
	for (long j = 0; j < d8; j += 8) {
		LOAD8(x + j, xa, xb);
		LOAD8(dout + j, ga, gb);
		xa = _mm256_mul_pd(_mm256_sub_pd(xa, mv), rv);
		xb = _mm256_mul_pd(_mm256_sub_pd(xb, mv), rv);
		if (dg) {
			_mm256_storeu_pd(dg + j, _mm256_fmadd_pd(ga, xa, _mm256_loadu_pd(dg + j)));
			_mm256_storeu_pd(dg + j + 4, _mm256_fmadd_pd(gb, xb, _mm256_loadu_pd(dg + j + 4)));
		}
		if (db) {
			_mm256_storeu_pd(db + j, _mm256_add_pd(_mm256_loadu_pd(db + j), ga));
			_mm256_storeu_pd(db + j + 4, _mm256_add_pd(_mm256_loadu_pd(db + j + 4), gb));
		}
		if (gamma) {
			LOAD8(gamma + j, wa, wb);
			ga = _mm256_mul_pd(ga, wa);
			gb = _mm256_mul_pd(gb, wb);
		}
		sg0 = _mm256_add_pd(sg0, ga);
		sg1 = _mm256_add_pd(sg1, gb);
		sx0 = _mm256_fmadd_pd(ga, xa, sx0);
		sx1 = _mm256_fmadd_pd(gb, xb, sx1);
	}
	double tg = 0, tx = 0;
	for (long j = d8; j < d; j++) {
		double xh = (x[j] - mean) * rstd, g = dout[j];
		if (dg) dg[j] += g * xh;
		if (db) db[j] += g;
		if (gamma) g *= gamma[j];
		tg += g;
		tx += g * xh;
	}
	if (!dx) return;
	const double a = (hsum2(sg0, sg1) + tg) / (double)d, b = (hsum2(sx0, sx1) + tx) / (double)d;
	const __m256d av = _mm256_set1_pd(a), bv = _mm256_set1_pd(b);
	for (long j = 0; j < d8; j += 8) {
		LOAD8(x + j, xa, xb);
		LOAD8(dout + j, ga, gb);
		xa = _mm256_mul_pd(_mm256_sub_pd(xa, mv), rv);
		xb = _mm256_mul_pd(_mm256_sub_pd(xb, mv), rv);
		if (gamma) {
			LOAD8(gamma + j, wa, wb);
			ga = _mm256_mul_pd(ga, wa);
			gb = _mm256_mul_pd(gb, wb);
		}
		// rstd·(g − a − x̂·b)
		ga = _mm256_mul_pd(rv, _mm256_sub_pd(_mm256_sub_pd(ga, av), _mm256_mul_pd(xa, bv)));
		gb = _mm256_mul_pd(rv, _mm256_sub_pd(_mm256_sub_pd(gb, av), _mm256_mul_pd(xb, bv)));
		_mm256_storeu_ps(dx + j, _mm256_set_m128(_mm256_cvtpd_ps(gb), _mm256_cvtpd_ps(ga)));
	}
	for (long j = d8; j < d; j++) {
		double xh = (x[j] - mean) * rstd, g = dout[j];
		if (gamma) g *= gamma[j];
		dx[j] = (float)(rstd * (g - a - xh * b));
	}
}

void kiln_ln_backward_f32(float *dx, long lddx, double *dg, double *db, const float *dout, long lddout, const float *x,
                          long ldx, const float *mean, const float *rstd, const float *gamma, long rows, long d) {
	for (long r = 0; r < rows; r++)
		ln_row_backward(dx ? dx + r * lddx : 0, dg, db, dout + r * lddout, x + r * ldx, mean[r], rstd[r], gamma, d);
}

// ---------------------------------------------------------------------------
// Batch norm, one channel at a time: the channel's block in sample i is
// x + i·stride, hw long. Sums in double lanes, as above.

// sum_lanes adds a block into eight double lanes (and a scalar tail).
AVX2 static inline __attribute__((always_inline)) void sum_block(const float *x, long hw, __m256d *s0, __m256d *s1,
                                                                 double *tail) {
	const long h8 = hw & ~7L;
	for (long j = 0; j < h8; j += 8) {
		LOAD8(x + j, a, b);
		*s0 = _mm256_add_pd(*s0, a);
		*s1 = _mm256_add_pd(*s1, b);
	}
	for (long j = h8; j < hw; j++) *tail += x[j];
}

AVX2 static void bn_moments(const float *x, long n, long stride, long hw, double *meanp, double *ssp) {
	__m256d s0 = _mm256_setzero_pd(), s1 = s0;
	double tail = 0;
	for (long i = 0; i < n; i++) sum_block(x + i * stride, hw, &s0, &s1, &tail);
	const double m = (double)(n * hw), mean = (hsum2(s0, s1) + tail) / m;
	const __m256d mv = _mm256_set1_pd(mean);
	const long h8 = hw & ~7L;
	s0 = s1 = _mm256_setzero_pd();
	tail = 0;
	for (long i = 0; i < n; i++) {
		const float *xi = x + i * stride;
		for (long j = 0; j < h8; j += 8) {
			LOAD8(xi + j, a, b);
			a = _mm256_sub_pd(a, mv);
			b = _mm256_sub_pd(b, mv);
			s0 = _mm256_fmadd_pd(a, a, s0);
			s1 = _mm256_fmadd_pd(b, b, s1);
		}
		for (long j = h8; j < hw; j++) tail += (xi[j] - mean) * (xi[j] - mean);
	}
	*meanp = mean;
	*ssp = hsum2(s0, s1) + tail;
}

void kiln_bn_moments_f32(const float *x, long n, long stride, long hw, double *mean, double *ss) {
	bn_moments(x, n, stride, hw, mean, ss);
}

// out = a·x + b in float32 (a fused multiply-add).
AVX2 static void bn_apply(float *out, const float *x, long n, long stride, long hw, float a, float b) {
	const __m256 av = _mm256_set1_ps(a), bv = _mm256_set1_ps(b);
	const long h8 = hw & ~7L;
	for (long i = 0; i < n; i++) {
		const float *xi = x + i * stride;
		float *oi = out + i * stride;
		for (long j = 0; j < h8; j += 8) _mm256_storeu_ps(oi + j, _mm256_fmadd_ps(av, _mm256_loadu_ps(xi + j), bv));
		for (long j = h8; j < hw; j++) oi[j] = __builtin_fmaf(a, xi[j], b);
	}
}

void kiln_bn_apply_f32(float *out, const float *x, long n, long stride, long hw, float a, float b) {
	bn_apply(out, x, n, stride, hw, a, b);
}

// Σ dout and Σ dout·(x − mean) over the channel.
AVX2 static void bn_backward_sums(const float *x, const float *dout, long n, long stride, long hw, double mean,
                                  double *sumD, double *sumDX) {
	const __m256d mv = _mm256_set1_pd(mean);
	__m256d d0 = _mm256_setzero_pd(), d1 = d0, x0 = d0, x1 = d0;
	double td = 0, tx = 0;
	const long h8 = hw & ~7L;
	for (long i = 0; i < n; i++) {
		const float *xi = x + i * stride, *gi = dout + i * stride;
		for (long j = 0; j < h8; j += 8) {
			LOAD8(gi + j, ga, gb);
			LOAD8(xi + j, xa, xb);
			d0 = _mm256_add_pd(d0, ga);
			d1 = _mm256_add_pd(d1, gb);
			x0 = _mm256_fmadd_pd(ga, _mm256_sub_pd(xa, mv), x0);
			x1 = _mm256_fmadd_pd(gb, _mm256_sub_pd(xb, mv), x1);
		}
		for (long j = h8; j < hw; j++) {
			td += gi[j];
			tx += (double)gi[j] * (xi[j] - mean);
		}
	}
	*sumD = hsum2(d0, d1) + td;
	*sumDX = hsum2(x0, x1) + tx;
}

void kiln_bn_backward_sums_f32(const float *x, const float *dout, long n, long stride, long hw, double mean,
                               double *sumD, double *sumDX) {
	bn_backward_sums(x, dout, n, stride, hw, mean, sumD, sumDX);
}

// dx = k·dout + a·x + b in float32.
AVX2 static void bn_backward_dx(float *dx, const float *x, const float *dout, long n, long stride, long hw, float k,
                                float a, float b) {
	const __m256 kv = _mm256_set1_ps(k), av = _mm256_set1_ps(a), bv = _mm256_set1_ps(b);
	const long h8 = hw & ~7L;
	for (long i = 0; i < n; i++) {
		const float *xi = x + i * stride, *gi = dout + i * stride;
		float *di = dx + i * stride;
		for (long j = 0; j < h8; j += 8) {
			__m256 v = _mm256_fmadd_ps(av, _mm256_loadu_ps(xi + j), bv);
			_mm256_storeu_ps(di + j, _mm256_fmadd_ps(kv, _mm256_loadu_ps(gi + j), v));
		}
		for (long j = h8; j < hw; j++) di[j] = __builtin_fmaf(k, gi[j], __builtin_fmaf(a, xi[j], b));
	}
}

void kiln_bn_backward_dx_f32(float *dx, const float *x, const float *dout, long n, long stride, long hw, float k,
                             float a, float b) {
	bn_backward_dx(dx, x, dout, n, stride, hw, k, a, b);
}

#endif // __x86_64__
