#include <stdint.h>
int kiln_maxpool2x2_f32(float* out, int32_t* am, const float* x, int w, int h, int oh, int ow, int planes, int relu);
int kiln_maxpool2x2_backward_f32(float* dx, const float* dout, const float* keep, const int32_t* am, int w, int h,
                                 int oh, int ow, int planes);
int kiln_maxpool_f32(float* out, int32_t* am, const float* x, int64_t* work, int h, int w, int oh, int ow, int kh,
                     int kw, int sh, int sw, int ph, int pw, int planes, int relu);
void kiln_avgpool_f32(float* a, const float* b, float* work, int h, int w, int oh, int ow, int kh, int kw, int sh,
                      int sw, int ph, int pw, int planes, int backward);
