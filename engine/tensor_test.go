package engine_test

import (
	"errors"
	"math"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"gorgonia.org/tensor"
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

// ZeroAll zeroes every listed tensor whole, at any thread count, chunks
// that straddle tensors included, touches nothing else and allocates
// nothing.
func TestZeroAll(t *testing.T) {
	defer engine.SetThreads(engine.Threads())
	sizes := []int{5, 70000, 16384, 20000, 1}
	for _, threads := range []int{1, 2, 3} {
		engine.SetThreads(threads)
		var ts []*engine.Tensor
		for i, n := range sizes {
			dt := engine.Float32
			if i == 3 {
				dt = engine.Float64
			}
			ts = append(ts, engine.New(dt, n))
		}
		spare := engine.New(engine.Float32, 100)
		all := append(append([]*engine.Tensor{}, ts...), spare)
		fill := func() {
			for _, x := range all {
				if err := x.Fill(1); err != nil {
					t.Fatal(err)
				}
			}
		}
		fill()
		if err := engine.ZeroAll(ts); err != nil {
			t.Fatal(err)
		}
		for i, x := range ts {
			for j, v := range x.Values() {
				if v != 0 {
					t.Fatalf("threads %d: tensor %d element %d is %v after ZeroAll", threads, i, j, v)
				}
			}
		}
		for _, v := range spare.Values() {
			if v != 1 {
				t.Fatalf("threads %d: ZeroAll changed a tensor it was not given", threads)
			}
		}
		if a := testing.AllocsPerRun(5, func() { fill(); _ = engine.ZeroAll(ts) }); a != 0 {
			t.Errorf("threads %d: ZeroAll allocates %v times per call", threads, a)
		}
	}
}

// mlp's gradients (3072→256→128→10, with biases) zeroed one tensor at a
// time and by ZeroAll: the step's zero_grad.
func BenchmarkZeroAll(b *testing.B) {
	engine.BenchThreads()
	var ts []*engine.Tensor
	for _, n := range []int{3072 * 256, 256, 256 * 128, 128, 128 * 10, 10} {
		ts = append(ts, engine.New(engine.Float32, n))
	}
	b.Run("one-by-one", func(b *testing.B) {
		engine.BenchThreads()
		for b.Loop() {
			for _, t := range ts {
				_ = t.Zero()
			}
		}
	})
	b.Run("ZeroAll", func(b *testing.B) {
		engine.BenchThreads()
		for b.Loop() {
			_ = engine.ZeroAll(ts)
		}
	})
}

// Below the hand-off size ZeroAll runs on the caller: still every element.
func TestZeroAllSmallList(t *testing.T) {
	ts := []*engine.Tensor{engine.New(engine.Float32, 3), engine.New(engine.Float64, 20000), engine.New(engine.Float32, 17)}
	for _, x := range ts {
		if err := x.Fill(1); err != nil {
			t.Fatal(err)
		}
	}
	if err := engine.ZeroAll(ts); err != nil {
		t.Fatal(err)
	}
	for i, x := range ts {
		for j, v := range x.Values() {
			if v != 0 {
				t.Fatalf("tensor %d element %d is %v after ZeroAll", i, j, v)
			}
		}
	}
}

// A Dense of no values (a prediction of zero rows) converts to a tensor of
// that shape instead of panicking inside gorgonia.
func TestFromDenseOfNoValues(t *testing.T) {
	x, err := engine.FromDense(tensor.New(tensor.WithShape(0, 5), tensor.Of(tensor.Float32)))
	if err != nil || !x.SameShape(0, 5) {
		t.Fatalf("FromDense of (0,5): %v %v", x, err)
	}
}
