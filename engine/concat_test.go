package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

func TestGradientConcat(t *testing.T) {
	for _, c := range []struct {
		n     int
		chans []int
		rest  []int
	}{
		{2, []int{3, 1, 5}, []int{3, 5}}, // (N,Ci,H,W), odd spatial
		{1, []int{7, 2}, []int{1, 1}},    // batch 1
		{3, []int{4, 9, 2}, nil},         // (N,C)
		{2, []int{5}, []int{3}},          // a single part
	} {
		rng := rand.New(rand.NewPCG(21, uint64(c.n)))
		var xs, dxs []*engine.Tensor
		total := 0
		for _, ci := range c.chans {
			shape := append([]int{c.n, ci}, c.rest...)
			xs = append(xs, gradcheck.Rand(rng, -1, 1, shape...))
			dxs = append(dxs, engine.New(engine.Float64, shape...))
			total += ci
		}
		shape, ok := engine.ConcatShape(nil, xs)
		if want := append([]int{c.n, total}, c.rest...); !ok || !engine.New(engine.Float64, want...).SameShape(shape...) {
			t.Fatalf("ConcatShape = %v, %v; want %v", shape, ok, want)
		}
		out := engine.New(engine.Float64, shape...)
		gradcheck.Check(t, xs,
			func() (*engine.Tensor, error) { return out, engine.ConcatForward(out, xs) },
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				return dxs, engine.ConcatBackward(dxs, dy)
			}, gradcheck.Options{})
	}
}

// Values by hand, one nil gradient skipped, float32 identical to float64.
func TestConcatValues(t *testing.T) {
	for _, dt := range []engine.DType{engine.Float64, engine.Float32} {
		a, _ := engine.FromFloat64([]float64{1, 2, 3, 4}, 2, 1, 2) // (N=2, C=1, L=2)
		b, _ := engine.FromFloat64([]float64{5, 6, 7, 8, 9, 10, 11, 12}, 2, 2, 2)
		xs := []*engine.Tensor{a.As(dt), b.As(dt)}
		out := engine.New(dt, 2, 3, 2)
		opsMust(t, engine.ConcatForward(out, xs))
		want, _ := engine.FromFloat64([]float64{1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12}, 2, 3, 2)
		opsClose(t, "concat "+dt.String(), out, want, 0, 0)
		db := engine.New(dt, 2, 2, 2)
		opsMust(t, engine.ConcatBackward([]*engine.Tensor{nil, db}, out))
		opsClose(t, "split "+dt.String(), db, b, 0, 0)
		da := engine.New(dt, 2, 1, 2)
		opsMust(t, engine.ConcatBackward([]*engine.Tensor{da, nil}, out))
		opsClose(t, "split first "+dt.String(), da, a, 0, 0)
	}
}

func TestConcatShapeErrors(t *testing.T) {
	a := engine.New(engine.Float32, 2, 3, 4, 4)
	b := engine.New(engine.Float32, 2, 5, 4, 4)
	out := engine.New(engine.Float32, 2, 8, 4, 4)
	opsMust(t, engine.ConcatForward(out, []*engine.Tensor{a, b}))
	opsShapeError(t, engine.ConcatForward(out, []*engine.Tensor{a, a}), "ConcatForward")
	t.Log(engine.ConcatForward(out, []*engine.Tensor{a, a}))
	opsShapeError(t, engine.ConcatForward(out, []*engine.Tensor{a, engine.New(engine.Float32, 2, 5, 4, 3)}), "ConcatForward")
	opsShapeError(t, engine.ConcatForward(out, []*engine.Tensor{a, engine.New(engine.Float32, 1, 5, 4, 4)}), "ConcatForward")
	opsShapeError(t, engine.ConcatForward(out, []*engine.Tensor{a, engine.New(engine.Float32, 2, 5, 16)}), "ConcatForward")
	opsShapeError(t, engine.ConcatForward(out, []*engine.Tensor{a, engine.New(engine.Float64, 2, 5, 4, 4)}), "ConcatForward")
	opsShapeError(t, engine.ConcatForward(out, []*engine.Tensor{a, nil}), "ConcatForward")
	opsShapeError(t, engine.ConcatForward(out, nil), "ConcatForward")
	opsShapeError(t, engine.ConcatForward(engine.New(engine.Float32, 8), []*engine.Tensor{a, b}), "ConcatForward")
	opsShapeError(t, engine.ConcatBackward([]*engine.Tensor{nil, nil}, out), "ConcatBackward")
	opsShapeError(t, engine.ConcatBackward([]*engine.Tensor{b, b}, out), "ConcatBackward")
	if _, ok := engine.ConcatShape(nil, []*engine.Tensor{a, engine.New(engine.Float32, 2, 5, 3, 4)}); ok {
		t.Error("ConcatShape accepted mismatched spatial sizes")
	}
}

func TestConcatNoAllocs(t *testing.T) {
	xs := []*engine.Tensor{engine.New(engine.Float32, 4, 3, 5, 5), engine.New(engine.Float32, 4, 6, 5, 5)}
	dxs := []*engine.Tensor{engine.New(engine.Float32, 4, 3, 5, 5), engine.New(engine.Float32, 4, 6, 5, 5)}
	out := engine.New(engine.Float32, 4, 9, 5, 5)
	shape := make([]int, 0, 4)
	opsNoAllocs(t, "concat", func() {
		shape, _ = engine.ConcatShape(shape, xs)
		_ = engine.ConcatForward(out, xs)
		_ = engine.ConcatBackward(dxs, out)
	})
}
