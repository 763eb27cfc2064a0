package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

func TestGatherRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	src := randTensor(rng, engine.Float64, 5, 2, 3)
	out := engine.New(engine.Float64, 4, 2, 3)
	idx := []int{4, 0, 4, 2}
	opsMust(t, engine.GatherRows(out, src, idx))
	for i, r := range idx {
		for j := 0; j < 6; j++ {
			if out.At(i*6+j) != src.At(r*6+j) {
				t.Fatalf("row %d element %d: %v, want %v", i, j, out.At(i*6+j), src.At(r*6+j))
			}
		}
	}
	opsShapeError(t, engine.GatherRows(out, src, []int{0, 1, 5, 2}), "GatherRows")
	opsShapeError(t, engine.GatherRows(out, src, []int{0, 1}), "GatherRows")
}

func TestCUDAGatherRows(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(9, 10))
	for _, shape := range [][]int{{7, 1, 5, 3}, {300, 1}, {2, 33}} {
		src, dsrc := devRand(t, rng, shape...)
		idx := make([]int, 1+rng.IntN(2*shape[0]))
		for i := range idx {
			idx[i] = rng.IntN(shape[0])
		}
		oshape := append([]int{len(idx)}, shape[1:]...)
		want := engine.New(engine.Float32, oshape...)
		opsMust(t, engine.GatherRows(want, src, idx))
		got := dev(t, engine.New(engine.Float32, oshape...))
		opsMust(t, engine.GatherRows(got, dsrc, idx))
		checkKernels(t, []string{"gather_rows_f32"}, "GatherRows", got, want, 0, 0)
	}
}
