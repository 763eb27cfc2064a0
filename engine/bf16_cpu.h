#include <stdint.h>
int kiln_cpu_bf16(void);
void kiln_f32_to_bf16(uint16_t *dst, const float *src, long n);
void kiln_bf16_to_f32(float *dst, const uint16_t *src, long n);
