package engine_test

import (
	"fmt"
	"math"
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

// BatchNorm2DReLUForward and BatchNorm2DReLUBackward give the bits of batch
// norm and ReLU run one after the other (NaN, zeros and ties included), in
// float32 at every ISA level and in float64, and a dx-less backward gives the
// same parameter gradients.
func TestBatchNormReLUIsBatchNormThenReLU(t *testing.T) {
	defer restoreISA(t)()
	shapes := [][]int{{4, 3, 5, 7}, {3, 2, 16, 16}, {6, 5}, {2, 4, 1, 33}}
	for _, level := range engine.CPUISAs() {
		opsMust(t, engine.SetCPUISA(level))
		for i, shape := range shapes {
			rng := rand.New(rand.NewPCG(46, uint64(i)))
			x, dout := gradcheck.Rand(rng, -2, 2, shape...), gradcheck.Rand(rng, -1, 1, shape...)
			xs := x.Float64()
			xs[3], xs[5] = 0, xs[4] // a tie
			if len(xs) > 40 {
				xs[40] = math.NaN()
			}
			ch := shape[1]
			gamma, beta := gradcheck.Rand(rng, 0.5, 1.5, ch), gradcheck.Rand(rng, -1, 1, ch)
			for _, dt := range []engine.DType{engine.Float32, engine.Float64} {
				want, got := bnThenReLU(t, dt, x, dout, gamma, beta, false), bnThenReLU(t, dt, x, dout, gamma, beta, true)
				for k, name := range []string{"out", "dx", "dgamma", "dbeta", "dgamma (no dx)", "dbeta (no dx)"} {
					if !bitsEqual(got[k], want[k]) {
						t.Errorf("%s %v %v %s: fused and separate ops differ", level, shape, dt, name)
					}
				}
			}
		}
	}
}

// bnThenReLU runs batch norm and ReLU forward and backward, fused or one
// after the other, and returns out, dx, dgamma, dbeta, and dgamma, dbeta
// from a second backward without dx.
func bnThenReLU(t *testing.T, dt engine.DType, x, dout, gamma, beta *engine.Tensor, fused bool) []*engine.Tensor {
	ch := x.Dim(1)
	xd, g, b, dy := x.As(dt), gamma.As(dt), beta.As(dt), dout.As(dt)
	out, dx := engine.New(dt, x.Shape()...), engine.New(dt, x.Shape()...)
	mean, invStd, rm, rv := engine.New(dt, ch), engine.New(dt, ch), engine.New(dt, ch), engine.New(dt, ch)
	dg, db, dg2, db2 := engine.New(dt, ch), engine.New(dt, ch), engine.New(dt, ch), engine.New(dt, ch)
	opsMust(t, rv.Fill(1))
	if fused {
		opsMust(t, engine.BatchNorm2DReLUForward(out, mean, invStd, xd, g, b, rm, rv, 0.1, 1e-5))
		opsMust(t, engine.BatchNorm2DReLUBackward(dx, dg, db, dy, out, xd, mean, invStd, g))
		opsMust(t, engine.BatchNorm2DReLUBackward(nil, dg2, db2, dy, out, xd, mean, invStd, g))
		return []*engine.Tensor{out, dx, dg, db, dg2, db2}
	}
	y, dyr := engine.New(dt, x.Shape()...), engine.New(dt, x.Shape()...)
	opsMust(t, engine.BatchNorm2DForward(y, mean, invStd, xd, g, b, rm, rv, 0.1, 1e-5))
	opsMust(t, engine.ActivationForward(out, y, engine.ReLU))
	opsMust(t, engine.ActivationBackward(dyr, dy, y, out, engine.ReLU))
	opsMust(t, engine.BatchNorm2DBackward(dx, dg, db, dyr, xd, mean, invStd, g))
	opsMust(t, engine.BatchNorm2DBackward(nil, dg2, db2, dyr, xd, mean, invStd, g))
	return []*engine.Tensor{out, dx, dg, db, dg2, db2}
}

// bitsEqual compares two tensors' values bit for bit (NaNs by their bits).
func bitsEqual(a, b *engine.Tensor) bool {
	av, bv := a.Values(), b.Values()
	if len(av) != len(bv) {
		return false
	}
	for i := range av {
		if math.Float64bits(av[i]) != math.Float64bits(bv[i]) {
			return false
		}
	}
	return true
}
