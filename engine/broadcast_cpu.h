void kiln_bmul_f32(float *out, const float *x, const float *g, long len, long k, const long *size, const long *stride,
                   int scalar);
void kiln_bmul_backward_f32(float *dx, float *dg, const float *dout, const float *x, const float *g, long len, long k,
                            const long *size, const long *stride, int scalar);
