void kiln_ln_forward_f32(float *out, long ldo, float *mean, float *rstd, const float *x, long ldx, const float *gamma,
                         const float *beta, long rows, long d, double eps);
void kiln_ln_backward_f32(float *dx, long lddx, double *dg, double *db, const float *dout, long lddout, const float *x,
                          long ldx, const float *mean, const float *rstd, const float *gamma, long rows, long d);
void kiln_bn_moments_f32(const float *x, long n, long stride, long hw, double *mean, double *ss);
void kiln_bn_apply_f32(float *out, const float *x, long n, long stride, long hw, float a, float b, int relu);
void kiln_bn_backward_sums_f32(const float *x, const float *dout, const float *y, long n, long stride, long hw,
                               double mean, double *sumD, double *sumDX);
void kiln_bn_backward_dx_f32(float *dx, const float *x, const float *dout, const float *y, long n, long stride,
                             long hw, float k, float a, float b);
