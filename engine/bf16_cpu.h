#include <stdint.h>
int kiln_cpu_bf16(void);
void kiln_f32_to_bf16(uint16_t *dst, const float *src, long n);
void kiln_bf16_to_f32(float *dst, const uint16_t *src, long n);
void kiln_bf16_round_f32(float *dst, const float *src, long n);
int kiln_cpu_amx(void);
void kiln_amx_config(void);
void kiln_bf16_use_amx(int on);
void kiln_sgemm_bf16_words(long m, long n, long *aw, long *bw);
int kiln_sgemm_bf16(int ta, int tb, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                    long ldb, float beta, float *c, long ldc, uint32_t *ap, uint32_t *bp, const float *bias);

// kiln_mask16 is the lane mask of the first n of 16 columns (none for n ≤ 0,
// all for n ≥ 16): a tile's column masks are kiln_mask16(nr) and
// kiln_mask16(nr − 16).
static inline uint16_t kiln_mask16(long n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (uint16_t)((1u << n) - 1); }

// kiln_round_bf16 is bf16.go's ToBF16 on a float32's bits.
static inline uint16_t kiln_round_bf16(uint32_t b) {
	const uint32_t exp = b >> 23 & 0xff;
	if (exp == 0) return (uint16_t)(b >> 16 & 0x8000);
	if (exp == 0xff) return (uint16_t)(b & 0x7fffff ? b >> 16 | 0x40 : b >> 16);
	return (uint16_t)((b + 0x7fff + (b >> 16 & 1)) >> 16);
}

// The bf16 convolution's implicit GEMM (conv_bf16_cpu.c).
void kiln_conv_bf16_pack_w(uint32_t *ap, const float *w, long m, long rs, long nch, long cs, long taps);
void kiln_bf16_pair_rows(uint32_t *dst, long dplane, long drow, const float *src, long splane, long srow,
                         long nplanes, long nrows, long rowlen);
void kiln_bf16_rows(uint16_t *dst, long dplane, long drow, const float *src, long splane, long srow, long nplanes,
                    long nrows, long rowlen);
void kiln_conv_bf16_gemm_bx(long m, long n, long np, const uint32_t *ap, const uint32_t *x2, const int32_t *poff,
                            float *c, long ldc, float beta);
void kiln_conv_bf16_pack_dout(uint32_t *bp, const uint32_t *dy, long ldy, long m, long np);
void kiln_conv_bf16_gemm_ax(long m, long n, long np, const uint16_t *xb, const int32_t *aoff, const uint32_t *bp,
                            float *c, long ldc, float beta);
void kiln_conv_amx_pack_w(uint32_t *ap, const float *w, long m, long rs, long nch, long cs, long taps, long mp,
                          long c2p);
void kiln_conv_amx_bx(long mp, long nch, const int32_t *src, const int32_t *dst, long taps, long c2p,
                      const uint32_t *ap, const uint32_t *x2, long bplane, const int32_t *toff, const float *bias16,
                      float *c, long ldc);
void kiln_conv_amx_ax(long m, long taps, long n, long np, const uint16_t *xb, long plane, const int32_t *toff,
                      const uint32_t *bp, float *c, long ldc);
