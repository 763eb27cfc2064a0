#include <stdint.h>
int kiln_maxpool2x2_f32(float* out, int32_t* am, const float* x, int w, int h, int oh, int ow, int planes, int relu);
int kiln_maxpool2x2_backward_f32(float* dx, const float* dout, const float* keep, const int32_t* am, int w, int h,
                                 int oh, int ow, int planes);
