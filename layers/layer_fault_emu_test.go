//go:build cudaemu && !cuda && cgo

package layers

import (
	"errors"
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
)

// ZeroGrad on a model on the GPU returns a failing device call's error.
func TestCUDAZeroGradReturnsTheDeviceError(t *testing.T) {
	if _, err := engine.OpenDevice(engine.CUDA); err != nil {
		t.Skipf("skipped: no CUDA device (%v)", err)
	}
	m, err := Build("mlp", Spec{Channels: 1, Height: 4, Width: 4, Classes: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := ToDevice(m, engine.CUDA); err != nil {
		t.Fatal(err)
	}
	injected := errors.New("injected device failure")
	cuda.FailDeviceCallsForTest(injected)
	defer cuda.FailDeviceCallsForTest(nil)
	if err := ZeroGrad(m); !errors.Is(err, injected) {
		t.Fatalf("ZeroGrad with the device failing: %v, want the device's error", err)
	}
}
