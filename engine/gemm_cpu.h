// gemm_cpu.h: Kiln's float32 matrix multiply (see gemm_cpu.c).
#ifndef KILN_GEMM_CPU_H
#define KILN_GEMM_CPU_H

// kiln_sgemm computes C = alpha·op(A)·op(B) + beta·C on row-major matrices.
// op(A) is m×k (A stored k×m when transA), op(B) is k×n (B stored n×k when
// transB); lda, ldb, ldc are row strides in elements. beta == 0 overwrites C
// without reading it. Products big enough are split across up to threads
// threads (see gemm_cpu.c); results are bit-identical for a given thread count.
void kiln_sgemm(int threads, int transA, int transB, long m, long n, long k,
                float alpha, const float *a, long lda, const float *b, long ldb,
                float beta, float *c, long ldc);

// kiln_sgemm_split reports how kiln_sgemm splits a product across threads:
// 0 not at all, 1 along N, 2 along M, 3 along K. For tests.
int kiln_sgemm_split(int transA, int transB, long m, long n, long k, long ldb,
                     int threads);


// A plan picks the algorithm from the whole product's shape; kiln_sgemm makes
// it once and hands it to every part so all parts do the same arithmetic.
enum {
	KILN_SGEMM_PACK_A = 1, // pack A into micro-panels
	KILN_SGEMM_PACK_B = 2, // pack B into micro-panels (always when transposed)
	KILN_SGEMM_DOT = 4,    // A·Bᵀ by dot products, no packing (transB && !transA)
};

int kiln_sgemm_plan(int transA, int transB, long m, long n, long k, long ldb);

// kiln_sgemm_run is a one-thread kiln_sgemm with the plan given.
void kiln_sgemm_run(int plan, int transA, int transB, long m, long n, long k,
                    float alpha, const float *a, long lda, const float *b,
                    long ldb, float beta, float *c, long ldc);

#endif
