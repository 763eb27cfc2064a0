package layers

import (
	"os"
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
)

// passOnDevice runs a forward and a backward pass of a batch of n on the
// device, releasing its own input and output gradient.
func passOnDevice(t *testing.T, m *Model, n int) {
	t.Helper()
	s := m.Spec
	x, err := engine.NewOn(engine.CUDA, engine.Float32, n, s.Channels, s.Height, s.Width)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Release()
	if err := x.Fill(0.5); err != nil {
		t.Fatal(err)
	}
	y, err := m.Forward(x)
	if err != nil {
		t.Fatal(err)
	}
	dy, err := engine.NewOn(engine.CUDA, engine.Float32, y.Shape()...)
	if err != nil {
		t.Fatal(err)
	}
	defer dy.Release()
	if err := dy.Fill(0.1); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Backward(dy); err != nil {
		t.Fatal(err)
	}
}

// Every layer of the zoo owns its device buffers: a pass of another batch
// size replaces them rather than adding to them, ReleaseBuffers frees them
// all (and the model still runs), and Release frees the parameters too.
func TestCUDAModelsReleaseTheirDeviceMemory(t *testing.T) {
	if _, err := engine.OpenDevice(engine.CUDA); err != nil {
		t.Skipf("skipped: no CUDA device (%v)", err)
	}
	inUse := func() int64 { return cuda.Memory().InUse }
	for _, name := range ModelNames() {
		t.Run(name, func(t *testing.T) {
			if name != "lenet" && name != "mlp" && name != "gmlp" && !engine.CUDADeviceIsReal() && os.Getenv("KILN_CUDA_ALL_MODELS") != "1" {
				t.Skip("half a minute on the emulator: KILN_CUDA_ALL_MODELS=1 runs it")
			}
			base := inUse()
			m, err := Build(name, Spec{Channels: 1, Height: 12, Width: 12, Classes: 10, Hidden: 16, Depth: 1, Seed: 1}) // small: the emulator is slow
			if err != nil {
				t.Fatal(err)
			}
			defer Release(m)
			if err := ToDevice(m, engine.CUDA); err != nil {
				t.Fatal(err)
			}
			params := inUse()
			passOnDevice(t, m, 2)
			buffers := inUse()
			passOnDevice(t, m, 3)
			passOnDevice(t, m, 2)
			if got := inUse(); got != buffers {
				t.Errorf("after passes of 3 and 2: %d bytes in use, %d after the first pass of 2", got, buffers)
			}
			ReleaseBuffers(m)
			if got := inUse(); got != params {
				t.Errorf("after ReleaseBuffers: %d bytes in use, %d with the parameters alone", got, params)
			}
			passOnDevice(t, m, 2)
			if got := inUse(); got != buffers {
				t.Errorf("a pass after ReleaseBuffers: %d bytes in use, %d before", got, buffers)
			}
			Release(m)
			if got := inUse(); got != base {
				t.Errorf("after Release: %d bytes in use, %d before the model was built", got, base)
			}
		})
	}
}
