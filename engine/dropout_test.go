package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// The mask is fixed by resetting the stream before every forward pass.
func TestGradientDropout(t *testing.T) {
	for _, shape := range [][]int{{1}, {3, 5}, {2, 3, 5, 7}} {
		rng := rand.New(rand.NewPCG(17, uint64(len(shape))))
		x := gradcheck.Rand(rng, -2, 2, shape...)
		out, mask, dx := engine.New(engine.Float64, shape...), engine.New(engine.Float64, shape...), engine.New(engine.Float64, shape...)
		gradcheck.Check(t, []*engine.Tensor{x},
			func() (*engine.Tensor, error) {
				r := engine.DropoutRNG{Seed: 42}
				return out, engine.DropoutForward(out, mask, x, 0.3, true, &r)
			},
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				return []*engine.Tensor{dx}, engine.DropoutBackward(dx, dy, mask)
			}, gradcheck.Options{Names: []string{"x"}})
	}
}

func TestDropoutMaskStatisticsAndDeterminism(t *testing.T) {
	const n, p = 100003, 0.3
	x := engine.New(engine.Float32, n)
	x.Fill(1)
	out, mask := engine.New(engine.Float32, n), engine.New(engine.Float32, n)
	r := engine.DropoutRNG{Seed: 7, Offset: 5}
	opsMust(t, engine.DropoutForward(out, mask, x, p, true, &r))
	if r.Offset != 5+n {
		t.Fatalf("offset %d after one call, want %d", r.Offset, 5+n)
	}
	kept := 0
	scale := float32(1 / (1 - p))
	for i, m := range mask.Float32() {
		if m != 0 && m != scale {
			t.Fatalf("mask[%d] = %v, want 0 or %v", i, m, scale)
		}
		if m != 0 {
			kept++
		}
		if out.Float32()[i] != m {
			t.Fatalf("out[%d] = %v, want x·mask = %v", i, out.Float32()[i], m)
		}
	}
	// 1−p kept, within 5 standard deviations.
	if frac, sd := float64(kept)/n, math.Sqrt(p*(1-p)/n); math.Abs(frac-(1-p)) > 5*sd {
		t.Errorf("kept fraction %v, want %v ± %v", frac, 1-p, 5*sd)
	}
	// The same (seed, offset) gives the same mask, whether the call is small
	// (one goroutine) or large (split over the workers), in either dtype.
	small, smallMask := engine.New(engine.Float64, 1000), engine.New(engine.Float64, 1000)
	x64 := engine.New(engine.Float64, 1000)
	x64.Fill(1)
	r2 := engine.DropoutRNG{Seed: 7, Offset: 5}
	opsMust(t, engine.DropoutForward(small, smallMask, x64, p, true, &r2))
	for i, m := range smallMask.Float64() {
		if float32(m) != mask.Float32()[i] {
			t.Fatalf("small float64 call differs at %d: %v vs %v", i, m, mask.Float32()[i])
		}
	}
	// The next call continues the stream rather than repeating it.
	opsMust(t, engine.DropoutForward(small, smallMask, x64, p, true, &r2))
	same := 0
	for i, m := range smallMask.Float64() {
		if float32(m) == mask.Float32()[i] {
			same++
		}
	}
	if same > 800 {
		t.Errorf("second call repeats the first mask (%d of 1000 equal)", same)
	}
}

func TestDropoutEdgeCases(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 18))
	x := gradcheck.Rand(rng, -1, 1, 4, 5)
	out, mask := engine.New(engine.Float64, 4, 5), engine.New(engine.Float64, 4, 5)
	// Evaluation is the identity and needs no mask or rng.
	opsMust(t, engine.DropoutForward(out, nil, x, 0.5, false, nil))
	opsClose(t, "eval", out, x, 0, 0)
	dx := engine.New(engine.Float64, 4, 5)
	opsMust(t, engine.DropoutBackward(dx, x, nil))
	opsClose(t, "eval backward", dx, x, 0, 0)
	// p = 0 in training keeps everything and fills a given mask with 1.
	opsMust(t, engine.DropoutForward(out, mask, x, 0, true, nil))
	opsClose(t, "p=0", out, x, 0, 0)
	ones := engine.New(engine.Float64, 4, 5)
	ones.Fill(1)
	opsClose(t, "p=0 mask", mask, ones, 0, 0)
	// p = 1 drops everything.
	r := engine.DropoutRNG{Seed: 1}
	opsMust(t, engine.DropoutForward(out, mask, x, 1, true, &r))
	opsClose(t, "p=1", out, engine.New(engine.Float64, 4, 5), 0, 0)
	// In place over x, and backward in place over dout.
	r = engine.DropoutRNG{Seed: 3}
	opsMust(t, engine.DropoutForward(out, mask, x, 0.5, true, &r))
	xi := x.Clone()
	r = engine.DropoutRNG{Seed: 3}
	opsMust(t, engine.DropoutForward(xi, mask, xi, 0.5, true, &r))
	opsClose(t, "in place", xi, out, 0, 0)
	opsMust(t, engine.DropoutBackward(xi, xi, mask))
	for i, m := range mask.Float64() {
		if want := out.At(i) * m; xi.At(i) != want {
			t.Fatalf("in-place backward [%d] = %v, want %v", i, xi.At(i), want)
		}
	}
}

func TestDropoutFloat32Agrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 19))
	x := gradcheck.Rand(rng, -1, 1, 3, 7, 9)
	dout := gradcheck.Rand(rng, -1, 1, 3, 7, 9)
	run := func(dt engine.DType) (out, dx *engine.Tensor) {
		out, mask, dx := engine.New(dt, 3, 7, 9), engine.New(dt, 3, 7, 9), engine.New(dt, 3, 7, 9)
		r := engine.DropoutRNG{Seed: 99}
		opsMust(t, engine.DropoutForward(out, mask, x.As(dt), 0.25, true, &r))
		opsMust(t, engine.DropoutBackward(dx, dout.As(dt), mask))
		return out, dx
	}
	out, dx := run(engine.Float64)
	out32, dx32 := run(engine.Float32)
	opsClose(t, "out", out32, out, 1e-7, 1e-6)
	opsClose(t, "dx", dx32, dx, 1e-7, 1e-6)
}

func TestDropoutShapeErrors(t *testing.T) {
	x := engine.New(engine.Float32, 2, 3)
	bad := engine.New(engine.Float32, 3, 2)
	r := engine.DropoutRNG{}
	opsShapeError(t, engine.DropoutForward(bad, x, x, 0.5, true, &r), "DropoutForward")
	opsShapeError(t, engine.DropoutForward(x, bad, x, 0.5, true, &r), "DropoutForward")
	opsShapeError(t, engine.DropoutForward(x, nil, x, 0.5, true, &r), "DropoutForward")
	opsShapeError(t, engine.DropoutForward(x, x, x, 0.5, true, nil), "DropoutForward")
	opsShapeError(t, engine.DropoutForward(x, x, x, 1.5, true, &r), "DropoutForward")
	opsShapeError(t, engine.DropoutForward(x, x, engine.New(engine.Float64, 2, 3), 0.5, true, &r), "DropoutForward")
	opsShapeError(t, engine.DropoutForward(nil, x, x, 0.5, false, &r), "DropoutForward")
	opsShapeError(t, engine.DropoutBackward(x, x, bad), "DropoutBackward")
	opsShapeError(t, engine.DropoutBackward(nil, x, x), "DropoutBackward")
	if r.Offset != 0 {
		t.Errorf("a refused call advanced the stream to %d", r.Offset)
	}
}

func TestDropoutNoAllocs(t *testing.T) {
	for _, n := range []int{1000, 50000} {
		x := engine.New(engine.Float32, n)
		x.Fill(1)
		out, mask, dx := engine.New(engine.Float32, n), engine.New(engine.Float32, n), engine.New(engine.Float32, n)
		r := engine.DropoutRNG{Seed: 5}
		opsNoAllocs(t, "dropout", func() {
			_ = engine.DropoutForward(out, mask, x, 0.1, true, &r)
			_ = engine.DropoutBackward(dx, out, mask)
		})
	}
}
