package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// Float32 LayerNorm (vectorised in C where the CPU allows) agrees with the
// float64 loops for rows shorter than a vector, with a ragged tail and a
// whole number of vectors, with and without gamma and beta.
func TestLayerNormFloat32RowLengths(t *testing.T) {
	for _, d := range []int{3, 8, 20, 64} {
		for _, affine := range []bool{false, true} {
			rng := rand.New(rand.NewPCG(18, uint64(d)))
			rows := 7
			x := gradcheck.Rand(rng, -2, 3, rows, d)
			dout := gradcheck.Rand(rng, -1, 1, rows, d)
			var gamma, beta *engine.Tensor
			if affine {
				gamma, beta = gradcheck.Rand(rng, 0.5, 1.5, d), gradcheck.Rand(rng, -1, 1, d)
			}
			run := func(dt engine.DType) []*engine.Tensor {
				as := func(v *engine.Tensor) *engine.Tensor {
					if v == nil {
						return nil
					}
					return v.As(dt)
				}
				out, dx := engine.New(dt, rows, d), engine.New(dt, rows, d)
				mean, rstd := engine.New(dt, rows), engine.New(dt, rows)
				res := []*engine.Tensor{out, dx, mean, rstd}
				var dg, db *engine.Tensor
				if affine {
					dg, db = engine.New(dt, d), engine.New(dt, d)
					res = append(res, dg, db)
				}
				opsMust(t, engine.LayerNormForward(out, mean, rstd, as(x), as(gamma), as(beta), 1e-5))
				opsMust(t, engine.LayerNormBackward(dx, dg, db, as(dout), as(x), mean, rstd, as(gamma)))
				return res
			}
			want, got := run(engine.Float64), run(engine.Float32)
			for i := range want {
				opsClose(t, "layer norm", got[i], want[i], 1e-5, 1e-4)
			}
		}
	}
}
