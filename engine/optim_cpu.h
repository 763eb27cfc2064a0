// Float32 optimiser updates for optim.go: one pass over a parameter, its
// gradient and its state, written so that gcc vectorises every loop.
#pragma once
#include <stddef.h>

// SGD with momentum mu (buf NULL when mu is 0), weight decay wd, Nesterov.
void kiln_sgd_step_f32(float* w, const float* g, float* buf, size_t n, float lr, float mu, float wd,
                       int nesterov);

// AdamW: w = w·decay − step_size·m/(√v·rbc2 + eps), m and v updated first.
void kiln_adamw_step_f32(float* w, const float* g, float* m, float* v, size_t n, float b1, float b2,
                         float step_size, float rbc2, float decay, float eps);
