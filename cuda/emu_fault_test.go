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

// A held-back step whose device calls fail returns the failure from End,
// and the StepGraph turns graphs off rather than replay a graph that failed.
func TestCUDAStepGraphFailureReachesEnd(t *testing.T) {
	openOrSkip(t)
	b := newGraphBufs(t, 64)
	g := NewStepGraph()
	defer g.Release()
	injected := errors.New("injected")
	for i := range 3 {
		if err := g.Begin(); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			FailDeviceCallsForTest(injected)
		}
		b.fill(t, b.x, float32(i)) // held back from step 1 on: no error yet
		err := g.End()
		FailDeviceCallsForTest(nil)
		if i < 2 && err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if i == 2 && !errors.Is(err, injected) {
			t.Fatalf("step %d: End gave %v, want the injected failure", i, err)
		}
	}
	if s := g.Stats(); s.Err == nil || s.Replays != 1 {
		t.Fatalf("stats %+v: want one replay, then graphs off", s)
	}
}
