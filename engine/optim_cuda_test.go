package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// Optimiser steps repeat the CPU's float32 operations with the same float32
// hyper-parameters; a GPU compiler may fuse multiply-adds (one rounding
// fewer each), so after three steps parameters and state agree to a few
// ulp: atol 1e-6 (values near 0) plus rtol 1e-6. The emulator is exact.
const optimAtol, optimRtol = 1e-6, 1e-6

func TestCUDASGD(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(41, 42))
	k := []string{"sgd_step_f32"}
	for _, c := range []engine.SGDConfig{
		{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-2},
		{LR: 0.1, Momentum: 0.9, WeightDecay: 5e-4, Nesterov: true},
		{LR: 0.05},                    // no momentum: no buffer
		{LR: 0.05, WeightDecay: 1e-2}, // no momentum, decay
	} {
		for _, n := range cudaEltSizes {
			w, dw := devRand(t, rng, n)
			var buf, dbuf *engine.Tensor
			if c.Momentum != 0 {
				buf = engine.New(engine.Float32, n)
				dbuf = dev(t, buf)
			}
			for range 3 {
				g, dg := devRand(t, rng, n)
				opsMust(t, engine.SGDStep(w, g, buf, c))
				opsMust(t, engine.SGDStep(dw, dg, dbuf, c))
			}
			checkKernels(t, k, "SGD w", dw, w, optimAtol, optimRtol)
			if buf != nil {
				checkKernels(t, k, "SGD momentum", dbuf, buf, optimAtol, optimRtol)
			}
		}
	}
}

func TestCUDAAdamW(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(43, 44))
	k := []string{"adamw_step_f32"}
	for _, c := range []engine.AdamWConfig{
		{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1e-2},
		{LR: 2e-3, Beta1: 0.8, Beta2: 0.99, Eps: 1e-6},
	} {
		for _, n := range cudaEltSizes {
			w, dw := devRand(t, rng, n)
			m, v := engine.New(engine.Float32, n), engine.New(engine.Float32, n)
			dm, dv := dev(t, m), dev(t, v)
			for step := 1; step <= 3; step++ {
				c.Step = step
				g, dg := devRand(t, rng, n)
				opsMust(t, engine.AdamWStep(w, g, m, v, c))
				opsMust(t, engine.AdamWStep(dw, dg, dm, dv, c))
			}
			checkKernels(t, k, "AdamW w", dw, w, optimAtol, optimRtol)
			checkKernels(t, k, "AdamW m", dm, m, optimAtol, optimRtol)
			checkKernels(t, k, "AdamW v", dv, v, optimAtol, optimRtol)
		}
	}
}

func TestCUDACheckSwitchOptim(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDACheck(true)
	defer engine.SetCUDACheck(false)
	rng := rand.New(rand.NewPCG(45, 46))
	_, dw := devRand(t, rng, 300)
	_, dg := devRand(t, rng, 300)
	dbuf := dev(t, engine.New(engine.Float32, 300))
	opsMust(t, engine.SGDStep(dw, dg, dbuf, engine.SGDConfig{LR: 0.1, Momentum: 0.9, Nesterov: true}))
	dm, dv := dev(t, engine.New(engine.Float32, 300)), dev(t, engine.New(engine.Float32, 300))
	opsMust(t, engine.AdamWStep(dw, dg, dm, dv, engine.AdamWConfig{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 1}))
	if err := engine.AdamWStep(dw, dg, dm, dv, engine.AdamWConfig{LR: 1e-3, Step: 0}); err == nil {
		t.Fatal("AdamW step 0 was accepted on the GPU")
	}
}
