// sgemm.h: Kiln's float32 matrix multiply (see sgemm.c).
#ifndef KILN_SGEMM_H
#define KILN_SGEMM_H

// kiln_sgemm computes C = alpha·op(A)·op(B) + beta·C on row-major matrices.
// op(A) is m×k (A stored k×m when transA), op(B) is k×n (B stored n×k when
// transB); lda, ldb, ldc are row strides in elements. beta == 0 overwrites C
// without reading it. Single-threaded: the Go side splits work across threads.
void kiln_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                const float *a, long lda, const float *b, long ldb, float beta,
                float *c, long ldc);

// kiln_sgemm_has_avx2 reports whether the CPU (and OS) support AVX2 and FMA.
int kiln_sgemm_has_avx2(void);

// kiln_sgemm_set_path picks the kernel: 1 AVX2/FMA (ignored without CPU
// support), 0 portable C. Returns the path now in use. For tests.
int kiln_sgemm_set_path(int avx2);

// kiln_sgemm_forced runs the AVX2 kernel with an explicit packing choice
// (packA, packB) instead of the size heuristic; for tests and tuning only.
// It falls back to the portable path where AVX2 is missing.
void kiln_sgemm_forced(int packA, int packB, int transA, int transB, long m,
                       long n, long k, float alpha, const float *a, long lda,
                       const float *b, long ldb, float beta, float *c,
                       long ldc);

#endif
