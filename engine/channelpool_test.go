package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

func TestGradientChannelPool(t *testing.T) {
	for _, s := range [][4]int{{1, 1, 3, 2}, {2, 5, 3, 4}, {3, 9, 1, 5}} {
		n, c, h, w := s[0], s[1], s[2], s[3]
		x := engine.New(engine.Float64, n, c, h, w)
		rng := rand.New(rand.NewPCG(uint64(c), 1))
		for i, j := range rng.Perm(x.Len()) { // distinct values: no ties for the max
			x.Float64()[i] = float64(j)*0.01 - 0.3
		}
		out := engine.New(engine.Float64, n, 2, h, w)
		dx := engine.New(engine.Float64, n, c, h, w)
		am := make([]int32, n*h*w)
		gradcheck.Check(t, []*engine.Tensor{x},
			func() (*engine.Tensor, error) { return out, engine.ChannelPoolForward(out, am, x) },
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				return []*engine.Tensor{dx}, engine.ChannelPoolBackward(dx, dy, am)
			}, gradcheck.Options{})
	}
	if err := engine.ChannelPoolForward(engine.New(engine.Float32, 1, 1, 2, 2), make([]int32, 4), engine.New(engine.Float32, 1, 3, 2, 2)); err == nil {
		t.Fatal("wrong output shape accepted")
	}
}

func TestGradientTranspose12(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	x := gradcheck.Rand(rng, -1, 1, 2, 37, 5)
	out := engine.New(engine.Float64, 2, 5, 37)
	dx := engine.New(engine.Float64, 2, 37, 5)
	gradcheck.Check(t, []*engine.Tensor{x},
		func() (*engine.Tensor, error) { return out, engine.Transpose12(out, x) },
		func(dy *engine.Tensor) ([]*engine.Tensor, error) {
			return []*engine.Tensor{dx}, engine.Transpose12(dx, dy)
		}, gradcheck.Options{})
	if x.At(1*37*5+3*5+4) != out.At(1*5*37+4*37+3) {
		t.Fatal("transpose put an element in the wrong place")
	}
}

func TestGradientGlobalMaxPool(t *testing.T) {
	for _, s := range [][4]int{{1, 1, 1, 1}, {2, 3, 5, 7}, {3, 9, 4, 1}} {
		n, c, h, w := s[0], s[1], s[2], s[3]
		x := engine.New(engine.Float64, n, c, h, w)
		rng := rand.New(rand.NewPCG(uint64(h), 2))
		for i, j := range rng.Perm(x.Len()) {
			x.Float64()[i] = float64(j)*0.01 - 0.2
		}
		out := engine.New(engine.Float64, n, c)
		dx := engine.New(engine.Float64, n, c, h, w)
		am := make([]int32, n*c)
		gradcheck.Check(t, []*engine.Tensor{x},
			func() (*engine.Tensor, error) { return out, engine.GlobalMaxPoolForward(out, am, x) },
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				return []*engine.Tensor{dx}, engine.GlobalMaxPoolBackward(dx, dy, am)
			}, gradcheck.Options{})
		// float32 picks the same winners.
		x32, out32 := x.As(engine.Float32), engine.New(engine.Float32, n, c)
		am32 := make([]int32, n*c)
		if err := engine.GlobalMaxPoolForward(out32, am32, x32); err != nil {
			t.Fatal(err)
		}
		for i := range am {
			if am[i] != am32[i] {
				t.Fatalf("plane %d: float32 picked %d, float64 %d", i, am32[i], am[i])
			}
		}
	}
	if err := engine.GlobalMaxPoolForward(engine.New(engine.Float32, 2, 3), make([]int32, 5), engine.New(engine.Float32, 2, 3, 2, 2)); err == nil {
		t.Fatal("short argmax accepted")
	}
}
