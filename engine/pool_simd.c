// The 2×2, stride-2 max pool forward in C, because gcc vectorises this loop
// (compare and blend, 8 outputs at a time with AVX2) and Go does not.
#include <stdint.h>
#include "pool_simd.h"

// No code reads FP exception flags; with trapping math on, gcc will not turn
// the compares into blends (see activation.c).
#pragma GCC optimize("no-trapping-math")

// The first largest of a, b, c, d in that order wins, as in PyTorch; -0 and
// +0 tie. Returns 0, with out unspecified, when the plane holds a NaN: the
// caller then runs the ordered Go loop, which propagates NaN as PyTorch does.
__attribute__((target_clones("avx2", "default")))
int kiln_maxpool2x2_f32(float* restrict out, int32_t* restrict am, const float* restrict x, int w, int oh, int ow) {
	int nan = 0;
	for (int i = 0; i < oh; i++) {
		const float* r0 = x + 2 * i * w;
		const float* r1 = r0 + w;
		float* o = out + i * ow;
		int32_t rowbase = 2 * i * w;
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
