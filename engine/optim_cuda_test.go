package engine_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/cuda"
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

// The multi-tensor steps on the GPU against the CPU's one-tensor steps:
// parameters of awkward lengths, one spanning two chunks of the table, some
// without decay, three steps.
func TestCUDASGDStepAll(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(81, 82))
	k := []string{"sgd_step_multi_f32"}
	for _, c := range []engine.SGDConfig{
		{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-2},
		{LR: 0.1, Momentum: 0.9, WeightDecay: 5e-4, Nesterov: true},
		{LR: 0.05, WeightDecay: 1e-2}, // no momentum: no buffers
	} {
		var cpu, gpu []engine.SGDParam
		for i, n := range multiSizes {
			w, dw := devRand(t, rng, n)
			p, q := engine.SGDParam{W: w, NoDecay: i%2 == 1}, engine.SGDParam{W: dw, NoDecay: i%2 == 1}
			if c.Momentum != 0 {
				p.Buf = engine.New(engine.Float32, n)
				q.Buf = dev(t, p.Buf)
			}
			cpu, gpu = append(cpu, p), append(gpu, q)
		}
		for range 3 {
			for i := range cpu {
				cpu[i].G, gpu[i].G = devRand(t, rng, cpu[i].W.Len())
			}
			opsMust(t, engine.SGDStepAll(cpu, c))
			opsMust(t, engine.SGDStepAll(gpu, c))
		}
		for i := range cpu {
			checkKernels(t, k, fmt.Sprintf("SGDStepAll w %d", i), gpu[i].W, cpu[i].W, optimAtol, optimRtol)
			if cpu[i].Buf != nil {
				checkKernels(t, k, fmt.Sprintf("SGDStepAll momentum %d", i), gpu[i].Buf, cpu[i].Buf, optimAtol, optimRtol)
			}
		}
	}
}

func TestCUDAAdamWStepAll(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(83, 84))
	k := []string{"adamw_step_multi_f32"}
	c := engine.AdamWConfig{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1e-2}
	var cpu, gpu []engine.AdamWParam
	for i, n := range multiSizes {
		w, dw := devRand(t, rng, n)
		m, v := engine.New(engine.Float32, n), engine.New(engine.Float32, n)
		cpu = append(cpu, engine.AdamWParam{W: w, M: m, V: v, NoDecay: i%2 == 0})
		gpu = append(gpu, engine.AdamWParam{W: dw, M: dev(t, m), V: dev(t, v), NoDecay: i%2 == 0})
	}
	for step := 1; step <= 3; step++ {
		c.Step = step
		for i := range cpu {
			cpu[i].G, gpu[i].G = devRand(t, rng, cpu[i].W.Len())
		}
		opsMust(t, engine.AdamWStepAll(cpu, c))
		opsMust(t, engine.AdamWStepAll(gpu, c))
	}
	for i := range cpu {
		checkKernels(t, k, fmt.Sprintf("AdamWStepAll w %d", i), gpu[i].W, cpu[i].W, optimAtol, optimRtol)
		checkKernels(t, k, fmt.Sprintf("AdamWStepAll m %d", i), gpu[i].M, cpu[i].M, optimAtol, optimRtol)
		checkKernels(t, k, fmt.Sprintf("AdamWStepAll v %d", i), gpu[i].V, cpu[i].V, optimAtol, optimRtol)
	}
}

// TestCUDASGDStepAllOneLaunch: a step of many parameters is one launch; its
// table is uploaded on the first step and when the tensors change, not on
// every step; a changed set steps the new tensors; KILN_CUDA_CHECK agrees.
func TestCUDASGDStepAllOneLaunch(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(85, 86))
	params := func() (cpu, gpu []engine.SGDParam) {
		for _, n := range []int{5, 40, 3, 17, 9, 1, 64, 2} {
			w, dw := devRand(t, rng, n)
			g, dg := devRand(t, rng, n)
			buf := engine.New(engine.Float32, n)
			cpu = append(cpu, engine.SGDParam{W: w, G: g, Buf: buf})
			gpu = append(gpu, engine.SGDParam{W: dw, G: dg, Buf: dev(t, buf)})
		}
		return cpu, gpu
	}
	c := engine.SGDConfig{LR: 0.1, Momentum: 0.9}
	step := func(ps []engine.SGDParam) cuda.Profile {
		opsMust(t, cuda.StartProfile())
		err := engine.SGDStepAll(ps, c)
		p, perr := cuda.StopProfile()
		opsMust(t, err)
		opsMust(t, perr)
		return p
	}
	cpu, gpu := params()
	engine.ReleaseScratch() // no table from an earlier test
	for i, wantUploads := range []int{1, 0, 0} {
		p := step(gpu)
		opsMust(t, engine.SGDStepAll(cpu, c))
		if p.Launches != 1 || p.Uploads != wantUploads || p.Memsets != 0 {
			t.Fatalf("step %d of %d parameters: %d launches, %d uploads, %d memsets; want 1, %d, 0",
				i+1, len(gpu), p.Launches, p.Uploads, p.Memsets, wantUploads)
		}
	}
	cpu2, gpu2 := params()
	if p := step(gpu2); p.Launches != 1 || p.Uploads != 1 {
		t.Fatalf("a new set of tensors: %d launches, %d uploads; want 1, 1", p.Launches, p.Uploads)
	}
	opsMust(t, engine.SGDStepAll(cpu2, c))
	engine.SetCUDACheck(true)
	opsMust(t, engine.SGDStepAll(gpu, c))
	engine.SetCUDACheck(false)
	opsMust(t, engine.SGDStepAll(cpu, c))
	k := []string{"sgd_step_multi_f32"}
	for i := range cpu {
		checkKernels(t, k, fmt.Sprintf("first set w %d", i), gpu[i].W, cpu[i].W, optimAtol, optimRtol)
		checkKernels(t, k, fmt.Sprintf("second set w %d", i), gpu2[i].W, cpu2[i].W, optimAtol, optimRtol)
	}
}
