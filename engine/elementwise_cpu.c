// elementwise_cpu.c: the float32 element-wise loops of arith.go (Add, Scale)
// and linear.go (the bias and its gradient). Each element gets the Go loop's
// operations in the Go loop's order, one rounding each, so every level gives
// the Go loop's bits; only the vector width differs. The bias gradient adds
// the rows one at a time into db, vectorised across columns, never as a tree
// over rows.

// The C fast paths are x86's: other architectures take the Go paths (the
// *_nocgo.go files), and this guard keeps their cgo builds compiling.
#if defined(__x86_64__)
#include "elementwise_cpu.h"
// Products and sums stay separate roundings at every level (no fused
// multiply-add), so the levels give the same bits.
#pragma GCC optimize("fp-contract=off")
#include <stdint.h>

#include "isa_cpu.h"

// Each loop is compiled once per ISA level (KILN_ISA_DISPATCH at the end).
#define BODY static inline __attribute__((always_inline))

// apart reports whether n floats at p and n at q do not overlap.
static inline int apart(const float *p, const float *q, long n) {
	uintptr_t x = (uintptr_t)p, y = (uintptr_t)q, len = (uintptr_t)n * sizeof(float);
	return x + len <= y || y + len <= x;
}

// add_into is out = out + b, or with b_first out = b + out: Add in place, out
// being a or b, with no alias check left for the compiler to make.
BODY void add_into(float *restrict out, const float *restrict b, long n, int b_first) {
	if (b_first) {
		for (long i = 0; i < n; i++)
			out[i] = b[i] + out[i];
	} else {
		for (long i = 0; i < n; i++)
			out[i] = out[i] + b[i];
	}
}

BODY void add_apart(float *restrict out, const float *restrict a, const float *restrict b, long n) {
	for (long i = 0; i < n; i++)
		out[i] = a[i] + b[i];
}

BODY void kiln_add_f32_body(float *out, const float *a, const float *b, long n) {
	if (out == a && apart(out, b, n)) {
		add_into(out, b, n, 0);
	} else if (out == b && apart(out, a, n)) {
		add_into(out, a, n, 1);
	} else if (apart(out, a, n) && apart(out, b, n)) {
		add_apart(out, a, b, n);
	} else {
		// out = a = b, or views that overlap otherwise: Go's order, element
		// by element (the compiler vectorises only where that gives the same).
		for (long i = 0; i < n; i++)
			out[i] = a[i] + b[i];
	}
}

BODY void kiln_scale_f32_body(float *x, long n, float s) {
	for (long i = 0; i < n; i++)
		x[i] *= s;
}

BODY void kiln_add_row_bias_f32_body(float *restrict out, long ldo, const float *restrict b, long n, long o) {
	for (long i = 0; i < n; i++) {
		float *row = out + i * ldo;
		for (long j = 0; j < o; j++)
			row[j] += b[j];
	}
}

BODY void kiln_sum_rows_f32_body(float *restrict db, const float *restrict dout, long n, long o) {
	for (long i = 0; i < n; i++) {
		const float *row = dout + i * o;
		for (long j = 0; j < o; j++)
			db[j] += row[j];
	}
}

KILN_ISA_DISPATCH(kiln_add_f32, (float *out, const float *a, const float *b, long n), (out, a, b, n))
KILN_ISA_DISPATCH(kiln_scale_f32, (float *x, long n, float s), (x, n, s))
KILN_ISA_DISPATCH(kiln_add_row_bias_f32, (float *restrict out, long ldo, const float *restrict b, long n, long o), (out, ldo, b, n, o))
KILN_ISA_DISPATCH(kiln_sum_rows_f32, (float *restrict db, const float *restrict dout, long n, long o), (db, dout, n, o))

#endif // __x86_64__
