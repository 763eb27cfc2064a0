#include <stdint.h>
int kiln_maxpool2x2_f32(float* out, int32_t* am, const float* x, int w, int oh, int ow);
