// isa_cpu.c: which instruction-set level the C fast paths use. The CPU is
// asked once (CPUID through gcc's __builtin_cpu_supports, which also checks
// that the OS saves the wide registers); the level can be lowered for tests
// and by KILN_CPU_ISA (engine/isa_cpu_cgo.go), never raised past what the
// CPU runs. Every fast path reads it at each call, so a change takes effect
// at the next op.
#if defined(__x86_64__)
#include <cpuid.h>

#include "isa_cpu.h"

static int supported = -1;
static int in_use = -1;

int kiln_isa_supported(void) {
	int s = __atomic_load_n(&supported, __ATOMIC_ACQUIRE);
	if (s >= 0) return s;
	__builtin_cpu_init();
	s = KILN_ISA_GENERIC;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
		s = KILN_ISA_AVX2;
		if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
			s = KILN_ISA_AVX512;
	}
	__atomic_store_n(&supported, s, __ATOMIC_RELEASE);
	return s;
}

int kiln_isa(void) {
	int l = __atomic_load_n(&in_use, __ATOMIC_RELAXED);
	return l >= 0 ? l : kiln_isa_supported();
}

int kiln_set_isa(int level) {
	int s = kiln_isa_supported();
	if (level > s) level = s;
	if (level < KILN_ISA_GENERIC) level = KILN_ISA_GENERIC;
	__atomic_store_n(&in_use, level, __ATOMIC_RELAXED);
	return level;
}

int kiln_cpu_zmm_split(void) {
	unsigned a, b, c, d;
	// "AuthenticAMD" in EBX, EDX, ECX of leaf 0.
	if (!__get_cpuid(0, &a, &b, &c, &d) || b != 0x68747541 || d != 0x69746e65 || c != 0x444d4163) return 0;
	if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
	unsigned family = (a >> 8) & 0xf;
	if (family == 0xf) family += (a >> 20) & 0xff;
	return family == 0x19 && kiln_isa_supported() >= KILN_ISA_AVX512;
}
#endif
