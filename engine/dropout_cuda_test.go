package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// The GPU draws the CPU's mask bit for bit (same SplitMix64 stream, same
// threshold, same float32 scale), so every comparison is exact.
func TestCUDADropout(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(31, 32))
	fwd := []string{"dropout_forward_f32"}
	bwd := []string{"dropout_backward_f32"}
	for _, p := range []float64{0.3, 0.5, 0.9, 1} {
		for _, n := range cudaEltSizes {
			x, dx := devRand(t, rng, n)
			// An offset near 2⁶⁴ makes the counter wrap within the call.
			seed, offset := rng.Uint64(), rng.Uint64()
			if n == 257 {
				offset = ^uint64(0) - 500
			}
			cr := engine.DropoutRNG{Seed: seed, Offset: offset}
			gr := cr
			out, mask := engine.New(engine.Float32, n), engine.New(engine.Float32, n)
			opsMust(t, engine.DropoutForward(out, mask, x, p, true, &cr))
			dout, dmask := dev(t, engine.New(engine.Float32, n)), dev(t, engine.New(engine.Float32, n))
			opsMust(t, engine.DropoutForward(dout, dmask, dx, p, true, &gr))
			checkKernels(t, fwd, "dropout mask", dmask, mask, 0, 0)
			checkKernels(t, fwd, "dropout out", dout, out, 0, 0)
			if gr != cr {
				t.Errorf("p=%v n=%d: the GPU left the stream at %+v, the CPU at %+v", p, n, gr, cr)
			}
			// The next call continues the stream: in place this time.
			opsMust(t, engine.DropoutForward(x, mask, x, p, true, &cr))
			opsMust(t, engine.DropoutForward(dx, dmask, dx, p, true, &gr))
			checkKernels(t, fwd, "dropout mask, next call", dmask, mask, 0, 0)
			checkKernels(t, fwd, "dropout in place", dx, x, 0, 0)

			g, dg := devRand(t, rng, n)
			want := engine.New(engine.Float32, n)
			opsMust(t, engine.DropoutBackward(want, g, mask))
			got := dev(t, engine.New(engine.Float32, n))
			opsMust(t, engine.DropoutBackward(got, dg, dmask))
			checkKernels(t, bwd, "dropout backward", got, want, 0, 0)
			opsMust(t, engine.DropoutBackward(dg, dg, dmask))
			checkKernels(t, bwd, "dropout backward in place", dg, want, 0, 0)
		}
	}
}

// Evaluation and p = 0 are the identity on the GPU too, and the mask of a
// p = 0 training call is all ones.
func TestCUDADropoutIdentity(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(33, 34))
	x, dx := devRand(t, rng, 3, 17)
	dmask := dev(t, engine.New(engine.Float32, 3, 17))
	out := dev(t, engine.New(engine.Float32, 3, 17))
	r := engine.DropoutRNG{Seed: 1}
	opsMust(t, engine.DropoutForward(out, dmask, dx, 0, true, &r))
	opsClose(t, "p=0 out", out, x, 0, 0)
	ones := engine.New(engine.Float32, 3, 17)
	ones.Fill(1)
	opsClose(t, "p=0 mask", dmask, ones, 0, 0)
	opsMust(t, engine.DropoutForward(out, nil, dx, 0.5, false, nil))
	opsClose(t, "eval out", out, x, 0, 0)
	opsMust(t, engine.DropoutBackward(out, dx, nil))
	opsClose(t, "identity backward", out, x, 0, 0)
	if err := engine.DropoutForward(out, dmask, x, 0.5, true, &r); err == nil {
		t.Fatal("a CPU x with CUDA out and mask was accepted")
	}
}

func TestCUDACheckSwitchDropout(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDACheck(true)
	defer engine.SetCUDACheck(false)
	rng := rand.New(rand.NewPCG(35, 36))
	_, dx := devRand(t, rng, 500)
	dmask := dev(t, engine.New(engine.Float32, 500))
	r := engine.DropoutRNG{Seed: 7, Offset: 3}
	opsMust(t, engine.DropoutForward(dx, dmask, dx, 0.4, true, &r))
	if r.Offset != 503 {
		t.Fatalf("checked dropout left the stream at %d, want 503", r.Offset)
	}
	opsMust(t, engine.DropoutBackward(dx, dx, dmask))
}
