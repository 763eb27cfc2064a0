package engine_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// The broadcast multiply against BroadcastMultiplyReference: float64 (the
// merged-axes Go loops) and float32 (the C kernels where the machine has
// them; run with CGO_ENABLED=0 too). Besides broadcastCases, inner runs that
// are awkward for a vector kernel (one element, shorter than a vector, a
// vector and a ragged tail) with g broadcasting along the inner or the outer
// axes. Tolerances: 1e-12 in float64 (dg's sums run in another order), in
// float32 1e-5 absolute + relative (dg sums up to 16·64 products).
func TestBroadcastMultiplyMatchesReference(t *testing.T) {
	cases := append([]struct{ x, g []int }{
		{[]int{1}, []int{1}}, {[]int{3, 7}, []int{3, 1}}, {[]int{3, 7}, []int{7}}, {[]int{2, 3, 9}, []int{2, 3, 9}},
		{[]int{2, 5, 17}, []int{1, 5, 1}}, {[]int{4, 2, 3, 11}, []int{4, 1, 3, 11}}, {[]int{16, 64, 9, 11}, []int{16, 64, 1, 1}},
	}, broadcastCases...)
	for i, c := range cases {
		t.Run(fmt.Sprintf("%v*%v", c.x, c.g), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(47, uint64(i)))
			x, g, dout := gradcheck.Rand(rng, -1, 1, c.x...), gradcheck.Rand(rng, -1, 1, c.g...), gradcheck.Rand(rng, -1, 1, c.x...)
			for _, dt := range []engine.DType{engine.Float64, engine.Float32} {
				tol := 1e-12
				if dt == engine.Float32 {
					tol = 1e-5
				}
				// The reference sees the inputs as rounded to dt.
				xs, gs, ds := x.As(dt), g.As(dt), dout.As(dt)
				want, wantDx, wantDg, err := engine.BroadcastMultiplyReference(xs, gs, ds)
				opsMust(t, err)
				out, dx, dg := engine.New(dt, c.x...), engine.New(dt, c.x...), engine.New(dt, c.g...)
				opsMust(t, engine.BroadcastMultiplyForward(out, xs, gs))
				opsMust(t, engine.BroadcastMultiplyBackward(dx, dg, ds, xs, gs))
				for k, got := range [][]float64{out.Values(), dx.Values(), dg.Values()} {
					if msg := gradcheck.Close(got, [][]float64{want, wantDx, wantDg}[k], tol, tol); msg != "" {
						t.Errorf("%v %s: %s", dt, []string{"out", "dx", "dg"}[k], msg)
					}
				}
			}
		})
	}
}
