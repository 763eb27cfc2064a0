// Float32 activations in C: branch-free loops that gcc vectorises, built
// for AVX2 and for plain x86-64 (target_clones picks at load time).
#ifndef KILN_ACTIVATION_CPU_H
#define KILN_ACTIVATION_CPU_H
#include <stddef.h>

// kind: 1 ReLU, 2 GELU (exact erf form), 3 sigmoid, 4 tanh — engine.Activation's values.
void kiln_act_forward_f32(float *out, const float *x, size_t n, int kind);
// dx = dout·f'(…): x is the forward input (GELU), y the forward output (the rest).
void kiln_act_backward_f32(float *dx, const float *dout, const float *x, const float *y, size_t n, int kind);
// GELU's forward with its derivative kept (deriv = f'(x)), and the backward
// from it: dx = a·b (dx may be a or b).
void kiln_gelu_forward_deriv_f32(float *out, float *deriv, const float *x, size_t n);
void kiln_mul_f32(float *dx, const float *a, const float *b, size_t n);
#endif
