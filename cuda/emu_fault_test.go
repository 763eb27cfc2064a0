//go:build cudaemu && !cuda && cgo

package cuda

import (
	"errors"
	"testing"
	"unsafe"
)

// While a test makes the emulator fail, every copy, memset and launch
// returns that error, as the real driver's calls do when the device fails.
func TestCUDAEmulatorFailsDeviceCallsOnRequest(t *testing.T) {
	openOrSkip(t)
	p := upload(t, []float32{1, 2, 3})
	defer Free(p, 12)
	q := upload(t, []float32{4, 5, 6})
	defer Free(q, 12)
	injected := errors.New("injected")
	FailDeviceCallsForTest(injected)
	defer FailDeviceCallsForTest(nil)
	var host [3]float32
	var a Args
	for name, err := range map[string]error{
		"CopyHtoD": CopyHtoD(p, unsafe.Pointer(&host[0]), 12),
		"CopyDtoH": CopyDtoH(unsafe.Pointer(&host[0]), p, 12),
		"CopyDtoD": CopyDtoD(q, p, 12),
		"Zero":     Zero(p, 12),
		"Launch":   Launch(K("fill_f32"), D1(1), D1(32), 0, a.Ptr(p).F32(0).I64(3)),
	} {
		if !errors.Is(err, injected) {
			t.Errorf("%s: %v, want the injected error", name, err)
		}
	}
	FailDeviceCallsForTest(nil)
	if got := download(t, p, 3); got[0] != 1 || got[2] != 3 {
		t.Errorf("memory changed by failed calls: %v", got)
	}
}
