//go:build !(cgo && amd64)

package engine

// sgemm is the float32 matrix multiply. Without cgo on amd64 the C kernel is
// unavailable and the plain Go loop runs.
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	gemmGo(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// sgemmBias is sgemm then bias added to each row (gemmBiasAt does not call
// it in this build: sgemmInC is false).
func sgemmBias(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, bias []float32) {
	sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	addBiasRows(c, ldc, bias, m, n)
}

// sgemmSumParts adds a K split's parts 1… into C in part order, then the
// bias, as gemm_cpu.c's kiln_sgemm_sum_parts.
func sgemmSumParts(parts, m, n int, partial, c []float32, ldc int, bias []float32) {
	for i := 0; i < m; i++ {
		ci := c[i*ldc : i*ldc+n]
		for part := 1; part < parts; part++ {
			for j, v := range partial[((part-1)*m+i)*n : ((part-1)*m+i+1)*n] {
				ci[j] += v
			}
		}
	}
	addBiasRows(c, ldc, bias, m, n)
}

// sgemmPlans lists the C kernel's algorithm choices; there is only one here.
var sgemmPlans = []int{0}

// sgemmPlanDot marks a plan whose sums run in another order (none here).
const sgemmPlanDot = 4

// sgemmForced stands in for the C kernel's forced-plan entry (tests call it).
func sgemmForced(_ int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// sgemmInC is false: this build has no C kernel.
const sgemmInC = false

const (
	splitNone = iota
	splitN
	splitM
	splitK
)

// sgemmSplitOf reports that this build never splits a product (tests call it).
func sgemmSplitOf(_, _ bool, _, _, _ int) int { return splitNone }
