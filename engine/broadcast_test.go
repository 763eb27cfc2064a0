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

// broadcastReference computes out = x ⊙ g and dg = Σ dout ⊙ x index by index.
func broadcastReference(x, g, dout *engine.Tensor) (out, dg *engine.Tensor) {
	xs, gs := x.Shape(), g.Shape()
	out, dg = engine.New(engine.Float64, xs...), engine.New(engine.Float64, gs...)
	idx := make([]int, len(xs))
	for i := 0; i < x.Len(); i++ {
		gi, stride := 0, 1
		for d := len(gs) - 1; d >= 0; d-- {
			xd := d + len(xs) - len(gs)
			if gs[d] != 1 {
				gi += idx[xd] * stride
			}
			stride *= gs[d]
		}
		out.SetAt(i, x.At(i)*g.At(gi))
		dg.SetAt(gi, dg.At(gi)+dout.At(i)*x.At(i))
		for d := len(xs) - 1; d >= 0; d-- {
			if idx[d]++; idx[d] < xs[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out, dg
}

// Every case against the index-by-index reference, in float64 and float32,
// with dx computed in place over dout and with either gradient omitted.
func TestBroadcastMultiplyReferenceAndFloat32(t *testing.T) {
	for i, c := range append(broadcastCases, struct{ x, g []int }{[]int{16, 64, 9, 11}, []int{16, 1, 9, 11}}) {
		rng := rand.New(rand.NewPCG(24, uint64(i)))
		x := gradcheck.Rand(rng, -1, 1, c.x...)
		g := gradcheck.Rand(rng, -1, 1, c.g...)
		dout := gradcheck.Rand(rng, -1, 1, c.x...)
		wantOut, wantDg := broadcastReference(x, g, dout)
		wantDx, _ := broadcastReference(dout, g, dout)
		for _, dt := range []engine.DType{engine.Float64, engine.Float32} {
			tol := 1e-14
			if dt == engine.Float32 {
				tol = 1e-5
			}
			xs, gs, ds := x.As(dt), g.As(dt), dout.As(dt)
			out, dg := engine.New(dt, c.x...), engine.New(dt, c.g...)
			opsMust(t, engine.BroadcastMultiplyForward(out, xs, gs))
			opsClose(t, "out", out, wantOut, tol, tol)
			dg.Fill(7) // overwritten, not accumulated
			opsMust(t, engine.BroadcastMultiplyBackward(ds, dg, ds, xs, gs))
			opsClose(t, "dx", ds, wantDx, tol, tol)
			opsClose(t, "dg", dg, wantDg, 10*tol, tol)
			opsMust(t, engine.BroadcastMultiplyBackward(nil, dg, dout.As(dt), xs, gs))
			opsClose(t, "dg alone", dg, wantDg, 10*tol, tol)
			dx := engine.New(dt, c.x...)
			opsMust(t, engine.BroadcastMultiplyBackward(dx, nil, dout.As(dt), xs, gs))
			opsClose(t, "dx alone", dx, wantDx, tol, tol)
			opsMust(t, engine.BroadcastMultiplyForward(xs, xs, gs)) // in place
			opsClose(t, "in-place out", xs, wantOut, tol, tol)
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
