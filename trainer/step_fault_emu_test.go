//go:build cudaemu && !cuda && cgo

package trainer

import (
	"errors"
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// A training step on the GPU, and gradient clipping, return a failing device
// call's error: the step's first device call is zeroing the gradients, and a
// norm that failed must not be a NaN that skips the clipping.
func TestCUDAStepReturnsTheDeviceError(t *testing.T) {
	cudaOrSkip(t)
	s := layers.Spec{Channels: 1, Height: 4, Width: 4, Classes: 3}
	m, err := layers.Build("mlp", s)
	if err != nil {
		t.Fatal(err)
	}
	if err := layers.ToDevice(m, engine.CUDA); err != nil {
		t.Fatal(err)
	}
	x, labels := syntheticBatch(2, s)
	if x, err = x.To(engine.CUDA); err != nil {
		t.Fatal(err)
	}
	c := NewClassifier(m, &SGD{})
	_, params := layers.Params(m)
	injected := errors.New("injected device failure")
	cuda.FailDeviceCallsForTest(injected)
	defer cuda.FailDeviceCallsForTest(nil)
	if _, _, err := c.TrainStep(x, labels, 0.1); !errors.Is(err, injected) {
		t.Errorf("TrainStep with the device failing: %v, want the device's error", err)
	}
	if _, err := ClipGradNorm(params, 1); !errors.Is(err, injected) {
		t.Errorf("ClipGradNorm with the device failing: %v, want the device's error", err)
	}
	if err := clipGrads(params, new([]*engine.Tensor), 1); !errors.Is(err, injected) {
		t.Errorf("the step's clipping with the device failing: %v, want the device's error", err)
	}
}
