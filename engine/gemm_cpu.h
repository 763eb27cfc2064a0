// gemm_cpu.h: Kiln's float32 matrix multiply (see gemm_cpu.c).
#ifndef KILN_GEMM_CPU_H
#define KILN_GEMM_CPU_H

// C = alpha·op(A)·op(B) + beta·C on row-major matrices. op(A) is m×k (A
// stored k×m when transA), op(B) is k×n (B stored n×k when transB); lda, ldb,
// ldc are row strides in elements. beta == 0 overwrites C without reading it.
//
// kiln_sgemm_split says how a product is split across threads: 0 not at all
// (run kiln_sgemm_run with kiln_sgemm_plan's plan), 1 along N, 2 along M, 3
// along K. The product is then kiln_sgemm_tiles tiles, and parts =
// min(tiles, threads) calls of kiln_sgemm_part, one per part, on any threads
// in any order; a K split writes parts after the first to partial
// ((parts−1)·m·n floats), which kiln_sgemm_sum_parts then adds into C.
// Results are bit-identical for a given thread count.
//
// bias (n floats, or NULL) is then added to each row of C, each element's
// final value plus its column's bias, one rounding (the bits of
// kiln_add_row_bias_f32 after the product): the packed path adds it to
// each block of rows as the block is finished, while it is in cache.
int kiln_sgemm_split(int transA, int transB, long m, long n, long k, long ldb,
                     int threads);
long kiln_sgemm_tiles(int split, long m, long n, long k);
void kiln_sgemm_part(int split, int parts, int part, int transA, int transB,
                     long m, long n, long k, float alpha, const float *a,
                     long lda, const float *b, long ldb, float beta, float *c,
                     long ldc, float *partial, const float *bias);
void kiln_sgemm_sum_parts(int parts, long m, long n, const float *partial,
                          float *c, long ldc, const float *bias);

// A plan picks the algorithm from the whole product's shape; every part
// makes the same one, so all parts do the same arithmetic.
enum {
	KILN_SGEMM_PACK_A = 1, // pack A into micro-panels
	KILN_SGEMM_PACK_B = 2, // pack B into micro-panels (always when transposed)
	KILN_SGEMM_DOT = 4,    // A·Bᵀ by dot products, no packing (transB && !transA)
};

int kiln_sgemm_plan(int transA, int transB, long m, long n, long k, long ldb);

// kiln_sgemm_run is the product on the calling thread with the plan given.
void kiln_sgemm_run(int plan, int transA, int transB, long m, long n, long k,
                    float alpha, const float *a, long lda, const float *b,
                    long ldb, float beta, float *c, long ldc,
                    const float *bias);

#endif
