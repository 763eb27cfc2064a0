// broadcast_cpu.c: broadcast multiply (broadcast.go) for float32, walking
// the same plan (merged axes, g's strides, the innermost run contiguous in x)
// with loops gcc vectorises. The sum of a broadcast scalar's gradient runs in
// eight fixed lanes added in a fixed tree; the AVX2 and default clones do the
// same arithmetic, so the bits do not depend on the CPU. out may be x, and
// dx may be dout (each element is read before it is written).

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include "broadcast_cpu.h"
// Products and sums stay separate roundings at every level (no fused
// multiply-add), so the levels give the same bits.
#pragma GCC optimize("fp-contract=off")

#include "isa_cpu.h"

// Each loop is compiled once per ISA level (KILN_ISA_DISPATCH at the end).
#define BODY static inline __attribute__((always_inline))

// next advances the outer index and returns g's offset for the next run.
static long next(long k, const long *size, const long *stride, long *idx, long goff) {
	for (long d = k - 2; d >= 0; d--) {
		idx[d]++;
		goff += stride[d];
		if (idx[d] < size[d]) return goff;
		goff -= stride[d] * size[d];
		idx[d] = 0;
	}
	return goff;
}

BODY void kiln_bmul_f32_body(float *out, const float *x, const float *g, long len, long k,
                          const long *size, const long *stride, int scalar) {
	const long inner = size[k - 1];
	long idx[8] = {0}, goff = 0;
	for (long xo = 0; xo < len; xo += inner) {
		const float *xs = x + xo;
		float *os = out + xo;
		if (scalar) {
			const float gv = g[goff];
			for (long i = 0; i < inner; i++) os[i] = xs[i] * gv;
		} else {
			const float *gs = g + goff;
			for (long i = 0; i < inner; i++) os[i] = xs[i] * gs[i];
		}
		goff = next(k, size, stride, idx, goff);
	}
}

// dot8 is Σ d[i]·x[i] in eight lanes, the tail in lane 0, then a fixed tree.
static inline float dot8(const float *d, const float *x, long n) {
	float acc[8] = {0};
	long i = 0;
	for (; i + 8 <= n; i += 8)
		for (int l = 0; l < 8; l++) acc[l] += d[i + l] * x[i + l];
	for (; i < n; i++) acc[0] += d[i] * x[i];
	return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

BODY void kiln_bmul_backward_f32_body(float *dx, float *dg, const float *dout,
                                   const float *x, const float *g, long len, long k,
                                   const long *size, const long *stride, int scalar) {
	const long inner = size[k - 1];
	long idx[8] = {0}, goff = 0;
	for (long xo = 0; xo < len; xo += inner) {
		const float *xs = x + xo, *ds = dout + xo;
		float *dxs = dx ? dx + xo : 0;
		if (scalar) {
			const float gv = g[goff];
			if (dg) dg[goff] += dot8(ds, xs, inner);
			if (dxs)
				for (long i = 0; i < inner; i++) dxs[i] = ds[i] * gv;
		} else {
			const float *gs = g + goff;
			if (dg) {
				float *dgs = dg + goff;
				for (long i = 0; i < inner; i++) dgs[i] += ds[i] * xs[i];
			}
			if (dxs)
				for (long i = 0; i < inner; i++) dxs[i] = ds[i] * gs[i];
		}
		goff = next(k, size, stride, idx, goff);
	}
}

KILN_ISA_DISPATCH(kiln_bmul_f32, (float *out, const float *x, const float *g, long len, long k, const long *size, const long *stride, int scalar), (out, x, g, len, k, size, stride, scalar))
KILN_ISA_DISPATCH(kiln_bmul_backward_f32, (float *dx, float *dg, const float *dout, const float *x, const float *g, long len, long k, const long *size, const long *stride, int scalar), (dx, dg, dout, x, g, len, k, size, stride, scalar))

#endif // __x86_64__
