//go:build cudaemu && !cuda && cgo

package cuda

import (
	"errors"
	"strings"
	"testing"
)

// A data-parallel rank opens the device its index names; asking for one
// the process does not see is ErrNoDevice, naming it. The emulator counts
// KILN_EMU_DEVICES devices.
func TestEmulatorDeviceCountAndSelection(t *testing.T) {
	t.Setenv("KILN_EMU_DEVICES", "3")
	if n, err := DeviceCount(); err != nil || n != 3 {
		t.Fatalf("DeviceCount with KILN_EMU_DEVICES=3: %d, %v", n, err)
	}
	if err := SelectDevice(-1); err == nil {
		t.Error("SelectDevice(-1) accepted")
	}
	defer func() { ordinal = 0 }()
	for _, c := range []struct {
		ordinal int
		ok      bool
	}{{2, true}, {3, false}} {
		ordinal = c.ordinal
		_, err := (&emuBackend{}).init()
		if c.ok != (err == nil) || (err != nil && (!errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), "device 3"))) {
			t.Errorf("opening emulated device %d of 3: %v", c.ordinal, err)
		}
	}
	t.Setenv("KILN_EMU_DEVICES", "0")
	if _, err := DeviceCount(); !errors.Is(err, ErrNoDevice) {
		t.Errorf("KILN_EMU_DEVICES=0: %v, want ErrNoDevice", err)
	}
}

// The emulator has no NCCL: its ranks sum through host memory, and saying
// so is an error that wraps ErrNoNCCL.
func TestEmulatorHasNoNCCL(t *testing.T) {
	if _, err := LoadNCCL(); !errors.Is(err, ErrNoNCCL) || !strings.Contains(err.Error(), "emulator") {
		t.Errorf("LoadNCCL on the emulator: %v", err)
	}
}
