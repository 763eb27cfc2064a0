// Float32 glue of CBAM and gMLP in C (channelpool_cpu.c): pooling across
// channels, the global max of each plane, the gates' input gradients and the
// swap of the last two axes.
#ifndef KILN_CHANNELPOOL_CPU_H
#define KILN_CHANNELPOOL_CPU_H
#include <stdint.h>

// out: (n,2,hw) mean and max over c channels  am: (n,hw)  x: (n,c,hw); c ≥ 1.
void kiln_channelpool_forward_f32(float *out, int32_t *am, const float *x, long n, long c, long hw);
// dx: (n,c,hw) overwritten  dout: (n,2,hw)  am: (n,hw), each in [0,c).
void kiln_channelpool_backward_f32(float *dx, const float *dout, const int32_t *am, long n, long c, long hw);
// out, am: (planes)  x: (planes,hw); hw ≥ 1.
void kiln_globalmax_forward_f32(float *out, int32_t *am, const float *x, long planes, long hw);
// dx, dout: (planes,hw), dx may be dout  scale, davg, dmax, am: (planes), am in [0,hw).
void kiln_channel_gate_backward_f32(float *dx, const float *dout, const float *scale, const float *davg,
                                    const float *dmax, const int32_t *am, long planes, long hw);
// dx, dout: (n,c,hw), dx may be dout  att: (n,hw)  dpooled: (n,2,hw)  am: (n,hw) in [0,c).
void kiln_spatial_gate_backward_f32(float *dx, const float *dout, const float *att, const float *dpooled,
                                    const int32_t *am, long n, long c, long hw);
// out: (n,b,a)  x: (n,a,b).
void kiln_transpose12_f32(float *out, const float *x, long n, long a, long b);
#endif
