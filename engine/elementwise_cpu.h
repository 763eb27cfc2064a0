// Float32 element-wise loops of arith.go and linear.go in C, compiled once
// per ISA level so that gcc vectorises them; each gives the Go loop's bits.
#ifndef KILN_ELEMENTWISE_CPU_H
#define KILN_ELEMENTWISE_CPU_H

// out[i] = a[i] + b[i] for i < n, in order, as Go does: out may be a or b, or overlap them.
void kiln_add_f32(float *out, const float *a, const float *b, long n);
// x[i] *= s for i < n.
void kiln_scale_f32(float *x, long n, float s);
// out[i·ldo + j] += b[j] for each of n rows of o (the bias of a linear
// layer; the products add it to each block of rows as they finish it).
void kiln_add_row_bias_f32(float *out, long ldo, const float *b, long n, long o);
// db[j] += dout[i·o + j] for i = 0, 1, …, n−1 in turn (the bias gradient).
void kiln_sum_rows_f32(float *db, const float *dout, long n, long o);
#endif
