//go:build !cgo || !amd64

package engine

func cpuBF16() bool { return false }

func cpuAMX() bool { return false }

func useAMX(on bool) {}

func toBF16C(dst []Bfloat16, src []float32) bool { return false }

func roundBF16C(dst, src []float32) bool { return false }

func fromBF16C(dst []float32, src []Bfloat16) bool { return false }

func sgemmBF16C(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int,
	beta float32, c []float32, ldc int, bias []float32) bool {
	return false
}

func checkBF16GemmArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32,
	ldc int) {
}
