package engine

import "unsafe"

// gemm computes C = alpha·op(A)·op(B) + beta·C on row-major matrices, where
// op(A) is m×k and op(B) is k×n. With transA, A is stored k×m; with transB, B
// is stored n×k. lda, ldb and ldc are row strides. beta == 0 overwrites C
// without reading it (so NaNs in a fresh buffer do not leak).
//
// Every heavy CPU op reduces to this call. Float32 goes to the C kernel
// (gemm_cpu.c); float64, used only by the reference checks, stays in Go.
func gemm[T Float](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if !isFloat64[T]() {
		sgemm(transA, transB, m, n, k, float32(alpha),
			asF32(a), lda, asF32(b), ldb, float32(beta), asF32(c), ldc)
		return
	}
	gemmGo(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemmAt is gemmIn with op(A) and op(B) rounded to prec first (BF16:
// sgemmBF16), the products summed in float32. The op that calls it has
// checked prec against the CPU (checkPrecision): no product falls back to
// float32 unasked.
func gemmAt[T Float](prec Precision, inPart, transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int,
	beta T, c []T, ldc int) {
	if prec != BF16 || isFloat64[T]() || m == 0 || n == 0 {
		gemmIn(inPart, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if !sgemmBF16(inPart, transA, transB, m, n, k, float32(alpha), asF32(a), lda, asF32(b), ldb, float32(beta),
		asF32(c), ldc) {
		panic("engine: a bf16 product on a CPU without AVX512_BF16 (checkPrecision was skipped)")
	}
}

// gemmBiasAt is gemmAt (not in a part), then bias (n values, or nil) added
// to each row of C: addRowBias's bits, but in C the packed paths add it to
// each block of rows as they finish it, while it is in cache (a linear
// layer's output is read back once fewer).
func gemmBiasAt[T Float](prec Precision, transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int,
	beta T, c []T, ldc int, bias []T) {
	switch {
	case m == 0 || n == 0:
	case bias == nil:
		gemmAt(prec, false, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	case isFloat64[T]() || !sgemmInC:
		gemmAt(prec, false, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		addBiasRows(c, ldc, bias, m, n)
	case prec == BF16:
		if !sgemmBF16Bias(false, transA, transB, m, n, k, float32(alpha), asF32(a), lda, asF32(b), ldb,
			float32(beta), asF32(c), ldc, asF32(bias)) {
			panic("engine: a bf16 product on a CPU without AVX512_BF16 (checkPrecision was skipped)")
		}
	default:
		sgemmBias(transA, transB, m, n, k, float32(alpha), asF32(a), lda, asF32(b), ldb, float32(beta), asF32(c), ldc,
			asF32(bias))
	}
}

func asF32[T Float](s []T) []float32 {
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(s))), len(s))
}

// gemmGo is the plain reference: rows of C accumulate rows of B, so the inner
// loop is contiguous whenever B is not transposed.
func gemmGo[T Float](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	for i := 0; i < m; i++ {
		ci := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(ci)
		} else if beta != 1 {
			for j := range ci {
				ci[j] *= beta
			}
		}
		for p := 0; p < k; p++ {
			var av T
			if transA {
				av = a[p*lda+i]
			} else {
				av = a[i*lda+p]
			}
			av *= alpha
			if transB {
				for j := range ci {
					ci[j] += av * b[j*ldb+p]
				}
			} else {
				bp := b[p*ldb : p*ldb+n]
				for j, bv := range bp {
					ci[j] += av * bv
				}
			}
		}
	}
}
