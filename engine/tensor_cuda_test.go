package engine_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
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

// On the GPU ClipByGlobalNorm reads nothing back: one sum-of-squares launch
// per run of adjacent tensors, one for the factor, one scale per run; the
// result agrees with the CPU's, with one flat buffer's views (one run) and
// with separate tensors, clipped or within the bound.
func TestCUDAClipByGlobalNorm(t *testing.T) {
	cudaOrSkip(t)
	flat, err := engine.NewOn(engine.CUDA, engine.Float32, 5000)
	opsMust(t, err)
	defer flat.Release()
	view := func(start, n int) *engine.Tensor {
		v, err := flat.Rows(start, n)
		opsMust(t, err)
		return v
	}
	sep, err := engine.NewOn(engine.CUDA, engine.Float32, 300)
	opsMust(t, err)
	defer sep.Release()
	views := []*engine.Tensor{view(0, 10), view(10, 4000), view(4010, 990)}
	for _, c := range []struct {
		name    string
		ts      []*engine.Tensor
		runs    int
		maxNorm float64
	}{
		{"one flat buffer, clipped", views, 1, 0.5},
		{"one flat buffer, within", views, 1, 1e6},
		{"two runs", append(slices.Clone(views), sep), 2, 0.5},
	} {
		rng := rand.New(rand.NewPCG(61, 62))
		var host []*engine.Tensor
		for _, d := range c.ts {
			h := randTensor(rng, engine.Float32, d.Len())
			opsMust(t, d.CopyFrom(h))
			host = append(host, h)
		}
		opsMust(t, engine.ClipByGlobalNorm(host, c.maxNorm))
		opsMust(t, cuda.StartProfile())
		err := engine.ClipByGlobalNorm(c.ts, c.maxNorm)
		p, perr := cuda.StopProfile()
		opsMust(t, err)
		opsMust(t, perr)
		if p.Copies != 0 || p.Launches != 2*c.runs+1 {
			t.Errorf("%s: %d launches and %d copies to the host, want %d and 0", c.name, p.Launches, p.Copies, 2*c.runs+1)
		}
		for i, d := range c.ts {
			checkKernels(t, []string{"sum_squares_f32", "clip_coef_f32", "scale_by_f32"}, fmt.Sprintf("%s tensor %d", c.name, i), d, host[i], 1e-7, 1e-5)
		}
	}
}
