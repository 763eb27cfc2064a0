// conv_wino_cpu.c: float32 3×3 stride-1 "same" convolutions (padding 1) by
// Winograd's minimal filtering F(2×2, 3×3) (Lavin and Gray, "Fast Algorithms
// for Convolutional Neural Networks", 2015). Each 2×2 block of outputs is
//
//	Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A
//
// over the 4×4 input tiles d_c around it, so a tile costs 16 products per
// (input, output) channel pair where the direct sum costs 36: the sum over c
// is 16 GEMMs, one per position ξ of the 4×4 tile, Cout × Cin by Cin ×
// tiles, run by conv_cpu.c's product kernel. The input gradient of such a
// convolution is another: the output gradient convolved with the weights
// turned 180° and transposed (kiln_wino_pack's flip). The weight gradient
// is 16 products too (kiln_wino_dw, at the end of this file).
//
// Numerics: the input and output transforms only add and subtract (a fixed
// order, no contraction), and the weight transform is computed in double and
// rounded once, so every ISA level gives the same bits, and so does every
// run. The result differs from the direct sum by the transforms' roundings,
// a few ulps of the inputs' magnitude (the tests bound it against the
// float64 reference).

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include <string.h>

#include "conv_cpu.h"
#include "isa_cpu.h"

#define BODY static inline __attribute__((always_inline))

// Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1], G = [1 0 0; ½ ½ ½; ½ −½ ½;
// 0 0 1], Aᵀ = [1 1 1 0; 0 1 −1 −1]. Position ξ = 4a + b is row a, column b
// of the transformed tile.

// Layout. Tile (ty, tx) is column f = ty·(tw + 1) + tx of the products,
// tw = ⌈w/2⌉; the column tx = tw of each tile row is junk (computed, never
// written out), so that each transform is one loop over a run of tile rows
// (rows of 7 to 16 tiles were mostly loop overhead). Each input plane gets a
// padded copy with rows 2(tw + 1) long, every other row in each of its two
// halves (kiln_wino_pad; what lies outside the plane is zero): tile f reads
// its columns at 2f … 2f + 3, and tile row ty its four rows at row ty and ty
// + 1 of the two halves. The products run over blocks of tile rows of about
// BLOCK_COLS columns, so that the transformed input and output of a block
// (16·(k + m)·cols floats) stay in L2 between the transforms and the 16
// products. On Zen 4 (1 MiB of L2 a core, one core) 144 columns ran cnn's
// layers 4–10% faster than 72 and 8–10% faster than 40; 192, 256 and whole
// planes were within 3% of 144.
enum { BLOCK_COLS = 144 };

// geom is one plane's tiling.
typedef struct {
	long th, tw1, rl, pf; // tile rows; tile columns with the junk one; padded row; one parity's padded floats
	long nb, cols;        // tile rows per block; the block's columns, nb·tw1
} geom;

static geom tiling(long h, long w) {
	geom g;
	g.th = (h + 1) / 2;
	g.tw1 = (w + 1) / 2 + 1;
	g.rl = 2 * g.tw1;
	g.pf = (g.th + 1) * g.rl + 4; // + the 4 floats the last junk column reads
	const long blocks = (g.th * g.tw1 + BLOCK_COLS - 1) / BLOCK_COLS;
	g.nb = (g.th + blocks - 1) / blocks;
	g.cols = g.nb * g.tw1;
	return g;
}

// kiln_wino_scratch is the floats kiln_wino_conv needs for k input and m
// output channels of an h×w plane: the padded planes, a block's transformed
// input and output, and the transforms' rows.
long kiln_wino_scratch(long k, long m, long h, long w) {
	const geom g = tiling(h, w);
	return 2 * k * g.pf + 16 * (k + m) * g.cols + 8 * (g.nb + 1) * g.tw1 + 2 * g.nb * g.rl;
}

// kiln_wino_pack_n writes U_ξ = (G g Gᵀ)_ξ, G n×3 applied in double by
// gtimes, for each row i < m and column r < k of the product, g the 3×3
// kernel at w + i·si + r·sr (turned 180° when flip), as mr-row panels:
// U_ξ[i, r] at dst + ξ·mp·k + p·k + r·mr + (i − p) for the panel p holding
// i, mp = m rounded up to mr, rows past m zero (kiln_conv_pack's layout with
// one tap).
void kiln_wino_pack_n(float *dst, const float *w, long m, long k, long si, long sr, int flip, int mr, int n,
                      kiln_wino_gtimes gtimes) {
	const long mp = (m + mr - 1) / mr * mr;
	memset(dst, 0, (size_t)(n * n * mp * k) * sizeof(float));
	for (long i = 0; i < m; i++)
		for (long r = 0; r < k; r++) {
			const float *g = w + i * si + r * sr;
			double gg[3][3], t[6][3];
			for (int a = 0; a < 9; a++) gg[a / 3][a % 3] = g[flip ? 8 - a : a];
			for (int b = 0; b < 3; b++) gtimes(t[0] + b, 3, gg[0][b], gg[1][b], gg[2][b]); // t = G g
			const long p = i / mr * mr;
			float *d = dst + p * k + r * mr + (i - p);
			for (int a = 0; a < n; a++) { // U = t Gᵀ
				double u[6];
				gtimes(u, 1, t[a][0], t[a][1], t[a][2]);
				for (int b = 0; b < n; b++) d[(n * a + b) * mp * k] = (float)u[b];
			}
		}
}

// gtimes2 writes G (g0, g1, g2)ᵀ at u, s apart, in double.
static void gtimes2(double *u, int s, double g0, double g1, double g2) {
	u[0] = g0;
	u[s] = (g0 + g1 + g2) * 0.5;
	u[2 * s] = (g0 - g1 + g2) * 0.5;
	u[3 * s] = g2;
}

// kiln_wino_pack is kiln_wino_pack_n for F(2×2, 3×3).
void kiln_wino_pack(float *dst, const float *w, long m, long k, long si, long sr, int flip, int mr) {
	kiln_wino_pack_n(dst, w, m, k, si, sr, flip, mr, 4, gtimes2);
}

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

// halves writes the horizontal transform d·B of every tile of n padded rows
// at p (rows 2(tw + 1) long, as the tiles' column f reads 2f … 2f + 3):
// h_b[f] at hb + b·hs.
BODY void halves(float *restrict hb, long hs, const float *restrict p, long n) {
	for (long f = 0; f < n; f++) {
		const float d0 = p[2 * f], d1 = p[2 * f + 1], d2 = p[2 * f + 2], d3 = p[2 * f + 3];
		hb[f] = d0 - d2;
		hb[hs + f] = d1 + d2;
		hb[2 * hs + f] = d2 - d1;
		hb[3 * hs + f] = d1 - d3;
	}
}

// kiln_wino_pad_body writes the padded planes of the k planes of x (h×w),
// each shifted off rows down and off columns right: row r is padded row s =
// r + off, in plane c's first half (p + 2c·pf) at s/2 when s is even, in its
// second half (pf further) when s is odd. The input transforms pad with off
// 1 (tile row ty reads rows 2ty − 1 … 2ty + 2: first[ty], second[ty],
// first[ty + 1], second[ty + 1]), the output gradient of the weight
// gradient with 0 (tile row ty's rows 2ty and 2ty + 1: first[ty],
// second[ty]).
BODY void kiln_wino_pad_body(float *restrict p, const float *restrict x, long k, long h, long w, long off) {
	const geom g = tiling(h, w);
	memset(p, 0, (size_t)(2 * k * g.pf) * sizeof(float));
	for (long c = 0; c < k; c++) {
		const float *xc = x + c * h * w;
		for (long r = 0; r < h; r++) {
			const long s = r + off;
			memcpy(p + 2 * c * g.pf + (s & 1) * g.pf + s / 2 * g.rl + off, xc + r * w, (size_t)w * sizeof(float));
		}
	}
}
KILN_ISA_DISPATCH(kiln_wino_pad, (float *restrict p, const float *restrict x, long k, long h, long w, long off),
                  (p, x, k, h, w, off))

// kiln_wino_input_body writes V_ξ[c, f] = (Bᵀ d B)_ξ at v + (ξ·k + c)·ldv + f
// for the nb tile rows from ty0 of the k padded planes p, through the rows'
// halves in tmp.
BODY void kiln_wino_input_body(float *restrict v, long ldv, const float *restrict p, long k, long h, long w,
                               long ty0, long nb, float *restrict tmp) {
	const geom g = tiling(h, w);
	const long hs = (nb + 1) * g.tw1, t = nb * g.tw1, tw1 = g.tw1;
	float *he = tmp, *ho = tmp + 4 * hs;
	for (long c = 0; c < k; c++) {
		const float *first = p + 2 * c * g.pf + ty0 * g.rl; // rows 2ty − 1; second: rows 2ty
		halves(ho, hs, first, hs);
		halves(he, hs, first + g.pf, hs);
		for (long b = 0; b < 4; b++) {
			const float *ev = he + b * hs, *ov = ho + b * hs;
			float *v0 = v + ((0 + b) * k + c) * ldv, *v1 = v + ((4 + b) * k + c) * ldv;
			float *v2 = v + ((8 + b) * k + c) * ldv, *v3 = v + ((12 + b) * k + c) * ldv;
			for (long i = 0; i < t; i++) {
				const float d0 = ov[i], d1 = ev[i], d2 = ov[i + tw1], d3 = ev[i + tw1];
				v0[i] = d0 - d2;
				v1[i] = d1 + d2;
				v2[i] = d2 - d1;
				v3[i] = d1 - d3;
			}
		}
	}
}
KILN_ISA_DISPATCH(kiln_wino_input,
                  (float *restrict v, long ldv, const float *restrict p, long k, long h, long w, long ty0, long nb,
                   float *restrict tmp),
                  (v, ldv, p, k, h, w, ty0, nb, tmp))

// kiln_wino_output_body writes rows 2ty0 … 2(ty0 + nb) − 1 (those inside
// the plane) of the m planes of y (h×w): the 2×2 block of tile f of plane c
// is Aᵀ M A (+ bias[c]) from M_ξ[c, f] at mm + (ξ·m + c)·ldm + f. The blocks'
// top and bottom rows go to two padded row sets first (ze, zo: tile f at 2f
// and 2f + 1), then each output row is one copy.
BODY void kiln_wino_output_body(float *restrict y, const float *restrict mm, long ldm, const float *bias, long m,
                                long h, long w, long ty0, long nb, float *restrict tmp) {
	const geom g = tiling(h, w);
	const long t = nb * g.tw1, r0 = 2 * ty0, r1 = 2 * (ty0 + nb) < h ? 2 * (ty0 + nb) : h;
	float *ze = tmp, *zo = tmp + nb * g.rl;
	for (long c = 0; c < m; c++) {
		const float *p[16];
		for (int xi = 0; xi < 16; xi++) p[xi] = mm + (xi * m + c) * ldm;
		const float bc = bias ? bias[c] : 0;
		for (long i = 0; i < t; i++) {
			float s0[4], s1[4];
			for (int b = 0; b < 4; b++) {
				s0[b] = p[b][i] + p[4 + b][i] + p[8 + b][i];
				s1[b] = p[4 + b][i] - p[8 + b][i] - p[12 + b][i];
			}
			ze[2 * i] = s0[0] + s0[1] + s0[2] + bc;
			ze[2 * i + 1] = s0[1] - s0[2] - s0[3] + bc;
			zo[2 * i] = s1[0] + s1[1] + s1[2] + bc;
			zo[2 * i + 1] = s1[1] - s1[2] - s1[3] + bc;
		}
		float *yc = y + c * h * w;
		for (long r = r0; r < r1; r++)
			memcpy(yc + r * w, ((r & 1) ? zo : ze) + (r - r0) / 2 * g.rl, (size_t)w * sizeof(float));
	}
}
KILN_ISA_DISPATCH(kiln_wino_output,
                  (float *restrict y, const float *restrict mm, long ldm, const float *bias, long m, long h, long w,
                   long ty0, long nb, float *restrict tmp),
                  (y, mm, ldm, bias, m, h, w, ty0, nb, tmp))
#pragma GCC pop_options

// kiln_wino_conv computes y (m planes of h×w) = the 3×3 "same" convolution of
// x (k planes of h×w) with the weights u packed by kiln_wino_pack for width
// vl's panels, plus bias (NULL for none), in scratch of kiln_wino_scratch
// floats. It returns 0, doing nothing, when k is past the product kernel's
// reduction.
int kiln_wino_conv(float *y, const float *x, const float *u, const float *bias, long k, long m, long h, long w,
                   float *scratch, int vl) {
	if (k > kiln_conv_cpu_maxk()) return 0;
	const geom g = tiling(h, w);
	const long mr = kiln_conv_cpu_panel(vl), mp = (m + mr - 1) / mr * mr, ld = g.cols;
	float *p = scratch, *v = p + 2 * k * g.pf, *mm = v + 16 * k * ld, *tmp = mm + 16 * m * ld;
	kiln_wino_pad(p, x, k, h, w, 1);
	for (long ty0 = 0; ty0 < g.th; ty0 += g.nb) {
		const long nb = g.th - ty0 < g.nb ? g.th - ty0 : g.nb, cols = nb * g.tw1;
		kiln_wino_input(v, ld, p, k, h, w, ty0, nb, tmp);
		for (long xi = 0; xi < 16; xi++)
			kiln_conv_shift_gemm(mm + xi * m * ld, ld, m, u + xi * mp * k, k, 1, v + xi * k * ld, k * ld, ld, 1, 0,
			                     0, 0, 0, 1, cols, 0, 0, vl);
		kiln_wino_output(y, mm, ld, bias, m, h, w, ty0, nb, tmp);
	}
	return 1;
}

// The weight gradient. Winograd's sum is linear in g through U = G g Gᵀ, so
// the weights' gradient is dg = Gᵀ dU G with dU_ξ = Σ_tiles (Bᵀ d B)_ξ ·
// (A dY Aᵀ)_ξ over every tile of every image, dY the tile's 2×2 block of the
// output gradient (A dY Aᵀ is the adjoint of the output transform). dU is
// one product per ξ, summed over the tiles: dUᵀ_ξ[c, co] += Σ_f V_ξ[c, f] ·
// M'_ξ[co, f], run by conv_cpu.c's transposed weight-gradient kernel (one
// chain over the tiles per element, the same bits at every width). The
// caller turns dU into dg (G's halves are exact, see kiln_wino_pack).

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
// kiln_wino_adjoint_body writes M'_ξ[co, f] = (A dY Aᵀ)_ξ at mm + (ξ·m +
// co)·ldm + f for the nb tile rows from ty0 of the m output-gradient planes
// padded at p (off 0): tile f's block is first[2f], first[2f + 1],
// second[2f], second[2f + 1]; a junk tile reads the zero padding. With A =
// [1 0; 1 1; 1 −1; 0 −1], row a of A dY is y0 (a = 0), y0 + y1, y0 − y1, −y1.
// adjoint_row writes row a of M' (o: its four columns ldm·m apart) from row
// a of A dY, r0 and r1 per tile: o_b = r0, r0 + r1, r0 − r1, −r1.
#define ADJOINT_ROW(R0, R1)                                                                                  \
	for (long i = 0; i < t; i++) {                                                                       \
		const float r0 = (R0), r1 = (R1);                                                            \
		o[i] = r0;                                                                                   \
		o[s + i] = r0 + r1;                                                                          \
		o[2 * s + i] = r0 - r1;                                                                      \
		o[3 * s + i] = -r1;                                                                          \
	}
BODY void kiln_wino_adjoint_body(float *restrict mm, long ldm, const float *restrict p, long m, long h, long w,
                                 long ty0, long nb) {
	const geom g = tiling(h, w);
	const long t = nb * g.tw1, s = m * ldm;
	for (long c = 0; c < m; c++) {
		const float *y0 = p + 2 * c * g.pf + ty0 * g.rl, *y1 = y0 + g.pf;
		float *o = mm + c * ldm;
		ADJOINT_ROW(y0[2 * i], y0[2 * i + 1])
		o += 4 * s;
		ADJOINT_ROW(y0[2 * i] + y1[2 * i], y0[2 * i + 1] + y1[2 * i + 1])
		o += 4 * s;
		ADJOINT_ROW(y0[2 * i] - y1[2 * i], y0[2 * i + 1] - y1[2 * i + 1])
		o += 4 * s;
		ADJOINT_ROW(-y1[2 * i], -y1[2 * i + 1])
	}
}
#undef ADJOINT_ROW
KILN_ISA_DISPATCH(kiln_wino_adjoint,
                  (float *restrict mm, long ldm, const float *restrict p, long m, long h, long w, long ty0, long nb),
                  (mm, ldm, p, m, h, w, ty0, nb))
#pragma GCC pop_options

// kiln_wino_dw_scratch is the floats kiln_wino_dw needs.
long kiln_wino_dw_scratch(long k, long m, long h, long w, long ldt) {
	const geom g = tiling(h, w);
	return 2 * (k + m) * g.pf + 16 * (k + m) * g.cols + 16 * g.cols * ldt + 8 * (g.nb + 1) * g.tw1;
}

// kiln_wino_dw adds dUᵀ_ξ[c, co] at du + (ξ·k + c)·ldt + co from one image:
// x (k planes of h×w) and dy (m planes), in scratch of kiln_wino_dw_scratch
// floats; ldt, a multiple of 8, at least m. It returns 0, doing nothing,
// when k or ldt is past what the kernels take.
int kiln_wino_dw(float *du, long ldt, const float *x, const float *dy, long k, long m, long h, long w,
                 float *scratch, int vl) {
	if (k > kiln_conv_cpu_maxk() || ldt % 8 != 0 || ldt < m) return 0;
	const geom g = tiling(h, w);
	const long ld = g.cols;
	float *px = scratch, *pd = px + 2 * k * g.pf, *v = pd + 2 * m * g.pf, *mm = v + 16 * k * ld;
	float *mt = mm + 16 * m * ld, *tmp = mt + 16 * ld * ldt;
	kiln_wino_pad(px, x, k, h, w, 1);
	kiln_wino_pad(pd, dy, m, h, w, 0);
	for (long r = 0; r < 16 * ld && ldt > m; r++) memset(mt + r * ldt + m, 0, (size_t)(ldt - m) * sizeof(float));
	for (long ty0 = 0; ty0 < g.th; ty0 += g.nb) {
		const long nb = g.th - ty0 < g.nb ? g.th - ty0 : g.nb, cols = nb * g.tw1;
		kiln_wino_input(v, ld, px, k, h, w, ty0, nb, tmp);
		kiln_wino_adjoint(mm, cols, pd, m, h, w, ty0, nb);
		for (long xi = 0; xi < 16; xi++) {
			kiln_conv_dyt(mt + xi * ld * ldt, ldt, mm + xi * m * cols, m, 1, cols, cols);
			kiln_conv_shift_dwt(du + xi * k * ldt, ldt, 0, mt + xi * ld * ldt, ldt, k, 1, v + xi * k * ld, ld, 1, 0,
			                    0, 0, 1, cols, 0, vl);
		}
	}
	return 1;
}
#endif
