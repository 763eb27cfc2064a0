//go:build !cgo || !amd64

package engine

func sguGateC[T Float](out, vm, z, b []T, t, d int) bool { return false }

func sguGateBackwardC[T Float](dvm, dz []T, db []float64, dout, z, vm []T, t, d int) bool {
	return false
}

func gemmIn[T Float](inPart, transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
