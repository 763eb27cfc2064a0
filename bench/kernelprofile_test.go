package bench

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// The profile's figures are per step: two steps of a 3 ms wall, 2 ms of
// kernels in 5 launches and 2 copies give 1.5 ms, 1 ms, 2.5 launches and 1
// copy a step.
func TestKernelProfilePerStep(t *testing.T) {
	p := cuda.Profile{
		Kernels: []cuda.KernelTime{{Name: "a", Launches: 4, Device: 1500 * time.Microsecond},
			{Name: "b", Launches: 1, Device: 500 * time.Microsecond}},
		Launches: 5, Copies: 2, Uploads: 4, Memsets: 6, Device: 2 * time.Millisecond, HostGaps: 600 * time.Microsecond, Wall: 3 * time.Millisecond,
	}
	kp := kernelProfile(p, 2)
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if !near(kp.StepMillis, 1.5) || !near(kp.KernelMillis, 1) || !near(kp.HostGapMillis, 0.3) ||
		!near(kp.LaunchesPerStep, 2.5) || !near(kp.CopiesPerStep, 1) || !near(kp.UploadsPerStep, 2) ||
		!near(kp.MemsetsPerStep, 3) || len(kp.Kernels) != 2 {
		t.Fatalf("per step: %+v", kp)
	}
	a := kp.Kernels[0]
	if a.Name != "a" || !near(a.LaunchesPerStep, 2) || !near(a.Millis, 0.75) || !near(a.MeanMicros, 375) || !near(a.Share, 0.5) {
		t.Fatalf("kernel a: %+v", a)
	}
}

// kiln bench --profile on the GPU (or the emulator): every launch of a
// lenet step is in the profile, the convolutions among them, and the ten
// steps' losses come back in one copy at the end, as Fit reads them: a tenth
// of a copy a step.
func TestCUDATimeStepsProfile(t *testing.T) {
	cudaOrSkip(t)
	res, err := TimeSteps(StepTimingConfig{Model: "lenet", Spec: layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10},
		Batch: 2, Warmup: 1, Steps: 1, Device: engine.CUDA, Profile: true})
	if err != nil {
		t.Fatal(err)
	}
	kp := res.Profile
	if kp == nil || kp.Steps != profiledSteps || kp.LaunchesPerStep < 20 || kp.CopiesPerStep != 1.0/profiledSteps {
		t.Fatalf("profile %+v", kp)
	}
	launches, ms, conv := 0.0, 0.0, false
	for _, k := range kp.Kernels {
		launches += k.LaunchesPerStep
		ms += k.Millis
		conv = conv || strings.HasPrefix(k.Name, "conv2d_forward_")
	}
	if !conv || math.Abs(launches-kp.LaunchesPerStep) > 1e-9 || math.Abs(ms-kp.KernelMillis) > 1e-6*kp.KernelMillis ||
		kp.KernelMillis > kp.StepMillis {
		t.Fatalf("kernels %+v do not add up to the profile's %.1f launches and %.3f ms a step (step %.3f ms)",
			kp.Kernels, kp.LaunchesPerStep, kp.KernelMillis, kp.StepMillis)
	}
	t.Logf("lenet b2: %.1f launches, %.1f copies back, %.1f uploads, %.1f memsets, %.3f ms of kernels in a %.3f ms step",
		kp.LaunchesPerStep, kp.CopiesPerStep, kp.UploadsPerStep, kp.MemsetsPerStep, kp.KernelMillis, kp.StepMillis)
	if _, err := TimeSteps(StepTimingConfig{Model: "lenet", Spec: layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10},
		Batch: 2, Steps: 1, Profile: true}); err == nil || !strings.Contains(err.Error(), "GPU kernels") {
		t.Errorf("a kernel profile on the CPU: %v", err)
	}
}

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
