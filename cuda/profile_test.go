package cuda

import (
	"testing"
	"time"
)

// The profiler counts every launch by kernel, times each on the device
// (events on a GPU, the clock on the emulator), counts the copies back to
// the host, the uploads and the memsets, and profiles nothing after it
// stops.
func TestCUDAProfileCountsLaunchesAndCopies(t *testing.T) {
	openOrSkip(t)
	const n = 1 << 16
	pa, pb := upload(t, make([]float32, n)), upload(t, make([]float32, n))
	defer Free(pa, 4*n)
	defer Free(pb, 4*n)
	axpy, fill := K("axpy_f32"), K("fill_f32")
	run := func(axpys, fills int) {
		for range axpys {
			var a Args
			if err := Launch(axpy, D1(Blocks(n, 256, 64)), D1(256), 0, a.Ptr(pa).Ptr(pb).F32(2).I64(n)); err != nil {
				t.Fatal(err)
			}
		}
		for range fills {
			var a Args
			if err := Launch(fill, D1(Blocks(n, 256, 64)), D1(256), 0, a.Ptr(pb).F32(1).I64(n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := StopProfile(); err == nil {
		t.Fatal("StopProfile without a profile running succeeded")
	}
	if err := StartProfile(); err != nil {
		t.Fatal(err)
	}
	if err := StartProfile(); err == nil {
		t.Fatal("a second StartProfile succeeded")
	}
	run(3, 2)
	download(t, pa, 4)
	if err := Zero(pb, 4*n); err != nil {
		t.Fatal(err)
	}
	pc := upload(t, make([]float32, 8))
	defer Free(pc, 32)
	p, err := StopProfile()
	if err != nil {
		t.Fatal(err)
	}
	run(1, 1) // not profiled
	if p.Launches != 5 || p.Copies != 1 || p.Uploads != 1 || p.Memsets != 1 || len(p.Kernels) != 2 {
		t.Fatalf("profile: %d launches, %d copies, %d uploads, %d memsets, %d kernels; want 5, 1, 1, 1, 2 (%+v)",
			p.Launches, p.Copies, p.Uploads, p.Memsets, len(p.Kernels), p)
	}
	got := map[string]KernelTime{}
	var sum time.Duration
	for _, k := range p.Kernels {
		got[k.Name] = k
		sum += k.Device
		if k.Device <= 0 || k.Device > p.Wall {
			t.Errorf("%s: device time %v, outside (0, wall %v]", k.Name, k.Device, p.Wall)
		}
	}
	if got["axpy_f32"].Launches != 3 || got["fill_f32"].Launches != 2 {
		t.Errorf("launches by kernel: %+v, want axpy_f32 3, fill_f32 2", got)
	}
	if sum != p.Device || p.HostGaps < 0 || p.HostGaps > p.Wall {
		t.Errorf("device %v (kernels sum to %v), host gaps %v, wall %v", p.Device, sum, p.HostGaps, p.Wall)
	}
}
