package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

var broadcastCases = []struct{ x, g []int }{
	{[]int{2, 3, 5, 7}, []int{2, 3, 1, 1}}, // channel attention
	{[]int{2, 3, 5, 7}, []int{2, 1, 5, 7}}, // spatial attention
	{[]int{1, 5, 3, 3}, []int{1, 5, 1, 1}}, // batch 1
	{[]int{2, 3, 5, 7}, []int{1, 3, 1, 1}}, // per channel over the batch
	{[]int{2, 3, 5, 7}, []int{3, 1, 7}},    // lower rank, alternating
	{[]int{2, 3, 5, 7}, []int{2, 3, 5, 7}}, // no broadcast
	{[]int{2, 3, 5, 7}, []int{1}},          // one scalar
	{[]int{4, 3}, []int{4, 1}},
	{[]int{4, 3}, []int{3}},
	{[]int{1, 1, 3}, []int{1, 1, 1}},
}

func TestGradientBroadcastMultiply(t *testing.T) {
	for i, c := range broadcastCases {
		rng := rand.New(rand.NewPCG(23, uint64(i)))
		x := gradcheck.Rand(rng, -1, 1, c.x...)
		g := gradcheck.Rand(rng, -1, 1, c.g...)
		out, dx, dg := engine.New(engine.Float64, c.x...), engine.New(engine.Float64, c.x...), engine.New(engine.Float64, c.g...)
		gradcheck.Check(t, []*engine.Tensor{x, g},
			func() (*engine.Tensor, error) { return out, engine.BroadcastMultiplyForward(out, x, g) },
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				return []*engine.Tensor{dx, dg}, engine.BroadcastMultiplyBackward(dx, dg, dy, x, g)
			}, gradcheck.Options{Names: []string{"x", "g"}})
	}
}

// Against BroadcastMultiplyReference in float64 and float32 (with the
// reference's plain comparison in broadcast_ref_test.go), the ways a layer
// calls the op: dx computed in place over dout, dg overwritten rather than
// accumulated, either gradient omitted, the forward pass in place over x.
func TestBroadcastMultiplyInPlaceAndOmitted(t *testing.T) {
	for i, c := range append(broadcastCases, struct{ x, g []int }{[]int{16, 64, 9, 11}, []int{16, 1, 9, 11}}) {
		rng := rand.New(rand.NewPCG(24, uint64(i)))
		x := gradcheck.Rand(rng, -1, 1, c.x...)
		g := gradcheck.Rand(rng, -1, 1, c.g...)
		dout := gradcheck.Rand(rng, -1, 1, c.x...)
		wantOut, wantDx, wantDg, err := engine.BroadcastMultiplyReference(x, g, dout)
		opsMust(t, err)
		for _, dt := range []engine.DType{engine.Float64, engine.Float32} {
			tol := 1e-14
			if dt == engine.Float32 {
				tol = 1e-5
			}
			near := func(what string, got *engine.Tensor, want []float64, atol float64) {
				t.Helper()
				if msg := gradcheck.Close(got.Values(), want, atol, tol); msg != "" {
					t.Errorf("%v %v %s: %s", c.x, dt, what, msg)
				}
			}
			xs, gs, ds := x.As(dt), g.As(dt), dout.As(dt)
			out, dg := engine.New(dt, c.x...), engine.New(dt, c.g...)
			opsMust(t, engine.BroadcastMultiplyForward(out, xs, gs))
			near("out", out, wantOut, tol)
			dg.Fill(7) // overwritten, not accumulated
			opsMust(t, engine.BroadcastMultiplyBackward(ds, dg, ds, xs, gs))
			near("dx", ds, wantDx, tol)
			near("dg", dg, wantDg, 10*tol)
			opsMust(t, engine.BroadcastMultiplyBackward(nil, dg, dout.As(dt), xs, gs))
			near("dg alone", dg, wantDg, 10*tol)
			dx := engine.New(dt, c.x...)
			opsMust(t, engine.BroadcastMultiplyBackward(dx, nil, dout.As(dt), xs, gs))
			near("dx alone", dx, wantDx, tol)
			opsMust(t, engine.BroadcastMultiplyForward(xs, xs, gs)) // in place
			near("in-place out", xs, wantOut, tol)
		}
	}
}

func TestBroadcastMultiplyShapeErrors(t *testing.T) {
	const op, opB = "BroadcastMultiplyForward", "BroadcastMultiplyBackward"
	x := engine.New(engine.Float32, 2, 3, 4, 4)
	out := engine.New(engine.Float32, 2, 3, 4, 4)
	opsShapeError(t, engine.BroadcastMultiplyForward(out, x, engine.New(engine.Float32, 2, 2, 1, 1)), op)
	t.Log(engine.BroadcastMultiplyForward(out, x, engine.New(engine.Float32, 2, 2, 1, 1)))
	opsShapeError(t, engine.BroadcastMultiplyForward(out, x, engine.New(engine.Float32, 1, 2, 3, 1, 1)), op)
	opsShapeError(t, engine.BroadcastMultiplyForward(engine.New(engine.Float32, 2, 3, 16), x, engine.New(engine.Float32, 1)), op)
	opsShapeError(t, engine.BroadcastMultiplyForward(out, x, nil), op)
	opsShapeError(t, engine.BroadcastMultiplyForward(out, x, engine.New(engine.Float64, 1)), op)
	big := engine.New(engine.Float32, 1, 1, 1, 1, 1, 1, 1, 1, 1)
	opsShapeError(t, engine.BroadcastMultiplyForward(big, big, engine.New(engine.Float32, 1)), op)
	g := engine.New(engine.Float32, 2, 3, 1, 1)
	opsShapeError(t, engine.BroadcastMultiplyBackward(out, engine.New(engine.Float32, 2, 3), out, x, g), opB)
	opsShapeError(t, engine.BroadcastMultiplyBackward(engine.New(engine.Float32, 2, 3), nil, out, x, g), opB)
	opsShapeError(t, engine.BroadcastMultiplyBackward(out, g, nil, x, g), opB)
}

func TestBroadcastMultiplyNoAllocs(t *testing.T) {
	x := engine.New(engine.Float32, 4, 16, 9, 9)
	x.Fill(0.5)
	out, dx := engine.New(engine.Float32, 4, 16, 9, 9), engine.New(engine.Float32, 4, 16, 9, 9)
	for _, gs := range [][]int{{4, 16, 1, 1}, {4, 1, 9, 9}} {
		g, dg := engine.New(engine.Float32, gs...), engine.New(engine.Float32, gs...)
		opsNoAllocs(t, "broadcast multiply", func() {
			_ = engine.BroadcastMultiplyForward(out, x, g)
			_ = engine.BroadcastMultiplyBackward(dx, dg, out, x, g)
		})
	}
}
