package engine_test

import (
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
)

// TestCUDAZeroAllMergesAdjacentViews: on the GPU, ZeroAll clears tensors
// that follow each other in one allocation (a flat gradient buffer's views)
// with one memset per run, and touches nothing it was not given: a view
// between two listed ones, another tensor, the buffer's tail.
func TestCUDAZeroAllMergesAdjacentViews(t *testing.T) {
	cudaOrSkip(t)
	flat, err := engine.NewOn(engine.CUDA, engine.Float32, 100)
	opsMust(t, err)
	defer flat.Release()
	view := func(start, n int) *engine.Tensor {
		v, err := flat.Rows(start, n)
		opsMust(t, err)
		return v
	}
	v0, v1, v2, v3 := view(0, 10), view(10, 1), view(11, 29), view(40, 50) // [90, 100) is never listed
	other, err := engine.NewOn(engine.CUDA, engine.Float32, 7)
	opsMust(t, err)
	defer other.Release()
	for _, c := range []struct {
		name    string
		ts      []*engine.Tensor
		memsets int
		zeroed  [][2]int // ranges of flat that must be zero; the rest stays 1
	}{
		{"every view in order", []*engine.Tensor{v0, v1, v2, v3}, 1, [][2]int{{0, 90}}},
		{"a view left out", []*engine.Tensor{v0, v2, v3}, 2, [][2]int{{0, 10}, {11, 90}}},
		{"another tensor between", []*engine.Tensor{v0, v1, other, v2, v3}, 3, [][2]int{{0, 90}}},
		{"out of order", []*engine.Tensor{v1, v0, v2}, 3, [][2]int{{0, 40}}},
	} {
		opsMust(t, flat.Fill(1))
		opsMust(t, other.Fill(1))
		opsMust(t, cuda.StartProfile())
		err := engine.ZeroAll(c.ts)
		p, perr := cuda.StopProfile()
		opsMust(t, err)
		opsMust(t, perr)
		if p.Memsets != c.memsets || p.Launches != 0 {
			t.Errorf("%s: %d memsets and %d launches, want %d and 0", c.name, p.Memsets, p.Launches, c.memsets)
		}
		host, err := engine.ToCPU(nil, flat)
		opsMust(t, err)
		for i, v := range host.Values() {
			want := 1.0
			for _, r := range c.zeroed {
				if i >= r[0] && i < r[1] {
					want = 0
				}
			}
			if v != want {
				t.Fatalf("%s: flat[%d] = %v, want %v", c.name, i, v, want)
			}
		}
		oh, err := engine.ToCPU(nil, other)
		opsMust(t, err)
		for _, v := range oh.Values() {
			if listed := len(c.ts) == 5; (v == 0) != listed {
				t.Fatalf("%s: the other tensor holds %v", c.name, v)
			}
		}
	}
}
