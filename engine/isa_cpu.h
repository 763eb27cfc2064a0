// isa_cpu.h: the instruction-set level the C fast paths run at (see
// isa_cpu.c), and KILN_ISA_DISPATCH, which compiles one loop once per level.
#ifndef KILN_ISA_CPU_H
#define KILN_ISA_CPU_H

enum {
	KILN_ISA_GENERIC = 0, // x86-64 baseline (SSE2)
	KILN_ISA_AVX2 = 1,    // AVX2 and FMA
	KILN_ISA_AVX512 = 2,  // AVX-512 F, BW, VL and DQ
};

// kiln_isa_supported is the highest level this CPU and its OS run.
int kiln_isa_supported(void);

// kiln_isa is the level in use: kiln_isa_supported unless lowered.
int kiln_isa(void);

// kiln_set_isa sets the level in use, at most the supported one, and
// returns the level now in use.
int kiln_set_isa(int level);

// kiln_cpu_zmm_split reports whether the CPU runs each 512-bit FMA as two
// 256-bit halves (AMD Zen 4, family 19h, the one with AVX-512): one zmm FMA
// a cycle where Intel's cores issue two, so a tile that loads once per FMA
// still keeps the pipe busy there.
int kiln_cpu_zmm_split(void);

// KILN_ISA_DISPATCH(name, params, args) defines void name params, which runs
// name##_body args compiled for AVX-512, for AVX2 (without FMA: the loops
// that used target_clones("avx2") keep their arithmetic) and for the
// baseline, chosen at each call by kiln_isa(). name##_body must be a static
// inline function with __attribute__((always_inline)) and no target of its
// own, so that the compiler inlines and vectorises it into each variant.
#define KILN_ISA_DISPATCH(name, params, args)                                                        \
	__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) static void name##_avx512 params { \
		name##_body args;                                                                    \
	}                                                                                            \
	__attribute__((target("avx2"))) static void name##_avx2 params { name##_body args; }        \
	static void name##_generic params { name##_body args; }                                    \
	void name params {                                                                           \
		switch (kiln_isa()) {                                                                \
		case KILN_ISA_AVX512:                                                                \
			name##_avx512 args;                                                          \
			return;                                                                      \
		case KILN_ISA_AVX2:                                                                  \
			name##_avx2 args;                                                            \
			return;                                                                      \
		default:                                                                             \
			name##_generic args;                                                         \
		}                                                                                    \
	}

#endif
