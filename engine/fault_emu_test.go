//go:build cudaemu && !cuda && cgo

package engine_test

import (
	"errors"
	"math"
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
)

var errInjected = errors.New("injected device failure")

// failDevice makes every device copy, memset and launch fail until the test
// ends.
func failDevice(t *testing.T) {
	cuda.FailDeviceCallsForTest(errInjected)
	t.Cleanup(func() { cuda.FailDeviceCallsForTest(nil) })
}

// Every tensor method and op that makes a device call returns that call's
// error: Zero runs on every gradient every step, and SumSquares decides
// whether gradients are clipped.
func TestCUDAFailingDeviceCallReachesTheCaller(t *testing.T) {
	cudaOrSkip(t)
	x := dev(t, engine.New(engine.Float32, 3, 5))
	out := dev(t, engine.New(engine.Float32, 3, 5))
	mask := dev(t, engine.New(engine.Float32, 3, 5))
	failDevice(t)
	_, sumErr := engine.SumSquares(x)
	_, getErr := x.Get(2)
	rng := engine.DropoutRNG{Seed: 1}
	for name, err := range map[string]error{
		"Zero": x.Zero(), "Fill": x.Fill(1), "SetAt": x.SetAt(2, 1), "Get": getErr,
		"Scale": engine.Scale(x, 2), "SumSquares": sumErr, "CopyFrom": out.CopyFrom(x),
		"Clone": x.Clone().Err(), "As": x.As(engine.Float64).Err(),
		"DropoutForward p=0":        engine.DropoutForward(out, mask, x, 0, true, &rng),
		"DropoutForward evaluation": engine.DropoutForward(out, nil, x, 0.5, false, nil),
		"DropoutBackward identity":  engine.DropoutBackward(out, x, nil),
	} {
		if !errors.Is(err, errInjected) {
			t.Errorf("%s with the device failing: %v, want the device's error", name, err)
		}
	}
	if v := x.At(2); !math.IsNaN(v) {
		t.Errorf("At with the device failing = %v, want NaN", v)
	}
	if v := x.Values(); !math.IsNaN(v[0]) {
		t.Errorf("Values with the device failing = %v, want NaN", v)
	}
}

// The KILN_CUDA_CHECK rerun reports a download that fails instead of
// comparing garbage.
func TestCUDACheckReportsAFailingDownload(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDACheck(true)
	defer engine.SetCUDACheck(false)
	a := dev(t, engine.New(engine.Float32, 7))
	failDevice(t)
	if err := engine.Add(a, a, a); !errors.Is(err, errInjected) {
		t.Errorf("Add with the device failing under KILN_CUDA_CHECK: %v, want the device's error", err)
	}
}

// A copy made while the device failed carries the failure into the CopyFrom
// that would restore it, instead of restoring garbage.
func TestCUDAFailedCloneIsNotCopiedBack(t *testing.T) {
	cudaOrSkip(t)
	x := dev(t, engine.New(engine.Float32, 4))
	failDevice(t)
	saved, onHost := x.Clone(), x.As(engine.Float32)
	cuda.FailDeviceCallsForTest(nil)
	if err := x.CopyFrom(saved); !errors.Is(err, errInjected) {
		t.Errorf("CopyFrom a failed Clone: %v, want the device's error", err)
	}
	if err := x.CopyFrom(onHost); !errors.Is(err, errInjected) {
		t.Errorf("CopyFrom a failed As: %v, want the device's error", err)
	}
}
