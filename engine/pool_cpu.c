// The 2×2, stride-2 max pool forward in C, because Go does not vectorise it:
// compare and blend, 8 outputs at a time with AVX2 and 16 with AVX-512.

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include <stdint.h>
#include "pool_cpu.h"
#include "isa_cpu.h"

// No code reads FP exception flags; with trapping math on, gcc will not turn
// the compares into blends (see activation_cpu.c).
#pragma GCC optimize("no-trapping-math")

#include <immintrin.h>

// pool_row_avx2 does one output row of ow ≥ 8 outputs eight at a time (the
// last eight overlap the previous block when ow is not a multiple of 8; they
// are recomputed to the same values): the two input rows are split into even
// and odd columns (a, b from r0; c, d from r1) and the first largest picked
// with strict compares and blends, as in the scalar loop. It returns non-zero
// when a NaN was met.
__attribute__((target("avx2"))) static int pool_row_avx2(float *restrict o, int32_t *restrict ai,
                                                          const float *r0, const float *r1, int32_t rowbase,
                                                          int w, int ow) {
	__m256 nan = _mm256_setzero_ps();
	const __m256i lane2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
	const __m256i one = _mm256_set1_epi32(1), wv = _mm256_set1_epi32(w);
	for (int j0 = 0; j0 < ow; j0 += 8) {
		const int j = j0 + 8 <= ow ? j0 : ow - 8;
		__m256 p0 = _mm256_loadu_ps(r0 + 2 * j), p1 = _mm256_loadu_ps(r0 + 2 * j + 8);
		__m256 q0 = _mm256_loadu_ps(r1 + 2 * j), q1 = _mm256_loadu_ps(r1 + 2 * j + 8);
		// shuffle_ps works per 128-bit lane; the 64-bit permute restores order.
		__m256 a = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(p0, p1, 0x88)), 0xd8));
		__m256 b = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(p0, p1, 0xdd)), 0xd8));
		__m256 c = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(q0, q1, 0x88)), 0xd8));
		__m256 d = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(q0, q1, 0xdd)), 0xd8));
		nan = _mm256_or_ps(nan, _mm256_or_ps(_mm256_cmp_ps(a, b, _CMP_UNORD_Q), _mm256_cmp_ps(c, d, _CMP_UNORD_Q)));
		__m256 m = a;
		__m256i at = _mm256_add_epi32(_mm256_set1_epi32(rowbase + 2 * j), lane2);
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
		res = _mm256_castps_si256(
		    _mm256_blendv_ps(_mm256_castsi256_ps(res), _mm256_castsi256_ps(_mm256_add_epi32(ac, one)), gt));
		_mm256_storeu_ps(o + j, m);
		if (ai) _mm256_storeu_si256((__m256i *)(ai + j), res);
	}
	return _mm256_movemask_ps(nan);
}

// pool_row_avx512 is pool_row_avx2 sixteen outputs at a time (ow ≥ 16): the
// even and odd columns come out of two-register permutes, the picks are
// mask blends; the same compares in the same order, so the same results.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2"))) static int pool_row_avx512(
    float *restrict o, int32_t *restrict ai, const float *r0, const float *r1, int32_t rowbase, int w, int ow) {
	__mmask16 nan = 0;
	const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
	const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
	const __m512i one = _mm512_set1_epi32(1), wv = _mm512_set1_epi32(w);
	for (int j0 = 0; j0 < ow; j0 += 16) {
		const int j = j0 + 16 <= ow ? j0 : ow - 16;
		__m512 p0 = _mm512_loadu_ps(r0 + 2 * j), p1 = _mm512_loadu_ps(r0 + 2 * j + 16);
		__m512 q0 = _mm512_loadu_ps(r1 + 2 * j), q1 = _mm512_loadu_ps(r1 + 2 * j + 16);
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
		_mm512_storeu_ps(o + j, m);
		if (ai) _mm512_storeu_si512((void *)(ai + j), res);
	}
	return nan != 0;
}

// The first largest of a, b, c, d in that order wins, as in PyTorch; -0 and
// +0 tie. Returns 0, with out unspecified, when the plane holds a NaN: the
// caller then runs the ordered Go loop, which propagates NaN as PyTorch does.
int kiln_maxpool2x2_f32(float* restrict out, int32_t* restrict am, const float* restrict x, int w, int oh, int ow) {
	int nan = 0;
	const int avx2 = kiln_isa() >= KILN_ISA_AVX2, avx512 = kiln_isa() >= KILN_ISA_AVX512;
	for (int i = 0; i < oh; i++) {
		const float* r0 = x + 2 * i * w;
		const float* r1 = r0 + w;
		float* o = out + i * ow;
		int32_t rowbase = 2 * i * w;
		if (avx512 && ow >= 16) {
			nan |= pool_row_avx512(o, am ? am + i * ow : 0, r0, r1, rowbase, w, ow);
			continue;
		}
		if (avx2 && ow >= 8) {
			nan |= pool_row_avx2(o, am ? am + i * ow : 0, r0, r1, rowbase, w, ow);
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
				o[j] = m;
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
				o[j] = m;
			}
		}
	}
	return !nan;
}

#endif // __x86_64__
