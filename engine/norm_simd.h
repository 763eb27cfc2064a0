int kiln_norm_simd_ok(void);
void kiln_ln_forward_f32(float *out, long ldo, float *mean, float *rstd, const float *x, long ldx, const float *gamma,
                         const float *beta, long rows, long d, double eps);
void kiln_ln_backward_f32(float *dx, long lddx, double *dg, double *db, const float *dout, long lddout, const float *x,
                          long ldx, const float *mean, const float *rstd, const float *gamma, long rows, long d);
