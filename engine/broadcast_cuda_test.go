package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// The gate shapes of the attention layers and the awkward ones: a scalar g,
// no broadcast at all, alternating runs up to rank 6, axes of size 1, and
// reductions both short (a thread per element of g) and long (a warp).
var cudaBroadcastCases = []struct{ x, g []int }{
	{[]int{2, 5, 3, 3}, []int{2, 5, 1, 1}}, // channel gate, 9 to add: per thread
	{[]int{2, 3, 7, 9}, []int{2, 3, 1, 1}}, // channel gate, 63 to add: per warp
	{[]int{2, 5, 3, 3}, []int{2, 1, 3, 3}}, // spatial gate: per thread
	{[]int{2, 5, 6, 7}, []int{5, 1, 1}},    // (b, nb, b) runs, per warp
	{[]int{3, 4, 5}, []int{1}},             // one scalar
	{[]int{3, 4, 5}, []int{3, 4, 5}},       // nothing broadcast
	{[]int{1}, []int{1}},                   // one element
	{[]int{2, 3, 2, 3, 2, 3}, []int{3, 1, 3, 1, 3}},
	{[]int{2, 1, 4, 1}, []int{2, 1, 1, 1}},
	{[]int{1, 300}, []int{300}},
}

func TestCUDABroadcastMul(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(61, 62))
	fwd := []string{"broadcast_mul_forward_f32"}
	bwd := []string{"broadcast_mul_backward_f32"}
	for _, c := range cudaBroadcastCases {
		x, dx := devRand(t, rng, c.x...)
		g, dg := devRand(t, rng, c.g...)
		out := engine.New(engine.Float32, c.x...)
		opsMust(t, engine.BroadcastMultiplyForward(out, x, g))
		dout := dev(t, engine.New(engine.Float32, c.x...))
		opsMust(t, engine.BroadcastMultiplyForward(dout, dx, dg))
		// One float multiply per element: exact.
		checkKernels(t, fwd, "broadcast multiply", dout, out, 0, 0)

		up, dup := devRand(t, rng, c.x...)
		gx, gg := engine.New(engine.Float32, c.x...), engine.New(engine.Float32, c.g...)
		opsMust(t, engine.BroadcastMultiplyBackward(gx, gg, up, x, g))
		dgx, dgg := dev(t, engine.New(engine.Float32, c.x...)), dev(t, engine.New(engine.Float32, c.g...))
		dgg.Fill(5) // overwritten
		opsMust(t, engine.BroadcastMultiplyBackward(dgx, dgg, dup, dx, dg))
		checkKernels(t, fwd, "broadcast multiply dx", dgx, gx, 0, 0)
		// dg sums R = |x|/|g| ≤ 60 products of values in [-1,1) in another
		// order than the CPU's float32 loop: each sum is off by at most a
		// few roundings of its partial sums (≤ 60·6e-8·|partial|).
		checkKernels(t, bwd, "broadcast multiply dg", dgg, gg, 2e-6, 1e-5)

		// dx is dout, and the one-output calls.
		opsMust(t, engine.BroadcastMultiplyBackward(nil, dgg, dup, dx, dg))
		checkKernels(t, bwd, "broadcast multiply dg alone", dgg, gg, 2e-6, 1e-5)
		opsMust(t, engine.BroadcastMultiplyBackward(dup, nil, dup, dx, dg))
		checkKernels(t, fwd, "broadcast multiply dx in place", dup, gx, 0, 0)
		opsMust(t, engine.BroadcastMultiplyForward(dx, dx, dg))
		checkKernels(t, fwd, "broadcast multiply in place", dx, out, 0, 0)
	}
}

// The reduction gives the same bits every run.
func TestCUDABroadcastMulDeterministic(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(63, 64))
	_, dx := devRand(t, rng, 2, 3, 7, 9)
	_, dg := devRand(t, rng, 2, 3, 1, 1)
	_, dup := devRand(t, rng, 2, 3, 7, 9)
	first := dev(t, engine.New(engine.Float32, 2, 3, 1, 1))
	opsMust(t, engine.BroadcastMultiplyBackward(nil, first, dup, dx, dg))
	again := dev(t, engine.New(engine.Float32, 2, 3, 1, 1))
	opsMust(t, engine.BroadcastMultiplyBackward(nil, again, dup, dx, dg))
	opsClose(t, "dg twice", again, first, 0, 0)
}

func TestCUDACheckSwitchBroadcastMul(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDACheck(true)
	defer engine.SetCUDACheck(false)
	rng := rand.New(rand.NewPCG(65, 66))
	_, dx := devRand(t, rng, 2, 5, 3, 3)
	_, dg := devRand(t, rng, 2, 1, 3, 3)
	_, dup := devRand(t, rng, 2, 5, 3, 3)
	ddg := dev(t, engine.New(engine.Float32, 2, 1, 3, 3))
	opsMust(t, engine.BroadcastMultiplyBackward(dup, ddg, dup, dx, dg))
	opsMust(t, engine.BroadcastMultiplyForward(dx, dx, dg))
}
