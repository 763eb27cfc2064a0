// conv_wino4_cpu.c: float32 3×3 stride-1 "same" convolutions by Winograd's
// F(4×4, 3×3), the larger tiling of conv_wino_cpu.c's F(2×2, 3×3): each 4×4
// block of outputs is Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A over the 6×6
// input tiles d_c around it, 36 products per (input, output) channel pair
// where F(2×2) takes 64 for the same 16 outputs and the direct sum 144: the
// forward, the input gradient (the same convolution of the output gradient
// with the weights turned 180° and transposed) and the weight gradient (at
// the end of this file).
//
// Numerics: B and A hold only 0, ±1, ±2, ±4, ±5 and ±8, and the transforms
// below multiply only by powers of two (exact), adding in a fixed order with
// no contraction; G is applied in double and rounded once. So every ISA
// level gives the same bits, and so does every run. The price of the larger
// tile is rounding: the transformed values reach several times the inputs'
// magnitude, and the result differs from the direct sum by about ten times
// F(2×2)'s error (the tests bound both against the float64 reference).

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include <string.h>

#include "conv_cpu.h"
#include "isa_cpu.h"

#define BODY static inline __attribute__((always_inline))

// Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0;
// 0 2 −1 −2 1 0; 0 4 0 −5 0 1], G = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙;
// 1/24 1/12 ⅙; 1/24 −1/12 ⅙; 0 0 1], Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0;
// 0 1 1 4 4 0; 0 1 −1 8 −8 1] (Lavin and Gray's points 0, ±1, ±2, ∞).
// Position ξ = 6a + b is row a, column b of the transformed tile.

// Layout. Tile (ty, tx) of image j is column f·ni + j of the products, f =
// ty·(tw + 1) + tx, tw = ⌈w/4⌉: the column tx = tw of each tile row is junk
// (as in conv_wino_cpu.c), and ni images of small planes share a block,
// their tiles interleaved (14×14 and 16×16 planes have 20 tiles: alone they
// are too few columns for the products, and too short runs for the
// transforms). Each input plane gets a padded copy dealt into sixteen phases
// by row mod 4 and column mod 4 (kiln_wino4_pad), each phase a matrix of
// rows tw + 1 groups long, a group being the ni images' floats side by side:
// tile f's six columns are groups f and f + 1 of the column phases 0 and 1
// and f of phases 2 and 3, and tile row ty's six rows row ty of each row
// phase and ty + 1 of phases 0 and 1, so every transform reads whole runs of
// adjacent floats (with its columns 4f … 4f + 5 in one row, the strided reads
// made the input transform three times slower). Planes of more tiles run
// alone (ni = 1) over blocks of tile rows of about BLOCK_COLS columns. Either
// way a block's transformed input and output (36·(k + m)·cols floats) stay
// in L2 between the transforms and the 36 products.
enum { BLOCK_COLS = 80 };

// geom is one plane's tiling.
typedef struct {
	long th, tw1, pf;  // tile rows; tile columns with the junk one; one phase's floats
	long nb, ni, cols; // tile rows per block; images per block; the block's columns, nb·tw1·ni
} geom;

static geom tiling(long h, long w) {
	geom g;
	g.th = (h + 3) / 4;
	g.tw1 = (w + 3) / 4 + 1;
	const long tiles = g.th * g.tw1, blocks = (tiles + BLOCK_COLS - 1) / BLOCK_COLS;
	g.nb = (g.th + blocks - 1) / blocks;
	g.ni = tiles * 2 > BLOCK_COLS ? 1 : BLOCK_COLS / tiles;
	g.pf = ((g.th + 1) * g.tw1 + 1) * g.ni + 1; // + the group the last junk column reads
	g.cols = g.nb * g.tw1 * g.ni;
	return g;
}

// kiln_wino4_scratch is the floats kiln_wino4_conv needs for k input and m
// output channels of an h×w plane: a block's padded planes, its transformed
// input and output, and the transforms' rows.
long kiln_wino4_scratch(long k, long m, long h, long w) {
	const geom g = tiling(h, w);
	return 16 * k * g.pf + 36 * (k + m) * g.cols + 24 * (g.nb + 1) * g.tw1 * g.ni;
}

// gtimes writes G (g0, g1, g2)ᵀ at u, s apart, in double. (Multiplying by
// ⅙ and 1/24 rather than dividing: the divisions were 5% of a forward of
// 16 images.)
static void gtimes(double *u, int s, double g0, double g1, double g2) {
	const double sixth = 1.0 / 6, sum = g0 + g2;
	u[0] = g0 * 0.25;
	u[s] = -(sum + g1) * sixth;
	u[2 * s] = -(sum - g1) * sixth;
	u[3 * s] = (g0 + 2 * g1 + 4 * g2) * (1.0 / 24);
	u[4 * s] = (g0 - 2 * g1 + 4 * g2) * (1.0 / 24);
	u[5 * s] = g2;
}

// kiln_wino4_pack is kiln_wino_pack_n for F(4×4, 3×3).
void kiln_wino4_pack(float *dst, const float *w, long m, long k, long si, long sr, int flip, int mr) {
	kiln_wino_pack_n(dst, w, m, k, si, sr, flip, mr, 6, gtimes);
}

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

// BT writes Bᵀ d of the six values D0 … D5 to T0 … T5: the products by 2
// and 4 are exact, so only the sums round.
#define BT(D0, D1, D2, D3, D4, D5, T0, T1, T2, T3, T4, T5)                                             \
	do {                                                                                             \
		const float bt0 = (D0), bt1 = (D1), bt2 = (D2), bt3 = (D3), bt4 = (D4), bt5 = (D5);      \
		const float btp = bt4 - 4 * bt2, btq = bt3 - 4 * bt1, btr = bt4 - bt2, bts = 2 * (bt3 - bt1); \
		T0 = 4 * (bt0 - bt2) + btr;                                                              \
		T1 = btp + btq;                                                                          \
		T2 = btp - btq;                                                                          \
		T3 = btr + bts;                                                                          \
		T4 = btr - bts;                                                                          \
		T5 = 4 * (bt1 - bt3) + (bt5 - bt3);                                                      \
	} while (0)

// rows4 writes the horizontal transform d·B of every tile of n floats of
// padded rows of one row phase (its column phases at p, pf apart, groups ni
// floats): h_b[i] at hb + b·hs.
BODY void rows4(float *restrict hb, long hs, const float *restrict p, long pf, long ni, long n) {
	const float *c0 = p, *c1 = p + pf, *c2 = p + 2 * pf, *c3 = p + 3 * pf;
	float *restrict o0 = hb, *restrict o1 = hb + hs, *restrict o2 = hb + 2 * hs, *restrict o3 = hb + 3 * hs;
	float *restrict o4 = hb + 4 * hs, *restrict o5 = hb + 5 * hs;
#pragma GCC ivdep
	for (long i = 0; i < n; i++)
		BT(c0[i], c1[i], c2[i], c3[i], c0[i + ni], c1[i + ni], o0[i], o1[i], o2[i], o3[i], o4[i], o5[i]);
}

// v16 is 16 floats; deal4 deals four groups of four into four runs of a
// column phase each (compiled per ISA level: one permute at AVX-512).
typedef float v16 __attribute__((vector_size(64)));
typedef int i16 __attribute__((vector_size(64)));
static const i16 deal4 = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

// deal_row writes the padded row xr (xr[u]: padded column u, u − off < w
// inside the plane) into its four column phases r0 … r3: column 4f + q at
// r_q[f·ni].
BODY void deal_row(float *restrict r0, float *restrict r1, float *restrict r2, float *restrict r3,
                   const float *xr, long w, long off, long ni) {
	float *const r[4] = {r0, r1, r2, r3};
	long f = 1;
	for (long q = off; q < 4 && q - off < w; q++) r[q][0] = xr[q]; // group 0
	for (; ni == 1 && 4 * f + 15 - off < w; f += 4) { // four whole groups a turn, dealt by one shuffle
		v16 d, e;
		memcpy(&d, xr + 4 * f, sizeof d);
		e = __builtin_shuffle(d, deal4);
		memcpy(r0 + f, &e, 16);
		memcpy(r1 + f, (float *)&e + 4, 16);
		memcpy(r2 + f, (float *)&e + 8, 16);
		memcpy(r3 + f, (float *)&e + 12, 16);
	}
	for (; 4 * f + 3 - off < w; f++) { // one whole group a turn
		r0[f * ni] = xr[4 * f];
		r1[f * ni] = xr[4 * f + 1];
		r2[f * ni] = xr[4 * f + 2];
		r3[f * ni] = xr[4 * f + 3];
	}
	for (long q = 0; q < 4 && 4 * f + q - off < w; q++) r[q][f * ni] = xr[4 * f + q];
}

// v4 is 4 floats.
typedef float v4 __attribute__((vector_size(16)));
typedef int i4 __attribute__((vector_size(16)));

// deal_rows4 is deal_row for four images' rows at once (ni = 4; image j's
// padded row at xr + j·xs): column 4f + q of image j at row[q·pf + 4f +
// j], each whole group one 4×4 transpose.
BODY void deal_rows4(float *restrict row, long pf, const float *xr, long xs, long w, long off) {
	long f = 1;
	for (long q = off; q < 4 && q - off < w; q++) // group 0
		for (long j = 0; j < 4; j++) row[q * pf + j] = xr[j * xs + q];
	for (; 4 * f + 3 - off < w; f++) {
		v4 a0, a1, a2, a3;
		memcpy(&a0, xr + 4 * f, 16);
		memcpy(&a1, xr + xs + 4 * f, 16);
		memcpy(&a2, xr + 2 * xs + 4 * f, 16);
		memcpy(&a3, xr + 3 * xs + 4 * f, 16);
		const v4 t0 = __builtin_shuffle(a0, a1, (i4){0, 4, 1, 5}), t1 = __builtin_shuffle(a2, a3, (i4){0, 4, 1, 5});
		const v4 t2 = __builtin_shuffle(a0, a1, (i4){2, 6, 3, 7}), t3 = __builtin_shuffle(a2, a3, (i4){2, 6, 3, 7});
		const v4 b0 = __builtin_shuffle(t0, t1, (i4){0, 1, 4, 5}), b1 = __builtin_shuffle(t0, t1, (i4){2, 3, 6, 7});
		const v4 b2 = __builtin_shuffle(t2, t3, (i4){0, 1, 4, 5}), b3 = __builtin_shuffle(t2, t3, (i4){2, 3, 6, 7});
		memcpy(row + 4 * f, &b0, 16);
		memcpy(row + pf + 4 * f, &b1, 16);
		memcpy(row + 2 * pf + 4 * f, &b2, 16);
		memcpy(row + 3 * pf + 4 * f, &b3, 16);
	}
	for (long q = 0; q < 4 && 4 * f + q - off < w; q++)
		for (long j = 0; j < 4; j++) row[q * pf + 4 * f + j] = xr[j * xs + 4 * f + q];
}

// kiln_wino4_pad_body writes the padded planes of the k planes of ni images
// of x (h×w, images xs floats apart), shifted off rows down and off columns
// right: image j's row r, column c is padded row s = r + off, column u = c
// + off, at row s/4, group u/4, float j of plane c's phase (s mod 4, u mod
// 4): p + (16c + 4(s mod 4) + u mod 4)·pf. The input transforms pad with off
// 1 (tile row ty reads padded rows 4ty … 4ty + 5), the output gradient of
// the weight gradient with 0 (rows 4ty … 4ty + 3). With clear it first
// zeroes the planes; without, what it does not write (the margins, the junk
// column) must still be zero from the previous block of as many images:
// every such block writes the same floats. (Clearing every block was 3% of
// cnn's step at batch 128: a 32×32 plane's block is one image.)
BODY void kiln_wino4_pad_body(float *restrict p, const float *restrict x, long xs, long ni, long k, long h, long w,
                              long off, int clear) {
	const geom g = tiling(h, w);
	const long rs = g.tw1 * g.ni; // a phase's row
	if (clear) memset(p, 0, (size_t)(16 * k * g.pf) * sizeof(float));
	if (ni == 4 && g.ni == 4) { // 14×14 and 16×16 planes: the four images' rows a turn
		for (long c = 0; c < k; c++)
			for (long r = 0; r < h; r++) {
				const long s = r + off;
				deal_rows4(p + (16 * c + 4 * (s & 3)) * g.pf + s / 4 * rs, g.pf, x + (c * h + r) * w - off, xs, w,
				           off);
			}
		return;
	}
	for (long j = 0; j < ni; j++)
		for (long c = 0; c < k; c++)
			for (long r = 0; r < h; r++) {
				const long s = r + off;
				float *row = p + (16 * c + 4 * (s & 3)) * g.pf + s / 4 * rs + j;
				deal_row(row, row + g.pf, row + 2 * g.pf, row + 3 * g.pf, x + j * xs + (c * h + r) * w - off, w,
				         off, g.ni);
			}
}
KILN_ISA_DISPATCH(kiln_wino4_pad,
                  (float *restrict p, const float *restrict x, long xs, long ni, long k, long h, long w, long off,
                   int clear),
                  (p, x, xs, ni, k, h, w, off, clear))

// kiln_wino4_input_body writes V_ξ[c, f] = (Bᵀ d B)_ξ at v + (ξ·k + c)·ldv +
// f for the nb tile rows from ty0 of the k padded planes p, through the row
// phases' horizontal transforms in tmp.
BODY void kiln_wino4_input_body(float *restrict v, long ldv, const float *restrict p, long k, long h, long w,
                                long ty0, long nb, float *restrict tmp) {
	const geom g = tiling(h, w);
	const long rs = g.tw1 * g.ni, hs = (nb + 1) * rs, t = nb * rs;
	for (long c = 0; c < k; c++) {
		for (long q = 0; q < 4; q++)
			rows4(tmp + 6 * q * hs, hs, p + (16 * c + 4 * q) * g.pf + ty0 * rs, g.pf, g.ni, hs);
		for (long b = 0; b < 6; b++) {
			const float *h0 = tmp + b * hs, *h1 = h0 + 6 * hs, *h2 = h1 + 6 * hs, *h3 = h2 + 6 * hs;
			float *restrict o0 = v + (b * k + c) * ldv, *restrict o1 = o0 + 6 * k * ldv;
			float *restrict o2 = o1 + 6 * k * ldv, *restrict o3 = o2 + 6 * k * ldv;
			float *restrict o4 = o3 + 6 * k * ldv, *restrict o5 = o4 + 6 * k * ldv;
#pragma GCC ivdep
			for (long i = 0; i < t; i++)
				BT(h0[i], h1[i], h2[i], h3[i], h0[i + rs], h1[i + rs], o0[i], o1[i], o2[i], o3[i], o4[i],
				   o5[i]);
		}
	}
}
KILN_ISA_DISPATCH(kiln_wino4_input,
                  (float *restrict v, long ldv, const float *restrict p, long k, long h, long w, long ty0, long nb,
                   float *restrict tmp),
                  (v, ldv, p, k, h, w, ty0, nb, tmp))

// AT writes Aᵀ m of the six values M0 … M5 to O0 … O3: the products by 2,
// 4 and 8 are exact, so only the sums round.
#define AT(M0, M1, M2, M3, M4, M5, O0, O1, O2, O3)                                                  \
	do {                                                                                             \
		const float at0 = (M0), at1 = (M1), at2 = (M2), at3 = (M3), at4 = (M4), at5 = (M5);      \
		const float ata = at1 + at2, atb = at1 - at2, atc = at3 + at4, atd = at3 - at4;          \
		O0 = at0 + ata + atc;                                                                    \
		O1 = atb + 2 * atd;                                                                      \
		O2 = ata + 4 * atc;                                                                      \
		O3 = atb + 8 * atd + at5;                                                                \
	} while (0)

// kiln_wino4_output_body writes rows 4ty0 … 4(ty0 + nb) − 1 (those inside
// the plane) of the m planes of ni images of y (h×w, images ys floats
// apart): the 4×4 block of tile f of plane c is Aᵀ M A (+ bias[c]) from
// M_ξ[c, f] at mm + (ξ·m + c)·ldm + f. The blocks' four rows go to four row
// sets first (z_r: tile f at 4f … 4f + 3), then to y: one copy a row, or
// with images interleaved one a group.
BODY void kiln_wino4_output_body(float *restrict y, long ys, long ni, const float *restrict mm, long ldm,
                                 const float *bias, long m, long h, long w, long ty0, long nb, float *restrict tmp) {
	const geom g = tiling(h, w);
	const long rs = g.tw1 * g.ni, t = nb * rs, zs = 4 * t;
	const long r0 = 4 * ty0, r1 = 4 * (ty0 + nb) < h ? 4 * (ty0 + nb) : h;
	for (long c = 0; c < m; c++) {
		const float *p[36];
		for (int xi = 0; xi < 36; xi++) p[xi] = mm + (xi * m + c) * ldm;
		const float bc = bias ? bias[c] : 0;
		for (long i = 0; i < t; i++) {
			float s[4][6];
			for (int b = 0; b < 6; b++)
				AT(p[b][i], p[6 + b][i], p[12 + b][i], p[18 + b][i], p[24 + b][i], p[30 + b][i], s[0][b],
				   s[1][b], s[2][b], s[3][b]);
			for (int r = 0; r < 4; r++) {
				float o0, o1, o2, o3;
				AT(s[r][0], s[r][1], s[r][2], s[r][3], s[r][4], s[r][5], o0, o1, o2, o3);
				float *z = tmp + r * zs + 4 * i;
				z[0] = o0 + bc;
				z[1] = o1 + bc;
				z[2] = o2 + bc;
				z[3] = o3 + bc;
			}
		}
		for (long j = 0; j < ni; j++) {
			float *yc = y + j * ys + c * h * w;
			for (long r = r0; r < r1; r++) {
				const float *z = tmp + (r & 3) * zs + 4 * ((r - r0) / 4 * rs + j);
				if (g.ni == 1) {
					memcpy(yc + r * w, z, (size_t)w * sizeof(float));
					continue;
				}
				for (long x0 = 0; x0 < w; x0 += 4)
					memcpy(yc + r * w + x0, z + x0 * g.ni, (size_t)(w - x0 < 4 ? w - x0 : 4) * sizeof(float));
			}
		}
	}
}
KILN_ISA_DISPATCH(kiln_wino4_output,
                  (float *restrict y, long ys, long ni, const float *restrict mm, long ldm, const float *bias, long m,
                   long h, long w, long ty0, long nb, float *restrict tmp),
                  (y, ys, ni, mm, ldm, bias, m, h, w, ty0, nb, tmp))
#undef AT
#undef BT
#pragma GCC pop_options

// kiln_wino4_conv computes the n images' y (m planes of h×w, ys floats
// apart) = the 3×3 "same" convolution of x (k planes of h×w, xs apart) with
// the weights u packed by kiln_wino4_pack for width vl's panels, plus bias
// (NULL for none), in scratch of kiln_wino4_scratch floats. It returns 0,
// doing nothing, when k is past the product kernel's reduction.
int kiln_wino4_conv(float *y, long ys, const float *x, long xs, long n, const float *u, const float *bias, long k,
                    long m, long h, long w, float *scratch, int vl) {
	if (k > kiln_conv_cpu_maxk()) return 0;
	const geom g = tiling(h, w);
	const long mr = kiln_conv_cpu_panel(vl), mp = (m + mr - 1) / mr * mr, ld = g.cols;
	float *p = scratch, *v = p + 16 * k * g.pf, *mm = v + 36 * k * ld, *tmp = mm + 36 * m * ld;
	for (long n0 = 0; n0 < n; n0 += g.ni) {
		const long ni = n - n0 < g.ni ? n - n0 : g.ni;
		kiln_wino4_pad(p, x + n0 * xs, xs, ni, k, h, w, 1, n0 == 0 || ni < g.ni);
		for (long ty0 = 0; ty0 < g.th; ty0 += g.nb) {
			const long nb = g.th - ty0 < g.nb ? g.th - ty0 : g.nb, cols = nb * g.tw1 * g.ni;
			kiln_wino4_input(v, ld, p, k, h, w, ty0, nb, tmp);
			for (long xi = 0; xi < 36; xi++)
				kiln_conv_shift_gemm(mm + xi * m * ld, ld, m, u + xi * mp * k, k, 1, v + xi * k * ld, k * ld, ld,
				                     1, 0, 0, 0, 0, 1, cols, 0, 0, vl);
			kiln_wino4_output(y + n0 * ys, ys, ni, mm, ld, bias, m, h, w, ty0, nb, tmp);
		}
	}
	return 1;
}

// The weight gradient, as conv_wino_cpu.c's: dg = Gᵀ dU G with dU_ξ =
// Σ_tiles (Bᵀ d B)_ξ · (A dY Aᵀ)_ξ over every tile of every image, dY the
// tile's 4×4 block of the output gradient; one product per ξ, summed over
// the tiles by conv_cpu.c's transposed weight-gradient kernel. The caller
// turns dU into dg in double.

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
// AY writes A y of the four values Y0 … Y3 to Z0 … Z5, A = (Aᵀ)ᵀ: the
// products by 2 and 4 are exact.
#define AY(Y0, Y1, Y2, Y3, Z0, Z1, Z2, Z3, Z4, Z5)                                                  \
	do {                                                                                         \
		const float ay0 = (Y0), ay1 = (Y1), ay2 = (Y2), ay3 = (Y3);                          \
		const float aye = ay0 + ay2, ayo = ay1 + ay3, ayf = ay0 + 4 * ay2, ayp = 2 * (ay1 + 4 * ay3); \
		Z0 = ay0;                                                                            \
		Z1 = aye + ayo;                                                                      \
		Z2 = aye - ayo;                                                                      \
		Z3 = ayf + ayp;                                                                      \
		Z4 = ayf - ayp;                                                                      \
		Z5 = ay3;                                                                            \
	} while (0)

// kiln_wino4_adjoint_body writes M'_ξ[co, f] = (A dY Aᵀ)_ξ at mm + (ξ·m +
// co)·ldm + f for the nb tile rows from ty0 of the m output-gradient planes
// padded at p (off 0): row i, column j of tile f's block is float f of phase
// (i, j) from row ty0. Each of the block's rows goes through A first (into
// tmp, six runs of t), then each column of the six rows.
BODY void kiln_wino4_adjoint_body(float *restrict mm, long ldm, const float *restrict p, long m, long h, long w,
                                  long ty0, long nb, float *restrict tmp) {
	const geom g = tiling(h, w);
	const long t = nb * g.tw1 * g.ni, s = m * ldm;
	for (long c = 0; c < m; c++) {
		const float *ph = p + 16 * c * g.pf + ty0 * g.tw1 * g.ni;
		for (long i = 0; i < 4; i++) { // row i of the blocks, through A: tmp + (6i + b)·t
			const float *y0 = ph + 4 * i * g.pf, *y1 = y0 + g.pf, *y2 = y1 + g.pf, *y3 = y2 + g.pf;
			float *restrict z = tmp + 6 * i * t;
#pragma GCC ivdep
			for (long f = 0; f < t; f++)
				AY(y0[f], y1[f], y2[f], y3[f], z[f], z[t + f], z[2 * t + f], z[3 * t + f], z[4 * t + f],
				   z[5 * t + f]);
		}
		for (long b = 0; b < 6; b++) { // column b of the rows, through A: M'_(6a + b)
			const float *q0 = tmp + b * t, *q1 = q0 + 6 * t, *q2 = q1 + 6 * t, *q3 = q2 + 6 * t;
			float *restrict o0 = mm + c * ldm + b * s, *restrict o1 = o0 + 6 * s, *restrict o2 = o1 + 6 * s;
			float *restrict o3 = o2 + 6 * s, *restrict o4 = o3 + 6 * s, *restrict o5 = o4 + 6 * s;
#pragma GCC ivdep
			for (long f = 0; f < t; f++)
				AY(q0[f], q1[f], q2[f], q3[f], o0[f], o1[f], o2[f], o3[f], o4[f], o5[f]);
		}
	}
}
KILN_ISA_DISPATCH(kiln_wino4_adjoint,
                  (float *restrict mm, long ldm, const float *restrict p, long m, long h, long w, long ty0, long nb,
                   float *restrict tmp),
                  (mm, ldm, p, m, h, w, ty0, nb, tmp))
#undef AY
#pragma GCC pop_options

// kiln_wino4_dw_scratch is the floats kiln_wino4_dw needs.
long kiln_wino4_dw_scratch(long k, long m, long h, long w, long ldt) {
	const geom g = tiling(h, w);
	return 16 * (k + m) * g.pf + 36 * (k + m) * g.cols + 36 * g.cols * ldt + 24 * (g.nb + 1) * g.tw1 * g.ni;
}

// kiln_wino4_dw adds dUᵀ_ξ[c, co] at du + (ξ·k + c)·ldt + co from n images:
// x (k planes of h×w, xs floats apart) and dy (m planes, ys apart), in
// scratch of kiln_wino4_dw_scratch floats; ldt, a multiple of 8, at least
// m. It returns 0, doing nothing, when k or ldt is past what the kernels
// take.
int kiln_wino4_dw(float *du, long ldt, const float *x, long xs, const float *dy, long ys, long n, long k, long m,
                  long h, long w, float *scratch, int vl) {
	if (k > kiln_conv_cpu_maxk() || ldt % 8 != 0 || ldt < m) return 0;
	const geom g = tiling(h, w);
	const long ld = g.cols;
	float *px = scratch, *pd = px + 16 * k * g.pf, *v = pd + 16 * m * g.pf, *mm = v + 36 * k * ld;
	float *mt = mm + 36 * m * ld, *tmp = mt + 36 * ld * ldt;
	for (long r = 0; r < 36 * ld && ldt > m; r++) memset(mt + r * ldt + m, 0, (size_t)(ldt - m) * sizeof(float));
	for (long n0 = 0; n0 < n; n0 += g.ni) {
		const long ni = n - n0 < g.ni ? n - n0 : g.ni;
		const int clear = n0 == 0 || ni < g.ni; // a short last block: its missing images' floats zero
		kiln_wino4_pad(px, x + n0 * xs, xs, ni, k, h, w, 1, clear);
		kiln_wino4_pad(pd, dy + n0 * ys, ys, ni, m, h, w, 0, clear);
		for (long ty0 = 0; ty0 < g.th; ty0 += g.nb) {
			const long nb = g.th - ty0 < g.nb ? g.th - ty0 : g.nb, cols = nb * g.tw1 * g.ni;
			kiln_wino4_input(v, ld, px, k, h, w, ty0, nb, tmp);
			kiln_wino4_adjoint(mm, cols, pd, m, h, w, ty0, nb, tmp);
			for (long xi = 0; xi < 36; xi++) {
				kiln_conv_dyt(mt + xi * ld * ldt, ldt, mm + xi * m * cols, m, 1, cols, cols);
				kiln_conv_shift_dwt(du + xi * k * ldt, ldt, 0, mt + xi * ld * ldt, ldt, k, 1, v + xi * k * ld, ld,
				                    1, 0, 0, 0, 1, cols, 0, vl);
			}
		}
	}
	return 1;
}
#endif
