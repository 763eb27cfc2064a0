package engine_test

import (
	"errors"
	"math"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// On the CPU, Zero, Fill, SetAt, Get, Scale and SumSquares cannot fail:
// their error results are nil and the values are what they say.
func TestTensorHostOpsReturnNil(t *testing.T) {
	for _, dt := range []engine.DType{engine.Float32, engine.Float64} {
		x := engine.New(dt, 2, 3)
		opsMust(t, x.Fill(2))
		opsMust(t, x.SetAt(4, -1))
		if v, err := x.Get(4); err != nil || v != -1 || x.At(0) != 2 {
			t.Fatalf("%v: Get(4) = %v, %v and At(0) = %v after Fill(2), SetAt(4, -1)", dt, v, err, x.At(0))
		}
		opsMust(t, engine.Scale(x, 0.5))
		s, err := engine.SumSquares(x)
		if err != nil || s != 5*1+0.25 {
			t.Fatalf("%v: SumSquares = %v, %v, want 5.25", dt, s, err)
		}
		opsMust(t, x.Zero())
		if s, err := engine.SumSquares(x); err != nil || s != 0 {
			t.Fatalf("%v: SumSquares after Zero = %v, %v", dt, s, err)
		}
		if c := x.Clone(); c.Err() != nil || x.As(engine.Float64).Err() != nil {
			t.Fatalf("%v: a CPU copy carries an error: %v", dt, c.Err())
		}
	}
}

// A CUDA tensor that EnsureLike could not allocate carries the error, and
// every tensor method and op with an error result returns it.
func TestCUDAAllocationErrorReachesTensorMethods(t *testing.T) {
	cudaOrSkip(t)
	like := dev(t, engine.New(engine.Float32, 1))
	x := engine.EnsureLike(nil, like, 1<<40) // 4 TiB: no device holds it
	if x.Err() == nil {
		t.Skip("the device allocated 4 TiB")
	}
	_, sumErr := engine.SumSquares(x)
	_, getErr := x.Get(0)
	for name, err := range map[string]error{
		"Zero": x.Zero(), "Fill": x.Fill(1), "SetAt": x.SetAt(0, 1), "Get": getErr,
		"Scale": engine.Scale(x, 2), "SumSquares": sumErr,
	} {
		if !errors.Is(err, x.Err()) {
			t.Errorf("%s on a tensor that failed to allocate: %v, want %v", name, err, x.Err())
		}
	}
	if !math.IsNaN(x.At(0)) {
		t.Errorf("At on a tensor that failed to allocate = %v, want NaN", x.At(0))
	}
}
