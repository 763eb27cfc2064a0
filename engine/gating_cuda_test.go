package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// Tolerances for the spatial gating unit: the layer norm as in
// norm_cuda_test.go; the token mixing and the weight gradient are float32
// sums of up to T·… products of size ~1 accumulated in a different order
// from the CPU's gemm (and with FMA on the GPU), so atol 1e-5 + rtol 1e-4.
const sguAtol, sguRtol = 1e-5, 1e-4

type sguTensors struct {
	z, gamma, beta, w, b *engine.Tensor
}

func (s sguTensors) dev(t *testing.T) sguTensors {
	return sguTensors{dev(t, s.z), dev(t, s.gamma), dev(t, s.beta), dev(t, s.w), dev(t, s.b)}
}

func TestCUDAGating(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(51, 52))
	fwd := []string{"layernorm_forward_f32", "sgu_mix_forward_f32"}
	bwd := []string{"sgu_gate_backward_f32", "sgu_mix_backward_f32", "layernorm_backward_dx_f32"}
	for ci, c := range [][3]int{{1, 1, 1}, {2, 5, 3}, {3, 7, 9}, {2, 33, 4}, {1, 4, 40}, {5, 3, 2}} {
		n, tk, d := c[0], c[1], c[2]
		cpu := sguTensors{
			z:     randTensor(rng, engine.Float32, n, tk, 2*d),
			gamma: randTensor(rng, engine.Float32, d),
			beta:  randTensor(rng, engine.Float32, d),
			w:     randTensor(rng, engine.Float32, tk, tk),
			b:     randTensor(rng, engine.Float32, tk),
		}
		if ci%3 == 2 { // no affine, no bias
			cpu.gamma, cpu.beta, cpu.b = nil, nil, nil
		}
		gpu := cpu.dev(t)

		var saved, dsaved engine.SpatialGatingSaved
		saved.Ensure(engine.Float32, n, tk, d)
		opsMust(t, dsaved.EnsureOn(gpu.z, n, tk, d))
		out := engine.New(engine.Float32, n, tk, d)
		dout := dev(t, out)
		opsMust(t, engine.SpatialGatingForward(out, &saved, cpu.z, cpu.gamma, cpu.beta, cpu.w, cpu.b, 1e-5))
		opsMust(t, engine.SpatialGatingForward(dout, &dsaved, gpu.z, gpu.gamma, gpu.beta, gpu.w, gpu.b, 1e-5))
		checkKernels(t, fwd, "SpatialGatingForward out", dout, out, sguAtol, sguRtol)
		checkKernels(t, fwd, "SpatialGatingForward norm", dsaved.Norm, saved.Norm, normFwdAtol, normFwdRtol)
		checkKernels(t, fwd, "SpatialGatingForward mixed", dsaved.Mixed, saved.Mixed, sguAtol, sguRtol)
		checkKernels(t, fwd, "SpatialGatingForward mean", dsaved.Mean, saved.Mean, normFwdAtol, normFwdRtol)
		checkKernels(t, fwd, "SpatialGatingForward rstd", dsaved.RStd, saved.RStd, normFwdAtol, normFwdRtol)

		// Backward twice: dz overwritten, the parameter gradients added to
		// random starting values.
		g, dg := devRand(t, rng, n, tk, d)
		dz := engine.New(engine.Float32, n, tk, 2*d)
		ddz := dev(t, dz)
		ddz.Fill(7)
		pw, dpw := devRand(t, rng, tk, tk)
		pb, dpb := devRand(t, rng, tk)
		pgam, dpgam := devRand(t, rng, d)
		pbet, dpbet := devRand(t, rng, d)
		if cpu.gamma == nil {
			pgam, dpgam, pbet, dpbet = nil, nil, nil, nil
		}
		for range 2 {
			opsMust(t, engine.SpatialGatingBackward(dz, pgam, pbet, pw, pb, g, cpu.z, &saved, cpu.gamma, cpu.w))
			opsMust(t, engine.SpatialGatingBackward(ddz, dpgam, dpbet, dpw, dpb, dg, gpu.z, &dsaved, gpu.gamma, gpu.w))
		}
		checkKernels(t, bwd, "SpatialGatingBackward dz", ddz, dz, sguAtol, sguRtol)
		checkKernels(t, []string{"sgu_weight_grad_f32", "norm_partials_add_f32"}, "SpatialGatingBackward dw", dpw, pw, sguAtol, sguRtol)
		checkKernels(t, []string{"sgu_gate_backward_f32", "norm_partials_add_f32"}, "SpatialGatingBackward db", dpb, pb, sguAtol, sguRtol)
		if pgam != nil {
			params := []string{"sgu_mix_backward_f32", "layernorm_backward_params_f32", "norm_partials_add_f32"}
			checkKernels(t, params, "SpatialGatingBackward dgamma", dpgam, pgam, sguAtol, sguRtol)
			checkKernels(t, params, "SpatialGatingBackward dbeta", dpbet, pbet, sguAtol, sguRtol)
		}

		// Some gradients nil: dz alone, then the weights alone.
		opsMust(t, engine.SpatialGatingBackward(ddz, nil, nil, nil, nil, dg, gpu.z, &dsaved, gpu.gamma, gpu.w))
		opsMust(t, engine.SpatialGatingBackward(dz, nil, nil, nil, nil, g, cpu.z, &saved, cpu.gamma, cpu.w))
		checkKernels(t, bwd, "SpatialGatingBackward dz alone", ddz, dz, sguAtol, sguRtol)
		opsMust(t, engine.SpatialGatingBackward(nil, nil, nil, pw, nil, g, cpu.z, &saved, cpu.gamma, cpu.w))
		opsMust(t, engine.SpatialGatingBackward(nil, nil, nil, dpw, nil, dg, gpu.z, &dsaved, gpu.gamma, gpu.w))
		checkKernels(t, []string{"sgu_weight_grad_f32"}, "SpatialGatingBackward dw alone", dpw, pw, sguAtol, sguRtol)
	}
}

func TestCUDACheckSwitchGating(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDACheck(true)
	defer engine.SetCUDACheck(false)
	rng := rand.New(rand.NewPCG(53, 54))
	n, tk, d := 2, 6, 5
	_, z := devRand(t, rng, n, tk, 2*d)
	_, gamma := devRand(t, rng, d)
	_, w := devRand(t, rng, tk, tk)
	_, b := devRand(t, rng, tk)
	var s engine.SpatialGatingSaved
	opsMust(t, s.EnsureOn(z, n, tk, d))
	out := dev(t, engine.New(engine.Float32, n, tk, d))
	opsMust(t, engine.SpatialGatingForward(out, &s, z, gamma, nil, w, b, 1e-5))
	dz := dev(t, engine.New(engine.Float32, n, tk, 2*d))
	dw := dev(t, engine.New(engine.Float32, tk, tk))
	dgamma := dev(t, engine.New(engine.Float32, d))
	opsMust(t, engine.SpatialGatingBackward(dz, dgamma, nil, dw, nil, out, z, &s, gamma, w))
	// A CPU saved buffer with GPU tensors is a clear error.
	var cpuSaved engine.SpatialGatingSaved
	cpuSaved.Ensure(engine.Float32, n, tk, d)
	if err := engine.SpatialGatingForward(out, &cpuSaved, z, gamma, nil, w, b, 1e-5); err == nil {
		t.Fatal("SpatialGatingForward mixed CPU saved tensors with CUDA inputs")
	}
}

// The token products in bf16 (the token weight's --precision bf16): mixed
// and the weight gradient against float64 sums of the bf16-rounded
// operands the kernels read (the GPU's own normalised v, and dvm = dout ⊙ u,
// one float32 product), to fp32 summation error; dz, through the layer
// norm's backward pass, against the fp32 CPU op to bf16 precision.
func TestCUDAGatingBF16(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(53, 54))
	for _, c := range [][3]int{{2, 5, 3}, {3, 33, 40}} {
		n, tk, d := c[0], c[1], c[2]
		cpu := sguTensors{z: randTensor(rng, engine.Float32, n, tk, 2*d), w: randTensor(rng, engine.Float32, tk, tk),
			b: randTensor(rng, engine.Float32, tk)}
		gpu := cpu.dev(t)
		gpu.w.SetPrecision(engine.BF16)
		var saved, dsaved engine.SpatialGatingSaved
		saved.Ensure(engine.Float32, n, tk, d)
		opsMust(t, dsaved.EnsureOn(gpu.z, n, tk, d))
		out := engine.New(engine.Float32, n, tk, d)
		dout := dev(t, out)
		opsMust(t, engine.SpatialGatingForward(out, &saved, cpu.z, nil, nil, cpu.w, cpu.b, 1e-5))
		opsMust(t, engine.SpatialGatingForward(dout, &dsaved, gpu.z, nil, nil, gpu.w, gpu.b, 1e-5))

		g, dg := devRand(t, rng, n, tk, d)
		dz, pw := engine.New(engine.Float32, n, tk, 2*d), engine.New(engine.Float32, tk, tk)
		ddz, dpw := dev(t, dz), dev(t, pw)
		opsMust(t, engine.SpatialGatingBackward(dz, nil, nil, pw, nil, g, cpu.z, &saved, nil, cpu.w))
		opsMust(t, engine.SpatialGatingBackward(ddz, nil, nil, dpw, nil, dg, gpu.z, &dsaved, nil, gpu.w))

		vn, z, gv := toHost(t, dsaved.Norm).Values(), cpu.z.Values(), g.Values()
		w, b := cpu.w.Values(), cpu.b.Values()
		mixed, dw := engine.New(engine.Float32, n, tk, d), engine.New(engine.Float32, tk, tk)
		dvm := make([]float64, n*tk*d)
		for s := range n {
			for t1 := range tk {
				for j := range d {
					sum := b[t1]
					for k := range tk {
						sum += roundBF16(w[t1*tk+k]) * roundBF16(vn[(s*tk+k)*d+j])
					}
					mixed.SetAt((s*tk+t1)*d+j, sum)
					dvm[(s*tk+t1)*d+j] = float64(float32(gv[(s*tk+t1)*d+j]) * float32(z[(s*tk+t1)*2*d+j]))
				}
			}
		}
		for t1 := range tk {
			for t2 := range tk {
				sum := 0.0
				for s := range n {
					for j := range d {
						sum += roundBF16(dvm[(s*tk+t1)*d+j]) * roundBF16(vn[(s*tk+t2)*d+j])
					}
				}
				dw.SetAt(t1*tk+t2, sum)
			}
		}
		checkKernels(t, []string{"sgu_mix_forward_bf16"}, "SpatialGatingForward bf16 mixed vs rounded float64",
			dsaved.Mixed, mixed, sguAtol, sguRtol)
		checkKernels(t, []string{"sgu_weight_grad_bf16", "norm_partials_add_f32"},
			"SpatialGatingBackward bf16 dw vs rounded float64", dpw, dw, sguAtol, sguRtol)
		atol, rtol := bf16Tol(tk)
		checkKernels(t, []string{"sgu_mix_backward_bf16", "layernorm_backward_dx_f32"},
			"SpatialGatingBackward bf16 dz vs fp32 CPU", ddz, dz, atol, rtol)
	}
}
