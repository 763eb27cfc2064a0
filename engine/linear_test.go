package engine_test

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

func TestGradientLinear(t *testing.T) {
	for _, c := range []struct{ n, in, o int }{{1, 1, 1}, {3, 5, 7}, {4, 13, 9}, {2, 33, 17}} {
		rng := rand.New(rand.NewPCG(1, uint64(c.in)))
		x := gradcheck.Rand(rng, -1, 1, c.n, c.in)
		w := gradcheck.Rand(rng, -1, 1, c.o, c.in)
		b := gradcheck.Rand(rng, -1, 1, c.o)
		out := engine.New(engine.Float64, c.n, c.o)
		dx := engine.New(engine.Float64, c.n, c.in)
		dw := engine.New(engine.Float64, c.o, c.in)
		db := engine.New(engine.Float64, c.o)
		gradcheck.Check(t, []*engine.Tensor{x, w, b},
			func() (*engine.Tensor, error) { return out, engine.LinearForward(out, x, w, b) },
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				dw.Zero()
				db.Zero()
				return []*engine.Tensor{dx, dw, db}, engine.LinearBackward(dx, dw, db, dy, x, w)
			}, gradcheck.Options{Names: []string{"x", "w", "b"}})
	}
}

// Parameter gradients accumulate: two backward passes give twice the gradient,
// while the input gradient is overwritten.
func TestLinearBackwardAccumulates(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	x := gradcheck.Rand(rng, -1, 1, 3, 4)
	w := gradcheck.Rand(rng, -1, 1, 5, 4)
	dout := gradcheck.Rand(rng, -1, 1, 3, 5)
	dx := engine.New(engine.Float64, 3, 4)
	dw := engine.New(engine.Float64, 5, 4)
	db := engine.New(engine.Float64, 5)
	for i := 0; i < 2; i++ {
		if err := engine.LinearBackward(dx, dw, db, dout, x, w); err != nil {
			t.Fatal(err)
		}
	}
	dx1 := dx.Clone()
	dw1 := engine.New(engine.Float64, 5, 4)
	if err := engine.LinearBackward(dx, dw1, nil, dout, x, w); err != nil {
		t.Fatal(err)
	}
	for i := range dw.Float64() {
		if d := dw.Float64()[i] - 2*dw1.Float64()[i]; d > 1e-12 || d < -1e-12 {
			t.Fatalf("dw[%d] = %v after two passes, want %v", i, dw.Float64()[i], 2*dw1.Float64()[i])
		}
	}
	if msg := gradcheck.Close(dx.Values(), dx1.Values(), 0, 0); msg != "" {
		t.Fatalf("dx must be overwritten, not accumulated: %s", msg)
	}
}

func TestLinearShapeErrors(t *testing.T) {
	x := engine.New(engine.Float32, 2, 3)
	w := engine.New(engine.Float32, 4, 5)
	out := engine.New(engine.Float32, 2, 4)
	err := engine.LinearForward(out, x, w, nil)
	var se *engine.ShapeError
	if !errors.As(err, &se) || se.Op != "LinearForward" {
		t.Fatalf("got %v, want a ShapeError from LinearForward", err)
	}
	t.Log(err)
	if err := engine.LinearForward(out, x, engine.New(engine.Float64, 4, 3), nil); err == nil {
		t.Fatal("mixed dtypes accepted")
	}
}
