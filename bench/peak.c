// The machine's fp32 peak, measured with the widest FMA the CPU has:
// independent multiply-adds in registers, no memory traffic. With AVX-512,
// twelve 16-lane accumulators (one 512-bit FMA is 32 flops); with AVX2 and
// FMA, twelve 8-lane ones (16 flops): either keeps two FMA pipes of latency
// 4–5 busy. Without them, a portable loop the compiler vectorises.
#include "peak.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx2,fma"))) static float fma_avx2(long iters) {
	__m256 a0 = _mm256_set1_ps(0.1f), a1 = _mm256_set1_ps(0.2f), a2 = _mm256_set1_ps(0.3f),
	       a3 = _mm256_set1_ps(0.4f), a4 = _mm256_set1_ps(0.5f), a5 = _mm256_set1_ps(0.6f),
	       a6 = _mm256_set1_ps(0.7f), a7 = _mm256_set1_ps(0.8f), a8 = _mm256_set1_ps(0.9f),
	       a9 = _mm256_set1_ps(1.0f), a10 = _mm256_set1_ps(1.1f), a11 = _mm256_set1_ps(1.2f);
	const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
	for (long i = 0; i < iters; i++) {
		a0 = _mm256_fmadd_ps(a0, b, c); a1 = _mm256_fmadd_ps(a1, b, c);
		a2 = _mm256_fmadd_ps(a2, b, c); a3 = _mm256_fmadd_ps(a3, b, c);
		a4 = _mm256_fmadd_ps(a4, b, c); a5 = _mm256_fmadd_ps(a5, b, c);
		a6 = _mm256_fmadd_ps(a6, b, c); a7 = _mm256_fmadd_ps(a7, b, c);
		a8 = _mm256_fmadd_ps(a8, b, c); a9 = _mm256_fmadd_ps(a9, b, c);
		a10 = _mm256_fmadd_ps(a10, b, c); a11 = _mm256_fmadd_ps(a11, b, c);
	}
	__m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
	                         _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
	s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
	float out[8];
	_mm256_storeu_ps(out, s);
	return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

__attribute__((target("avx512f"))) static float fma_avx512(long iters) {
	__m512 a[12];
	for (int j = 0; j < 12; j++) a[j] = _mm512_set1_ps(0.1f * (float)(j + 1));
	const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
	for (long i = 0; i < iters; i++) {
		a[0] = _mm512_fmadd_ps(a[0], b, c); a[1] = _mm512_fmadd_ps(a[1], b, c);
		a[2] = _mm512_fmadd_ps(a[2], b, c); a[3] = _mm512_fmadd_ps(a[3], b, c);
		a[4] = _mm512_fmadd_ps(a[4], b, c); a[5] = _mm512_fmadd_ps(a[5], b, c);
		a[6] = _mm512_fmadd_ps(a[6], b, c); a[7] = _mm512_fmadd_ps(a[7], b, c);
		a[8] = _mm512_fmadd_ps(a[8], b, c); a[9] = _mm512_fmadd_ps(a[9], b, c);
		a[10] = _mm512_fmadd_ps(a[10], b, c); a[11] = _mm512_fmadd_ps(a[11], b, c);
	}
	__m512 s = a[0];
	for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, a[j]);
	return _mm512_reduce_add_ps(s);
}
#endif

static float fma_portable(long iters) {
	float a[16];
	for (int j = 0; j < 16; j++) a[j] = 0.1f * (float)(j + 1);
	for (long i = 0; i < iters; i++)
		for (int j = 0; j < 16; j++) a[j] = a[j] * 0.999999f + 1e-7f;
	float s = 0;
	for (int j = 0; j < 16; j++) s += a[j];
	return s;
}

int kiln_peak_kind(void) {
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f")) return 2;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
	return 0;
}

double kiln_peak_flops_per_iter(void) {
	switch (kiln_peak_kind()) {
	case 2: return 12.0 * 16 * 2;
	case 1: return 12.0 * 8 * 2;
	}
	return 16.0 * 2;
}

float kiln_peak_run(long iters) {
#if defined(__x86_64__) || defined(__i386__)
	switch (kiln_peak_kind()) {
	case 2: return fma_avx512(iters);
	case 1: return fma_avx2(iters);
	}
#endif
	return fma_portable(iters);
}
