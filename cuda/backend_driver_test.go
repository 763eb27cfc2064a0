//go:build cuda && cgo

package cuda

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"gorgonia.org/cu"
)

// hasGPU opens the driver backend on its own (not through Init, which runs
// once per process) and reports whether it found a device.
func hasGPU(t *testing.T) bool {
	t.Helper()
	_, err := (&driverBackend{}).init()
	return err == nil
}

// This test binary starting at all is the first check: gorgonia.org/cu's
// init would have ended it where cuInit fails (see driver_launch.c).
func TestDriverWithoutAGPUSaysNoDevice(t *testing.T) {
	if hasGPU(t) {
		t.Skip("a GPU is present; this checks the GPU-less path")
	}
	_, err := (&driverBackend{}).init()
	if !errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), "cuInit") {
		t.Errorf("init without a GPU: %v, want ErrNoDevice naming cuInit's result", err)
	}
	t.Setenv("CUDA_VISIBLE_DEVICES", "")
	_, err = (&driverBackend{}).init()
	if !errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), "CUDA_VISIBLE_DEVICES") {
		t.Errorf("init with CUDA_VISIBLE_DEVICES empty: %v, want ErrNoDevice naming it", err)
	}
}

func TestDriverOpensTheGPU(t *testing.T) {
	if !hasGPU(t) {
		if os.Getenv("REQUIRE_CUDA") == "1" {
			t.Fatal("REQUIRE_CUDA=1 but the driver found no GPU")
		}
		t.Skip("no GPU")
	}
	inf, err := Init()
	if err != nil {
		t.Fatal(err)
	}
	if inf.Backend != "cuda" || inf.Name == "" || inf.MemoryTotal <= 0 || inf.SMs <= 0 || inf.Capability == "" || !strings.Contains(inf.Fatbin, "sha256") {
		t.Errorf("Info = %+v, want a named device with memory, SMs, capability and the module's hash", inf)
	}
	// Every declared kernel resolved (Init fails otherwise); launching one
	// from another goroutine, on whatever OS thread it lands, works too.
	done := make(chan error)
	go func() {
		p, err := Alloc(4 * 1000)
		if err == nil {
			err = Zero(p, 4*1000)
			Free(p, 4*1000)
		}
		if err == nil {
			err = Synchronize()
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func TestTooOldRecognisesArchitectureFailures(t *testing.T) {
	if !tooOld(fmt.Errorf("load: %w", fmt.Errorf("cuModuleLoadData: %w", cu.NoBinaryForGpu))) {
		t.Error("NoBinaryForGpu should mean a GPU too old for the module")
	}
	if tooOld(fmt.Errorf("load: %w", cu.InvalidImage)) || tooOld(errors.New("x")) {
		t.Error("a damaged module is not an old GPU")
	}
}
