#include <stdint.h>
int kiln_conv_cpu_maxk(void);
int kiln_conv_cpu_lanes(void);
int kiln_conv_cpu_panel(int vl);
void kiln_conv_pack(float *dst, const float *a, long m, long nr, long nt, long si, long sr, long rb, int mr);
long kiln_conv_flat_block(void);
int kiln_conv_shift_gemm(float *c, long ldc, long m, const float *ap, long nr, long nt, const float *b, long blen,
                         long ldbr, long kw, long base, long sh, long sw, const float *init, long nrows, long rowlen,
                         long brs, long crs, int vl);
int kiln_conv_shift_dw(float *dw, long ldw, long m, const float *a, long lda, long nr, long nt, const float *b,
                       long ldbr, long kw, long base, long sh, long sw, long nrows, long rowlen, long ars, long brs,
                       int vl);
int kiln_conv_shift_dwt(float *dwt, long ldw, float *db, const float *dyt, long ldt, long nr, long nt, const float *b,
                        long ldbr, long kw, long base, long sh, long sw, long nrows, long rowlen, long brs, int vl);
int kiln_conv_oc_gemm(float *c, long ldc, long m, const float *wp, long nr, long nt, const float *b, long ldbr,
                      long kw, long base, long sh, long sw, const float *init, long nrows, long rowlen, long brs,
                      float *yt, long ldt, long tw, int vl);
long kiln_conv_flat_mask_bytes(long h, long w, long nt, int vl);
void kiln_conv_flat_masks(void *dst, long h, long w, long kh, long kw, long ph, long pw, int neg, int vl);
int kiln_conv_flat_gemm(float *c, long ldc, long m, const float *ap, long nr, long kh, long kw, long ph, long pw,
                        int neg, const float *b, long ldbr, long w, const void *masks, const float *init, long nq,
                        int vl);
// db[r] += the sum of the len floats of row r of dy, for r < rows (the bias gradient).
void kiln_conv_add_row_sums(float *db, const float *dy, long rows, long len);
void kiln_conv_dyt(float *dyt, long ldt, const float *dy, long m, long oh, long ow, long qrow);
int kiln_conv_shift_gemm_dx(float *c, long ldc, long m, const float *ap, long nr, long khn, long kw, const float *b,
                            long blen, long ldbr, long base, long sh, long sw, long nrows, long rowlen, long brs,
                            long crs, long ph, long dh, long oh, int vl);
void kiln_conv_copy_rows(float *dst, long dplane, long drow, const float *src, long splane, long srow, long np,
                         long nrows, long rowlen);
void kiln_conv_im2col(float *col, long ld, const float *x, int cg, int h, int w, int oh, int ow, int kh, int kw,
                      int sh, int sw, int ph, int pw, int dh, int dw);
void kiln_conv_col2im(float *dx, const float *col, long ld, int cg, int h, int w, int oh, int ow, int kh, int kw,
                      int sh, int sw, int ph, int pw, int dh, int dw);
typedef void (*kiln_wino_gtimes)(double *u, int s, double g0, double g1, double g2);
void kiln_wino_pack_n(float *dst, const float *w, long m, long k, long si, long sr, int flip, int mr, int n,
                      kiln_wino_gtimes gtimes);
long kiln_wino_scratch(long k, long m, long h, long w);
void kiln_wino_pack(float *dst, const float *w, long m, long k, long si, long sr, int flip, int mr);
int kiln_wino_conv(float *y, const float *x, const float *u, const float *bias, long k, long m, long h, long w,
                   float *scratch, int vl);
long kiln_wino4_scratch(long k, long m, long h, long w);
void kiln_wino4_pack(float *dst, const float *w, long m, long k, long si, long sr, int flip, int mr);
int kiln_wino4_conv(float *y, long ys, const float *x, long xs, long n, const float *u, const float *bias, long k,
                    long m, long h, long w, float *scratch, int vl);
long kiln_wino4_dw_scratch(long k, long m, long h, long w, long ldt);
int kiln_wino4_dw(float *du, long ldt, const float *x, long xs, const float *dy, long ys, long n, long k, long m,
                  long h, long w, float *scratch, int vl);
long kiln_wino_dw_scratch(long k, long m, long h, long w, long ldt);
int kiln_wino_dw(float *du, long ldt, const float *x, const float *dy, long k, long m, long h, long w,
                 float *scratch, int vl);
