//go:build !cgo || !amd64

package engine

type lnRows[T Float] struct {
	out, x, dout, mean, rstd, gamma, beta []T
	ldo, ldx, ldd, rows, d                int
	eps                                   float64
}

func layerNormC[T Float](r *lnRows[T], backward bool, dg, db []float64) bool { return false }

func layerNormRowsC[T Float](t *layerNormTask[T], dg, db []float64, lo, hi int) bool { return false }
