package trainer

import (
	"math"
	"os"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// cudaOrSkip opens the GPU (or the emulator in a cudaemu build) or skips,
// saying why; REQUIRE_CUDA=1 makes the skip a failure.
func cudaOrSkip(t *testing.T) {
	t.Helper()
	if _, err := engine.OpenDevice(engine.CUDA); err != nil {
		if os.Getenv("REQUIRE_CUDA") == "1" {
			t.Fatalf("REQUIRE_CUDA=1 but no CUDA device: %v", err)
		}
		t.Skipf("skipped: no CUDA device (%v)", err)
	}
}

// stepLosses trains model name for steps steps on one fixed batch on device
// d in precision p, returning the loss of each step and the final
// first-layer weights.
func stepLosses(t *testing.T, name string, s layers.Spec, batch, steps int, opt Optimizer, d engine.Device,
	p engine.Precision) ([]float64, []float64) {
	t.Helper()
	m, err := layers.Build(name, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := layers.ToDevice(m, d); err != nil {
		t.Fatal(err)
	}
	if err := layers.SetPrecision(m, p); err != nil {
		t.Fatal(err)
	}
	c := NewClassifier(m, opt)
	x, labels := syntheticBatch(batch, s)
	if d == engine.CUDA {
		if x, err = x.To(engine.CUDA); err != nil {
			t.Fatal(err)
		}
	}
	var losses []float64
	for i := 0; i < steps; i++ {
		loss, _, err := c.TrainStep(x, labels, 0.05)
		if err != nil {
			t.Fatalf("%s on %v, step %d: %v", name, d, i, err)
		}
		losses = append(losses, loss)
	}
	_, ps := layers.Params(m)
	return losses, ps[0].Value.Values()
}

// A few training steps on the GPU follow the CPU's loss curve: the whole
// step (forward, loss, backward, SGD with momentum) runs on the device and
// agrees with the reference within float32 rounding.
func TestCUDATrainingFollowsTheCPU(t *testing.T) {
	cudaOrSkip(t)
	models := []string{"mlp", "lenet"}
	if os.Getenv("KILN_CUDA_ALL_MODELS") == "1" || engine.CUDADeviceIsReal() {
		models = layers.ModelNames()
	}
	for _, name := range models {
		t.Run(name, func(t *testing.T) {
			s := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 3}
			if name == "mlp" {
				s.Hidden = 16
			}
			followsTheCPU(t, name, s, engine.FP32, 1e-3)
		})
	}
}

// followsTheCPU trains name three steps on the CPU and on the GPU in
// precision p and holds the losses and first-layer weights within tol. In a
// reduced precision the two devices may round an operand a float32 rounding
// apart to neighbouring values, and a model whose steps amplify that (cnn's
// batch norm over 3 images) drifts further: there the devices need only
// agree within half of what the precision itself changes on the CPU (its
// run against fp32's), a gap that a wrong kernel would exceed.
func followsTheCPU(t *testing.T, name string, s layers.Spec, p engine.Precision, tol float64) {
	const batch, steps = 3, 3
	cpu, wcpu := stepLosses(t, name, s, batch, steps, &SGD{Momentum: 0.9}, engine.CPU, p)
	gpu, wgpu := stepLosses(t, name, s, batch, steps, &SGD{Momentum: 0.9}, engine.CUDA, p)
	lossEffect, weightEffect := make([]float64, steps), 0.0
	if p != engine.FP32 {
		full, wfull := stepLosses(t, name, s, batch, steps, &SGD{Momentum: 0.9}, engine.CPU, engine.FP32)
		for i := range full {
			lossEffect[i] = math.Abs(full[i] - cpu[i])
		}
		weightEffect = maxAbsDiff(wfull, wcpu)
	}
	for i := range cpu {
		if math.Abs(cpu[i]-gpu[i]) > max(tol+tol*math.Abs(cpu[i]), lossEffect[i]/2) {
			t.Errorf("step %d: loss on the GPU %.6f, on the CPU %.6f (%v against fp32 on the CPU: %.3g)",
				i, gpu[i], cpu[i], p, lossEffect[i])
		}
	}
	worst := maxAbsDiff(wcpu, wgpu)
	if worst > max(tol, weightEffect/2) {
		t.Errorf("first-layer weights differ by up to %.3g after %d steps (%v against fp32 on the CPU: %.3g)",
			worst, steps, p, weightEffect)
	}
	t.Logf("%s %v: cpu losses %.5f, gpu losses %.5f, max |Δw| %.2g (%v against fp32: %.2g)",
		name, p, cpu, gpu, worst, p, weightEffect)
}

func maxAbsDiff(a, b []float64) float64 {
	worst := 0.0
	for i := range a {
		worst = max(worst, math.Abs(a[i]-b[i]))
	}
	return worst
}

// The same in bf16, on models with a convolution, linear layers and the
// SGU's token products (every model on a real GPU): the GPU's bf16 kernels against the CPU's bf16 path
// (AVX512_BF16). Both round the same operands; an input a float32 rounding
// apart on the two devices may round to neighbouring bf16 values, hence
// the wider tolerance.
func TestCUDATrainingFollowsTheCPUInBF16(t *testing.T) {
	cudaOrSkip(t)
	if !engine.CPUHasBF16() {
		t.Skip("skipped: this CPU has no AVX512_BF16, so there is no bf16 reference to follow")
	}
	models := []string{"lenet", "gmlp"}
	if os.Getenv("KILN_CUDA_ALL_MODELS") == "1" || engine.CUDADeviceIsReal() {
		models = layers.ModelNames()
	}
	for _, name := range models {
		t.Run(name, func(t *testing.T) {
			followsTheCPU(t, name, layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 3}, engine.BF16, 2e-3)
		})
	}
}

// The learning-rate range test runs on the device as on the CPU, the
// loader's host batches uploaded (each step failed: "tensors on cpu and
// cuda"), for a classification and a regression.
func TestFindLROnCUDAMatchesTheCPU(t *testing.T) {
	cudaOrSkip(t)
	for _, regression := range []bool{false, true} {
		ds := blobs(t, 128, 1)
		c := blobConfig()
		c.Batch = 16
		if regression {
			ds = ramp(t, 128, 1)
			c.Regression = true
		}
		run := func(dev engine.Device) []LRPoint {
			model, err := layers.Build("mlp", layers.Spec{Channels: 1, Height: 8, Width: 8, Classes: 4, Seed: 1, Hidden: 32, Regression: regression})
			if err != nil {
				t.Fatal(err)
			}
			tr, err := NewTrainer(c, model)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Release()
			if err := tr.SetDevice(dev); err != nil {
				t.Fatal(err)
			}
			res, err := tr.FindLR(t.Context(), ds, LRFindOptions{Start: 1e-4, End: 1, Steps: 10})
			if err != nil {
				t.Fatalf("regression %v on %v: %v", regression, dev, err)
			}
			return res.Points
		}
		cpu, gpu := run(engine.CPU), run(engine.CUDA)
		if len(cpu) != len(gpu) {
			t.Fatalf("regression %v: %d points on the CPU, %d on the device", regression, len(cpu), len(gpu))
		}
		for i := range cpu {
			if math.Abs(cpu[i].Loss-gpu[i].Loss) > 1e-4*(1+math.Abs(cpu[i].Loss)) {
				t.Errorf("regression %v, step %d: loss %v on the CPU, %v on the device", regression, i, cpu[i].Loss, gpu[i].Loss)
			}
		}
	}
}
