// conv_col_cpu.c: the col lowering's im2col and its adjoint col2im in
// float32 (conv.go's im2colGo and col2imGo), compiled once per ISA level.
// Go does not vectorise those loops: a 3×3 stride-2 convolution spent about
// a quarter of its time in them. The values are the Go loops' to the bit:
// im2col copies, and col2im adds each element in the same order.

// The C fast paths are x86's: other architectures take the Go loops (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "conv_cpu.h"
#include "isa_cpu.h"

#define BODY static inline __attribute__((always_inline))

// valid_out is conv.go's validOut: the output columns [*lo, *hi) whose input
// column o·stride + off lies in [0, n).
static inline void valid_out(int off, int stride, int n, int outn, int *lo, int *hi) {
	int l = 0, h = 0;
	if (off < 0) l = (-off + stride - 1) / stride;
	if (n - 1 - off >= 0) {
		h = (n - 1 - off) / stride + 1;
		if (h > outn) h = outn;
	}
	*lo = l < h ? l : h;
	*hi = h;
}

// The geometry g: cg, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw. Strides
// 1 and 2 get loops of their own, so that the compiler sees the step.
#define GEOM                                                                                                  \
	const int cg = g[0], h = g[1], w = g[2], oh = g[3], ow = g[4], kh = g[5], kw = g[6], sh = g[7], sw = g[8], \
	          ph = g[9], pw = g[10], dh = g[11], dw = g[12];                                                \
	const long p = (long)oh * ow, plane = (long)h * w

// range_mask has the bits [lo, hi) of 16 set.
static inline __mmask16 range_mask(int lo, int hi) {
	lo = lo < 0 ? 0 : lo;
	hi = hi > 16 ? 16 : hi;
	return hi <= lo ? 0 : (__mmask16)(((1u << (hi - lo)) - 1) << lo);
}

// im2col_tap_s2_avx512 writes one tap's oh rows of col at stride 2, sixteen
// outputs at a time: two masked loads read the input pairs (the lanes
// outside the row read as +0, as the Go loop's cleared ends), a permute
// keeps the even ones. The rows are short (16 outputs for a 32-wide input),
// and the compiler's loops spent more on their ends than on their middles.
__attribute__((target("avx512f"))) static void im2col_tap_s2_avx512(float *restrict dst, const float *restrict xc,
                                                                    int h, int w, int oh, int ow, int off, int ih,
                                                                    int sh) {
	const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
	for (int o = 0; o < oh; o++, ih += sh) {
		float *d = dst + (long)o * ow;
		if (ih < 0 || ih >= h) {
			memset(d, 0, (size_t)ow * sizeof(float));
			continue;
		}
		// The address of row[s0] as an integer: s0 may lie before the row.
		const uintptr_t row = (uintptr_t)(xc + (long)ih * w);
		for (int j0 = 0; j0 < ow; j0 += 16) {
			const int s0 = 2 * j0 + off, n = ow - j0 < 16 ? ow - j0 : 16;
			const __m512 a = _mm512_maskz_loadu_ps(range_mask(-s0, w - s0), (const void *)(row + 4 * (intptr_t)s0));
			const __m512 b =
			    _mm512_maskz_loadu_ps(range_mask(-s0 - 16, w - s0 - 16), (const void *)(row + 4 * (intptr_t)(s0 + 16)));
			_mm512_mask_storeu_ps(d + j0, range_mask(0, n), _mm512_permutex2var_ps(a, even, b));
		}
	}
}

BODY void kiln_im2col_group_body(float *restrict col, const float *restrict x, const int *restrict g, long ld) {
	GEOM;
	float *dst = col;
	const int s2 = sw == 2 && kiln_isa() >= KILN_ISA_AVX512;
	for (int c = 0; c < cg; c++)
		for (int ki = 0; ki < kh; ki++)
			for (int kj = 0; kj < kw; kj++, dst += ld) {
				const int off = kj * dw - pw;
				if (s2) {
					im2col_tap_s2_avx512(dst, x + c * plane, h, w, oh, ow, off, ki * dh - ph, sh);
					continue;
				}
				int lo, hi;
				valid_out(off, sw, w, ow, &lo, &hi);
				int ih = ki * dh - ph;
				for (int o = 0; o < oh; o++, ih += sh) {
					float *d = dst + (long)o * ow;
					if (ih < 0 || ih >= h) {
						memset(d, 0, (size_t)ow * sizeof(float));
						continue;
					}
					const float *src = x + c * plane + (long)ih * w;
					for (int j = 0; j < lo; j++) d[j] = 0.0f;
					for (int j = hi; j < ow; j++) d[j] = 0.0f;
					if (sw == 1)
						for (int j = lo; j < hi; j++) d[j] = src[j + off];
					else if (sw == 2)
						for (int j = lo; j < hi; j++) d[j] = src[2 * j + off];
					else
						for (int j = lo; j < hi; j++) d[j] = src[(long)j * sw + off];
				}
			}
}

// col2im_tap_s2_avx512 adds one tap's oh rows of col back at stride 2,
// sixteen at a time: two permutes spread them over the even lanes of 32
// inputs, and masked loads, adds and stores touch only the even inputs that
// lie in the row, each with one add, as the Go loop's.
__attribute__((target("avx512f"))) static void col2im_tap_s2_avx512(float *restrict dxc, const float *restrict src,
                                                                    int h, int w, int oh, int ow, int off, int ih,
                                                                    int sh) {
	const __m512i lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
	const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
	const __mmask16 evens = 0x5555;
	for (int o = 0; o < oh; o++, ih += sh) {
		if (ih < 0 || ih >= h) continue;
		const float *s = src + (long)o * ow;
		const uintptr_t row = (uintptr_t)(dxc + (long)ih * w);
		for (int j0 = 0; j0 < ow; j0 += 16) {
			const int s0 = 2 * j0 + off, n = ow - j0 < 16 ? ow - j0 : 16;
			const __m512 v = _mm512_maskz_loadu_ps(range_mask(0, n), s + j0);
			const __mmask16 m0 = evens & range_mask(-s0, w - s0) & range_mask(0, 2 * n);
			const __mmask16 m1 = evens & range_mask(-s0 - 16, w - s0 - 16) & range_mask(0, 2 * n - 16);
			float *d0 = (float *)(row + 4 * (intptr_t)s0), *d1 = (float *)(row + 4 * (intptr_t)(s0 + 16));
			_mm512_mask_storeu_ps(d0, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, d0), _mm512_permutexvar_ps(lo, v)));
			_mm512_mask_storeu_ps(d1, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, d1), _mm512_permutexvar_ps(hi, v)));
		}
	}
}

BODY void kiln_col2im_group_body(float *restrict dx, const float *restrict col, const int *restrict g, long ld) {
	GEOM;
	const float *src = col;
	const int s2 = sw == 2 && kiln_isa() >= KILN_ISA_AVX512;
	for (int c = 0; c < cg; c++)
		for (int ki = 0; ki < kh; ki++)
			for (int kj = 0; kj < kw; kj++, src += ld) {
				const int off = kj * dw - pw;
				if (s2) {
					col2im_tap_s2_avx512(dx + c * plane, src, h, w, oh, ow, off, ki * dh - ph, sh);
					continue;
				}
				int lo, hi;
				valid_out(off, sw, w, ow, &lo, &hi);
				int ih = ki * dh - ph;
				for (int o = 0; o < oh; o++, ih += sh) {
					if (ih < 0 || ih >= h || lo >= hi) continue;
					const float *s = src + (long)o * ow;
					float *d = dx + c * plane + (long)ih * w;
					if (sw == 1)
						for (int j = lo; j < hi; j++) d[j + off] += s[j];
					else if (sw == 2)
						for (int j = lo; j < hi; j++) d[2 * j + off] += s[j];
					else
						for (int j = lo; j < hi; j++) d[(long)j * sw + off] += s[j];
				}
			}
}

KILN_ISA_DISPATCH(kiln_im2col_group, (float *restrict col, const float *restrict x, const int *restrict g, long ld),
                  (col, x, g, ld))
KILN_ISA_DISPATCH(kiln_col2im_group, (float *restrict dx, const float *restrict col, const int *restrict g, long ld),
                  (dx, col, g, ld))

void kiln_conv_im2col(float *col, long ld, const float *x, int cg, int h, int w, int oh, int ow, int kh, int kw,
                      int sh, int sw, int ph, int pw, int dh, int dw) {
	const int g[13] = {cg, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw};
	kiln_im2col_group(col, x, g, ld);
}

void kiln_conv_col2im(float *dx, const float *col, long ld, int cg, int h, int w, int oh, int ow, int kh, int kw,
                      int sh, int sw, int ph, int pw, int dh, int dw) {
	const int g[13] = {cg, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw};
	kiln_col2im_group(dx, col, g, ld);
}

#endif // __x86_64__
