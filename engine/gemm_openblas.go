//go:build openblas && cgo

package engine

// OpenBLAS's cblas_sgemm, for the side-by-side benchmark only
// (go test -tags openblas -bench Sgemm ./engine/). The default build does not
// link OpenBLAS.

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
*/
import "C"

// openblasSgemm is cblas_sgemm on row-major operands, run on threads threads.
func openblasSgemm(threads int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := uint32(C.CblasNoTrans), uint32(C.CblasNoTrans)
	if transA {
		ta = C.CblasTrans
	}
	if transB {
		tb = C.CblasTrans
	}
	C.openblas_set_num_threads(C.int(threads))
	C.cblas_sgemm(C.CblasRowMajor, ta, tb, C.blasint(m), C.blasint(n), C.blasint(k), C.float(alpha),
		cptr(a), C.blasint(lda), cptr(b), C.blasint(ldb), C.float(beta), cptr(c), C.blasint(ldc))
}
