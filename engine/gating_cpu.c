// gating_cpu.c: the elementwise parts of the spatial gating unit for float32
// (gating.go): the gate out = u ⊙ (W·v̂ + b) and its backward, where u is the
// first half of each row of z (length 2D). The bias gradient sums in eight
// double lanes over each row, then a fixed tree: deterministic.

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include <immintrin.h>

#include "gating_cpu.h"
#include "isa_cpu.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define BODY static inline __attribute__((always_inline))

static int avx2(void) { return kiln_isa() >= KILN_ISA_AVX2; }

// The gate: one add and one product per element at every level (no
// contraction: the two roundings stay), so every level gives the same bits.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
BODY void sgu_gate_body(float *out, float *vm, const float *z, const float *b, long t, long d) {
	for (long i = 0; i < t; i++) {
		const float bi = b ? b[i] : 0;
		const float *u = z + i * 2 * d;
		float *m = vm + i * d, *o = out + i * d;
		for (long j = 0; j < d; j++) {
			m[j] += bi;
			o[j] = u[j] * m[j];
		}
	}
}
KILN_ISA_DISPATCH(sgu_gate, (float *out, float *vm, const float *z, const float *b, long t, long d),
                  (out, vm, z, b, t, d))
#pragma GCC pop_options

void kiln_sgu_gate_f32(float *out, float *vm, const float *z, const float *b, long t, long d) {
	sgu_gate(out, vm, z, b, t, d);
}

// dvm = dout ⊙ u, du = dout ⊙ vm (du is the first half of dz's rows, skipped
// when dz is NULL), db[i] += Σ_j dvm[i, j].
AVX2 static void gate_backward_avx2(float *dvm, float *dz, double *db, const float *dout, const float *z,
                                    const float *vm, long t, long d) {
	const long d8 = d & ~7L;
	for (long i = 0; i < t; i++) {
		const float *u = z + i * 2 * d, *g = dout + i * d, *m = vm + i * d;
		float *dm = dvm + i * d;
		float *du = dz ? dz + i * 2 * d : 0;
		__m256d s0 = _mm256_setzero_pd(), s1 = s0;
		long j = 0;
		for (; j < d8; j += 8) {
			__m256 gv = _mm256_loadu_ps(g + j);
			__m256 p = _mm256_mul_ps(gv, _mm256_loadu_ps(u + j));
			_mm256_storeu_ps(dm + j, p);
			s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
			s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
			if (du) _mm256_storeu_ps(du + j, _mm256_mul_ps(gv, _mm256_loadu_ps(m + j)));
		}
		__m256d s = _mm256_add_pd(s0, s1);
		__m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
		double sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
		for (; j < d; j++) {
			dm[j] = g[j] * u[j];
			sum += dm[j];
			if (du) du[j] = g[j] * m[j];
		}
		db[i] += sum;
	}
}

// The same at AVX-512: the eight double lanes in one zmm, added in the same
// tree (upper and lower four, then pairs), so the same bits as AVX2.
AVX512 static void gate_backward_avx512(float *dvm, float *dz, double *db, const float *dout, const float *z,
                                        const float *vm, long t, long d) {
	const long d8 = d & ~7L;
	for (long i = 0; i < t; i++) {
		const float *u = z + i * 2 * d, *g = dout + i * d, *m = vm + i * d;
		float *dm = dvm + i * d;
		float *du = dz ? dz + i * 2 * d : 0;
		__m512d s = _mm512_setzero_pd();
		long j = 0;
		for (; j < d8; j += 8) {
			__m256 gv = _mm256_loadu_ps(g + j);
			__m256 p = _mm256_mul_ps(gv, _mm256_loadu_ps(u + j));
			_mm256_storeu_ps(dm + j, p);
			s = _mm512_add_pd(s, _mm512_cvtps_pd(p));
			if (du) _mm256_storeu_ps(du + j, _mm256_mul_ps(gv, _mm256_loadu_ps(m + j)));
		}
		__m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(s), _mm512_extractf64x4_pd(s, 1));
		__m128d h = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
		double sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
		for (; j < d; j++) {
			dm[j] = g[j] * u[j];
			sum += dm[j];
			if (du) du[j] = g[j] * m[j];
		}
		db[i] += sum;
	}
}

static void gate_backward_portable(float *dvm, float *dz, double *db, const float *dout, const float *z,
                                   const float *vm, long t, long d) {
	for (long i = 0; i < t; i++) {
		const float *u = z + i * 2 * d, *g = dout + i * d, *m = vm + i * d;
		float *dm = dvm + i * d;
		double sum = 0;
		for (long j = 0; j < d; j++) {
			dm[j] = g[j] * u[j];
			sum += dm[j];
			if (dz) dz[i * 2 * d + j] = g[j] * m[j];
		}
		db[i] += sum;
	}
}

void kiln_sgu_gate_backward_f32(float *dvm, float *dz, double *db, const float *dout, const float *z, const float *vm,
                                long t, long d) {
	if (kiln_isa() >= KILN_ISA_AVX512)
		gate_backward_avx512(dvm, dz, db, dout, z, vm, t, d);
	else if (avx2())
		gate_backward_avx2(dvm, dz, db, dout, z, vm, t, d);
	else
		gate_backward_portable(dvm, dz, db, dout, z, vm, t, d);
}

#endif // __x86_64__
