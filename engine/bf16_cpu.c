// bf16_cpu.c: float32 ↔ bfloat16 for float32 slices, with bf16.go's rounding
// (VCVTNEPS2BF16's: nearest even, denormals to signed zero, NaNs quieted).
// Where the CPU has AVX512_BF16 and the level in use is avx512 the
// instruction itself rounds; elsewhere an integer loop does the same, compiled
// once per ISA level. Both give the bits of bf16.go's ToBF16.

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include <immintrin.h>

#include "bf16_cpu.h"
#include "isa_cpu.h"

#define BODY static inline __attribute__((always_inline))

int kiln_cpu_bf16(void) {
	static int has = -1;
	int h = __atomic_load_n(&has, __ATOMIC_RELAXED);
	if (h < 0) {
		__builtin_cpu_init();
		h = __builtin_cpu_supports("avx512bf16") && kiln_isa_supported() >= KILN_ISA_AVX512;
		__atomic_store_n(&has, h, __ATOMIC_RELAXED);
	}
	return h && kiln_isa() >= KILN_ISA_AVX512;
}

BODY void f32_to_bf16_loop_body(uint16_t *restrict dst, const uint32_t *restrict src, long n) {
	for (long i = 0; i < n; i++) dst[i] = kiln_round_bf16(src[i]);
}
KILN_ISA_DISPATCH(f32_to_bf16_loop, (uint16_t *restrict dst, const uint32_t *restrict src, long n), (dst, src, n))

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void f32_to_bf16_avx512(uint16_t *dst,
                                                                                              const float *src,
                                                                                              long n) {
	long i = 0;
	for (; i + 16 <= n; i += 16)
		_mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
	if (i < n) {
		const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
		_mm256_mask_storeu_epi16(dst + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i)));
	}
}

void kiln_f32_to_bf16(uint16_t *dst, const float *src, long n) {
	if (kiln_cpu_bf16())
		f32_to_bf16_avx512(dst, src, n);
	else
		f32_to_bf16_loop(dst, (const uint32_t *)src, n);
}

// kiln_bf16_round_f32 writes src rounded to bf16 and widened back, as
// float32, into dst (which may be src); for CPUs with AVX512_BF16 only.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void kiln_bf16_round_f32(float *dst, const float *src,
                                                                                       long n) {
	for (long i = 0; i < n; i += 16) {
		const __mmask16 m = kiln_mask16(n - i);
		const __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
		_mm512_mask_storeu_epi32(dst + i, m, _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
	}
}

BODY void kiln_bf16_to_f32_body(float *restrict dst, const uint16_t *restrict src, long n) {
	uint32_t *d = (uint32_t *)dst;
	for (long i = 0; i < n; i++) d[i] = (uint32_t)src[i] << 16;
}
KILN_ISA_DISPATCH(kiln_bf16_to_f32, (float *restrict dst, const uint16_t *restrict src, long n), (dst, src, n))

#endif // __x86_64__
