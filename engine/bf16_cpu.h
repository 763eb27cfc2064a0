#include <stdint.h>
int kiln_cpu_bf16(void);
void kiln_f32_to_bf16(uint16_t *dst, const float *src, long n);
void kiln_bf16_to_f32(float *dst, const uint16_t *src, long n);
int kiln_cpu_amx(void);
void kiln_bf16_use_amx(int on);
void kiln_sgemm_bf16_words(long m, long n, long *aw, long *bw);
int kiln_sgemm_bf16(int ta, int tb, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                    long ldb, const int32_t *boff, float beta, float *c, long ldc, uint32_t *ap, uint32_t *bp);

// kiln_round_bf16 is bf16.go's ToBF16 on a float32's bits.
static inline uint16_t kiln_round_bf16(uint32_t b) {
	const uint32_t exp = b >> 23 & 0xff;
	if (exp == 0) return (uint16_t)(b >> 16 & 0x8000);
	if (exp == 0xff) return (uint16_t)(b & 0x7fffff ? b >> 16 | 0x40 : b >> 16);
	return (uint16_t)((b + 0x7fff + (b >> 16 & 1)) >> 16);
}
