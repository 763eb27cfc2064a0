package cuda

import "testing"

// KILN_CUDA_NOCACHE=1 (here set by hand) hands a freed block straight back
// to the device: nothing is cached, and the bytes in use fall as they would.
func TestCUDANoCacheFreesAtOnce(t *testing.T) {
	openOrSkip(t)
	saved := noCache
	noCache = true
	defer func() { noCache = saved }()
	before := Memory()
	p, err := Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	if got := Memory().InUse - before.InUse; got != roundSize(4096) {
		t.Fatalf("in use grew by %d bytes, want %d", got, roundSize(4096))
	}
	Free(p, 4096)
	if m := Memory(); m.InUse != before.InUse || m.Cached != before.Cached {
		t.Fatalf("after Free without the cache: %+v, before %+v", m, before)
	}
}
