//go:build openblas && cgo

package engine

import "testing"

// BenchmarkSgemmOpenBLAS runs OpenBLAS on BenchmarkSgemm's shapes with the
// same thread count, for comparison.
func BenchmarkSgemmOpenBLAS(b *testing.B) {
	threads := Threads()
	benchSgemmWith(b, func(s sgemmBenchShape, a, bm, c []float32, lda, ldb int) {
		openblasSgemm(threads, s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
	})
}
