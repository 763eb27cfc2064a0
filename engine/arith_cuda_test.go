package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// Sizes around the element-wise block (256) and grid cap, and 1.
var eltSizes = []int{1, 7, 255, 256, 257, 1000, 4099}

func TestCUDAArith(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range eltSizes {
		a, da := devRand(t, rng, n)
		b, db := devRand(t, rng, n)

		out := engine.New(engine.Float32, n)
		opsMust(t, engine.Add(out, a, b))
		dout := dev(t, engine.New(engine.Float32, n))
		opsMust(t, engine.Add(dout, da, db))
		checkKernels(t, []string{"add_f32"}, "Add", dout, out, 0, 0)

		opsMust(t, engine.AddScaled(a, b, -0.25))
		opsMust(t, engine.AddScaled(da, db, -0.25))
		checkKernels(t, []string{"axpy_f32"}, "AddScaled", da, a, 1e-7, 1e-6)

		opsMust(t, engine.Scale(a, 1.5))
		opsMust(t, engine.Scale(da, 1.5))
		checkKernels(t, []string{"scale_f32"}, "Scale", da, a, 1e-7, 1e-6)

		opsMust(t, a.Fill(0.5))
		opsMust(t, da.Fill(0.5))
		checkKernels(t, []string{"fill_f32"}, "Fill", da, a, 0, 0)

		s, err := engine.SumSquares(b)
		opsMust(t, err)
		ds, err := engine.SumSquares(db)
		opsMust(t, err)
		if math.Abs(s-ds) > 1e-5*s+1e-6 {
			t.Errorf("SumSquares n=%d: gpu %v cpu %v", n, ds, s)
		}
		one := engine.New(engine.Float32, 1)
		opsMust(t, one.SetAt(0, ds))
		ref := engine.New(engine.Float32, 1)
		opsMust(t, ref.SetAt(0, s))
		checkKernels(t, []string{"sum_squares_f32"}, "SumSquares", dev(t, one), ref, 1e-6, 1e-5)
	}
}

func TestCUDATensorRoundTripAndViews(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(3, 4))
	x, dx := devRand(t, rng, 3, 5, 7)
	back, err := dx.To(engine.CPU)
	opsMust(t, err)
	opsClose(t, "round trip", back, x, 0, 0)
	v, err := dx.Reshape(15, 7)
	opsMust(t, err)
	opsMust(t, v.SetAt(8, 42))
	if dx.At(8) != 42 {
		t.Fatal("a reshaped CUDA tensor does not share its data")
	}
	if s, err := engine.SumSquares(dx); err != nil || s == 0 || dx.HasNaN() {
		t.Fatal("HasNaN/SumSquares on a CUDA tensor")
	}
	opsMust(t, dx.SetAt(3, math.NaN()))
	if !dx.HasNaN() {
		t.Fatal("HasNaN missed a NaN on the GPU")
	}
	// Mixing devices is a clear error, not a crash.
	if err := engine.Add(dx, dx, x); err == nil {
		t.Fatal("Add of a CUDA and a CPU tensor succeeded")
	}
	// float64 does not go to the GPU.
	if _, err := engine.NewOn(engine.CUDA, engine.Float64, 2); err == nil {
		t.Fatal("a float64 CUDA tensor was made")
	}
}

func TestCUDACheckSwitchPassesCorrectOps(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDACheck(true)
	defer engine.SetCUDACheck(false)
	rng := rand.New(rand.NewPCG(5, 6))
	_, da := devRand(t, rng, 300)
	_, db := devRand(t, rng, 300)
	out := dev(t, engine.New(engine.Float32, 300))
	if err := engine.Add(out, da, db); err != nil {
		t.Fatalf("checked Add failed: %v", err)
	}
	// An output that aliases an input changes it: still consistent.
	if err := engine.AddScaled(da, db, 2); err != nil {
		t.Fatalf("checked AddScaled failed: %v", err)
	}
}
