package engine_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// Batch norm's reference is its float64 Go loop (norm.go: one channel at a
// time, float64 sums, gradient-checked). The float32 path (the C moments,
// apply and backward kernels where the machine has them, the same loop
// otherwise) is compared with it on planes that are awkward for a vector
// kernel: BatchNorm1d's one value per plane, planes shorter than a vector,
// one vector plus a ragged tail, a whole number of vectors, one sample, and
// no affine parameters. Layer norm's row lengths are covered by
// TestLayerNormFloat32RowLengths. Tolerances: 1e-5 absolute + 1e-4 relative,
// float32 rounding of values normalised to O(1) and of sums over N·H·W.
func TestBatchNormFloat32MatchesFloat64Loop(t *testing.T) {
	for i, c := range []struct {
		shape  []int
		affine bool
	}{
		{[]int{5, 3}, true}, {[]int{6, 3, 1, 1}, true}, {[]int{3, 2, 1, 3}, true}, {[]int{2, 4, 3, 3}, false},
		{[]int{1, 3, 2, 4}, true}, {[]int{4, 2, 4, 4}, true}, {[]int{2, 3, 5, 7}, true}, {[]int{1, 2, 17, 1}, false},
		{[]int{2, 3, 9, 9}, true}, {[]int{3, 2, 16, 16}, true}, // AVX-512's 16-float vectors and a tail
	} {
		t.Run(fmt.Sprintf("%v/affine=%v", c.shape, c.affine), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(45, uint64(i)))
			ch := c.shape[1]
			x := gradcheck.Rand(rng, -1, 3, c.shape...)
			dout := gradcheck.Rand(rng, -1, 1, c.shape...)
			var gamma, beta *engine.Tensor
			if c.affine {
				gamma, beta = gradcheck.Rand(rng, 0.5, 1.5, ch), gradcheck.Rand(rng, -1, 1, ch)
			}
			var want []*engine.Tensor
			for _, dt := range []engine.DType{engine.Float64, engine.Float32} {
				got := runBatchNorm(t, dt, x, dout, gamma, beta)
				if want == nil {
					want = got
					continue
				}
				for k, name := range []string{"out", "dx", "mean", "invstd", "runmean", "runvar", "dgamma", "dbeta"} {
					if k < len(got) {
						opsClose(t, name, got[k], want[k], 1e-5, 1e-4)
					}
				}
			}
		})
	}
}

// runBatchNorm runs one training step of batch norm in dt and returns out,
// dx, the saved mean and 1/σ, the running statistics, and with gamma the
// parameter gradients.
func runBatchNorm(t *testing.T, dt engine.DType, x, dout, gamma, beta *engine.Tensor) []*engine.Tensor {
	ch := x.Dim(1)
	as := func(v *engine.Tensor) *engine.Tensor {
		if v == nil {
			return nil
		}
		return v.As(dt)
	}
	out, dx := engine.New(dt, x.Shape()...), engine.New(dt, x.Shape()...)
	mean, invStd, rm, rv := engine.New(dt, ch), engine.New(dt, ch), engine.New(dt, ch), engine.New(dt, ch)
	opsMust(t, rv.Fill(1))
	res := []*engine.Tensor{out, dx, mean, invStd, rm, rv}
	var dg, db *engine.Tensor
	if gamma != nil {
		dg, db = engine.New(dt, ch), engine.New(dt, ch)
		res = append(res, dg, db)
	}
	opsMust(t, engine.BatchNorm2DForward(out, mean, invStd, x.As(dt), as(gamma), as(beta), rm, rv, 0.1, 1e-5))
	opsMust(t, engine.BatchNorm2DBackward(dx, dg, db, dout.As(dt), x.As(dt), mean, invStd, as(gamma)))
	return res
}
