// Float32 loops for channelpool.go: CBAM's pooling across channels, the
// global max of each plane, and gMLP's swap of the last two axes. Every
// result has the bits of the Go loops (the reference, and the float64
// path): the channel sum runs in channel order for each pixel, vectors span
// pixels, never channels; the maxima compare as Go does (a NaN never wins
// `v > m`), and the transpose only moves bits.

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include "channelpool_cpu.h"
#include "transpose_cpu.h"
// No code here reads floating-point exception flags; without trapping math
// gcc turns the selects into blends and vectorises the loops. No fused
// multiply-add, so every level rounds as Go does.
#pragma GCC optimize("no-trapping-math", "fp-contract=off")
#include <immintrin.h>
#include <stdint.h>

#include "isa_cpu.h"

// Each loop is compiled once per ISA level (KILN_ISA_DISPATCH at the end).
#define BODY static inline __attribute__((always_inline))

// Pixels per block: a block's sums, maxima, argmaxes (or gradients) stay in
// L1 while the channels stream past.
#define POOL_BLOCK 512

BODY void pool_block(float *restrict mean, float *restrict mx, int32_t *restrict am, const float *restrict x,
                     long c, long hw, long len, float inv) {
	for (long p = 0; p < len; p++) {
		mean[p] = x[p];
		mx[p] = x[p];
		am[p] = 0;
	}
	for (long ch = 1; ch < c; ch++) {
		const float *plane = x + ch * hw;
		for (long p = 0; p < len; p++) {
			float v = plane[p], m = mx[p];
			// All bits set where v wins; false for a NaN on either side, as in Go.
			// Masks, not `if`: gcc would sink a conditional store, which
			// the baseline level cannot vectorise.
			int32_t win = -(int32_t)(v > m);
			mean[p] += v;
			mx[p] = win ? v : m;
			am[p] = (am[p] & ~win) | ((int32_t)ch & win);
		}
	}
	for (long p = 0; p < len; p++) mean[p] *= inv;
}

BODY void kiln_channelpool_forward_f32_body(float *restrict out, int32_t *restrict am, const float *restrict x, long n,
                                            long c, long hw) {
	const float inv = 1.0f / (float)c;
	for (long i = 0; i < n; i++) {
		float *mean = out + i * 2 * hw;
		for (long p0 = 0; p0 < hw; p0 += POOL_BLOCK) {
			long len = hw - p0 < POOL_BLOCK ? hw - p0 : POOL_BLOCK;
			pool_block(mean + p0, mean + hw + p0, am + i * hw + p0, x + i * c * hw + p0, c, hw, len, inv);
		}
	}
}

BODY void unpool_block(float *restrict dx, const float *restrict dmean, const float *restrict dmax,
                       const int32_t *restrict am, long c, long hw, long len, float inv) {
	float g[POOL_BLOCK];
	for (long p = 0; p < len; p++) g[p] = dmean[p] * inv;
	for (long ch = 0; ch < c; ch++) {
		float *plane = dx + ch * hw;
		// A select, not g + (winner ? dmax : 0): adding +0 would turn a −0 into +0.
		for (long p = 0; p < len; p++) plane[p] = am[p] == ch ? g[p] + dmax[p] : g[p];
	}
}

BODY void kiln_channelpool_backward_f32_body(float *restrict dx, const float *restrict dout, const int32_t *restrict am,
                                             long n, long c, long hw) {
	const float inv = 1.0f / (float)c;
	for (long i = 0; i < n; i++) {
		const float *dmean = dout + i * 2 * hw;
		for (long p0 = 0; p0 < hw; p0 += POOL_BLOCK) {
			long len = hw - p0 < POOL_BLOCK ? hw - p0 : POOL_BLOCK;
			unpool_block(dx + i * c * hw + p0, dmean + p0, dmean + hw + p0, am + i * hw + p0, c, hw, len, inv);
		}
	}
}

// Lanes of the global max: lane l follows elements l, l+16, l+32, …
#define MAX_LANES 16

// takes is Go's step of the global max: a larger value, or the first NaN.
BODY int takes(float v, float best) { return (v > best) | ((v != v) & (best == best)); }

// plane_max returns the index Go's loop picks in v[0..hw): the first NaN if
// there is one, else the first of the largest. The lanes each keep their own
// first pick; merging them by (NaN, value, lowest index) and finishing the
// tail in order gives the same index.
BODY int32_t plane_max(const float *restrict v, long hw) {
	float best = v[0];
	int32_t at = 0;
	long i = 0;
	if (hw >= 2 * MAX_LANES) {
		float lb[MAX_LANES];
		int32_t la[MAX_LANES];
		for (int l = 0; l < MAX_LANES; l++) {
			lb[l] = v[l];
			la[l] = l;
		}
		for (i = MAX_LANES; i + MAX_LANES <= hw; i += MAX_LANES)
			for (int l = 0; l < MAX_LANES; l++) {
				float e = v[i + l], b = lb[l];
				// All bits set where e is taken; masks, not `if`, so that
				// gcc keeps the lanes in vectors.
				int32_t t = -(int32_t)takes(e, b);
				lb[l] = t ? e : b;
				la[l] = (la[l] & ~t) | ((int32_t)(i + l) & t);
			}
		best = lb[0];
		at = la[0];
		for (int l = 1; l < MAX_LANES; l++) {
			float b = lb[l];
			int better = best != best ? (b != b && la[l] < at) : (takes(b, best) || (b == best && la[l] < at));
			if (better) {
				best = b;
				at = la[l];
			}
		}
	}
	for (; i < hw; i++)
		if (takes(v[i], best)) {
			best = v[i];
			at = (int32_t)i;
		}
	return at;
}

BODY void kiln_globalmax_forward_f32_body(float *restrict out, int32_t *restrict am, const float *restrict x,
                                          long planes, long hw) {
	for (long p = 0; p < planes; p++) {
		int32_t at = plane_max(x + p * hw, hw);
		out[p] = x[p * hw + at];
		am[p] = at;
	}
}

KILN_ISA_DISPATCH(kiln_channelpool_forward_f32,
                  (float *restrict out, int32_t *restrict am, const float *restrict x, long n, long c, long hw),
                  (out, am, x, n, c, hw))
// The gates' fused input gradients (channelpool.go's channelGateBackward and
// spatialGateBackward): the same steps in the same order, each rounded (no
// contraction: see the pragma), so the same bits. dx may be dout: each
// element is read before it is written, and a plane's argmax element first.
BODY void kiln_channel_gate_backward_f32_body(float *dx, const float *dout, const float *restrict scale,
                                              const float *restrict davg, const float *restrict dmax,
                                              const int32_t *restrict am, long planes, long hw) {
	for (long p = 0; p < planes; p++) {
		const float s = scale[p], v = davg[p] / (float)hw;
		const float *o = dout + p * hw;
		float *d = dx + p * hw;
		const float at = (o[am[p]] * s + v) + dmax[p];
		for (long i = 0; i < hw; i++) d[i] = (o[i] * s + v) + 0.0f; // + the max pooling's +0: -0 becomes +0
		d[am[p]] = at;
	}
}

BODY void kiln_spatial_gate_backward_f32_body(float *dx, const float *dout, const float *restrict att,
                                              const float *restrict dpooled, const int32_t *restrict am, long n,
                                              long c, long hw) {
	const float inv = 1.0f / (float)c;
	for (long i = 0; i < n; i++) {
		const float *a = att + i * hw, *dmean = dpooled + i * 2 * hw, *dmx = dmean + hw;
		const int32_t *ami = am + i * hw;
		for (long ch = 0; ch < c; ch++) {
			const float *o = dout + (i * c + ch) * hw;
			float *d = dx + (i * c + ch) * hw;
			for (long p = 0; p < hw; p++) {
				float u = dmean[p] * inv;
				if (ami[p] == ch) u = u + dmx[p];
				d[p] = o[p] * a[p] + u;
			}
		}
	}
}

KILN_ISA_DISPATCH(kiln_channel_gate_backward_f32,
                  (float *dx, const float *dout, const float *restrict scale, const float *restrict davg,
                   const float *restrict dmax, const int32_t *restrict am, long planes, long hw),
                  (dx, dout, scale, davg, dmax, am, planes, hw))
KILN_ISA_DISPATCH(kiln_spatial_gate_backward_f32,
                  (float *dx, const float *dout, const float *restrict att, const float *restrict dpooled,
                   const int32_t *restrict am, long n, long c, long hw),
                  (dx, dout, att, dpooled, am, n, c, hw))
KILN_ISA_DISPATCH(kiln_channelpool_backward_f32,
                  (float *restrict dx, const float *restrict dout, const int32_t *restrict am, long n, long c, long hw),
                  (dx, dout, am, n, c, hw))
KILN_ISA_DISPATCH(kiln_globalmax_forward_f32,
                  (float *restrict out, int32_t *restrict am, const float *restrict x, long planes, long hw),
                  (out, am, x, planes, hw))

// The transpose moves bits only, so it needs no per-level twin: an 8×8
// register transpose at AVX2 and above, a tiled plain loop otherwise and for
// the edges.

// Tile of the plain loop and of the blocks, in elements per side: a tile of
// x and of out stays in L1.
#define TRANSPOSE_TILE 32

// transpose_plain writes out[q·a + p] = x[p·b + q] for p in [p0,p1), q in [q0,q1).
static void transpose_plain(float *restrict out, const float *restrict x, long a, long b, long p0, long p1, long q0,
                            long q1) {
	for (long pt = p0; pt < p1; pt += TRANSPOSE_TILE)
		for (long qt = q0; qt < q1; qt += TRANSPOSE_TILE) {
			long pe = pt + TRANSPOSE_TILE < p1 ? pt + TRANSPOSE_TILE : p1;
			long qe = qt + TRANSPOSE_TILE < q1 ? qt + TRANSPOSE_TILE : q1;
			for (long p = pt; p < pe; p++)
				for (long q = qt; q < qe; q++) out[q * a + p] = x[p * b + q];
		}
}

// transpose_avx2 moves the whole 8×8 blocks, tile by tile, then the rows
// past the last block and the columns past it.
__attribute__((target("avx2"))) static void transpose_avx2(float *restrict out, const float *restrict x, long a,
                                                            long b) {
	const long a8 = a & ~7L, b8 = b & ~7L;
	for (long pt = 0; pt < a8; pt += TRANSPOSE_TILE)
		for (long qt = 0; qt < b8; qt += TRANSPOSE_TILE) {
			long pe = pt + TRANSPOSE_TILE < a8 ? pt + TRANSPOSE_TILE : a8;
			long qe = qt + TRANSPOSE_TILE < b8 ? qt + TRANSPOSE_TILE : b8;
			for (long p = pt; p < pe; p += 8)
				for (long q = qt; q < qe; q += 8) kiln_transpose8(out + q * a + p, a, x + p * b + q, b);
		}
	transpose_plain(out, x, a, b, 0, a8, b8, b);
	transpose_plain(out, x, a, b, a8, a, 0, b);
}

void kiln_transpose12_f32(float *out, const float *x, long n, long a, long b) {
	const int wide = kiln_isa() >= KILN_ISA_AVX2;
	for (long i = 0; i < n; i++) {
		float *oi = out + i * a * b;
		const float *xi = x + i * a * b;
		if (wide)
			transpose_avx2(oi, xi, a, b);
		else
			transpose_plain(oi, xi, a, b, 0, a, 0, b);
	}
}

#endif // __x86_64__
