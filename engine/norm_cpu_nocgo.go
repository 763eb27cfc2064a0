//go:build !cgo || !amd64

package engine

type lnRows[T Float] struct {
	out, x, dout, mean, rstd, gamma, beta []T
	ldo, ldx, ldd, rows, d                int
	eps                                   float64
}

func layerNormC[T Float](r *lnRows[T], backward bool, dg, db []float64) bool { return false }

func layerNormRowsC[T Float](t *layerNormTask[T], dg, db []float64, lo, hi int) bool { return false }

func bnMomentsC[T Float](t *batchNormTask[T], ch int) (mean, ss float64, ok bool) { return 0, 0, false }

func bnApplyC[T Float](t *batchNormTask[T], ch int, a, b T) bool { return false }

func bnBackwardSumsC[T Float](t *batchNormTask[T], ch int, mean float64) (sumD, sumDX float64, ok bool) {
	return 0, 0, false
}

func bnBackwardDxC[T Float](t *batchNormTask[T], ch int, k, a, b T) bool { return false }
