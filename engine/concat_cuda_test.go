package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// Concatenation is pure copying: exact on both devices. Six parts take two
// launches of the four-part kernel; backward skips one nil gradient in
// either launch.
func TestCUDAConcat(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(51, 52))
	fwd := []string{"concat_forward_f32"}
	bwd := []string{"concat_backward_f32"}
	for _, c := range []struct {
		n     int
		chans []int
		rest  []int
		skip  int // the nil gradient in backward, -1 for none
	}{
		{2, []int{3, 1, 5}, []int{3, 3}, -1},
		{2, []int{3, 1, 5}, []int{3, 3}, 1},
		{1, []int{1, 2, 3, 1, 2, 4}, []int{5}, 4},
		{1, []int{1, 2, 3, 1, 2, 4}, []int{5}, 0},
		{3, []int{7, 9}, nil, -1},
		{2, []int{1}, []int{2, 3}, -1},
	} {
		xs, dxs := make([]*engine.Tensor, len(c.chans)), make([]*engine.Tensor, len(c.chans))
		total := 0
		for i, ch := range c.chans {
			xs[i], dxs[i] = devRand(t, rng, append([]int{c.n, ch}, c.rest...)...)
			total += ch
		}
		shape := append([]int{c.n, total}, c.rest...)
		out := engine.New(engine.Float32, shape...)
		opsMust(t, engine.ConcatForward(out, xs))
		dout := dev(t, engine.New(engine.Float32, shape...))
		opsMust(t, engine.ConcatForward(dout, dxs))
		checkKernels(t, fwd, "concat", dout, out, 0, 0)

		g, dg := devRand(t, rng, shape...)
		gs, dgs := make([]*engine.Tensor, len(c.chans)), make([]*engine.Tensor, len(c.chans))
		for i, ch := range c.chans {
			if i == c.skip {
				continue
			}
			gs[i] = engine.New(engine.Float32, append([]int{c.n, ch}, c.rest...)...)
			gs[i].Fill(7) // overwritten
			dgs[i] = dev(t, gs[i])
		}
		opsMust(t, engine.ConcatBackward(gs, g))
		opsMust(t, engine.ConcatBackward(dgs, dg))
		for i := range gs {
			if gs[i] != nil {
				checkKernels(t, bwd, "split", dgs[i], gs[i], 0, 0)
			}
		}
	}
}

func TestCUDAConcatErrors(t *testing.T) {
	cudaOrSkip(t)
	a := dev(t, engine.New(engine.Float32, 2, 3))
	if err := engine.ConcatForward(dev(t, engine.New(engine.Float32, 2, 5)), []*engine.Tensor{a, a}); err == nil {
		t.Fatal("channels 3+3 into 5 were accepted")
	}
	if err := engine.ConcatForward(dev(t, engine.New(engine.Float32, 2, 6)), []*engine.Tensor{a, engine.New(engine.Float32, 2, 3)}); err == nil {
		t.Fatal("a CPU part of a CUDA concatenation was accepted")
	}
}

func TestCUDACheckSwitchConcat(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDACheck(true)
	defer engine.SetCUDACheck(false)
	rng := rand.New(rand.NewPCG(53, 54))
	_, a := devRand(t, rng, 2, 3, 4)
	_, b := devRand(t, rng, 2, 2, 4)
	out := dev(t, engine.New(engine.Float32, 2, 5, 4))
	opsMust(t, engine.ConcatForward(out, []*engine.Tensor{a, b}))
	opsMust(t, engine.ConcatBackward([]*engine.Tensor{nil, b}, out))
}
