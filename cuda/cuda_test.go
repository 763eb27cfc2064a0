package cuda

import (
	"errors"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// openOrSkip opens the device or skips, saying why; REQUIRE_CUDA=1 turns the
// skip into a failure.
func openOrSkip(t *testing.T) Info {
	t.Helper()
	inf, err := Init()
	if err != nil {
		if os.Getenv("REQUIRE_CUDA") == "1" {
			t.Fatalf("REQUIRE_CUDA=1 but no device: %v", err)
		}
		t.Skipf("no CUDA device: %v", err)
	}
	return inf
}

func upload(t *testing.T, v []float32) Ptr {
	t.Helper()
	p, err := Alloc(int64(4 * len(v)))
	if err != nil {
		t.Fatal(err)
	}
	if err := CopyHtoD(p, unsafe.Pointer(&v[0]), int64(4*len(v))); err != nil {
		t.Fatal(err)
	}
	return p
}

func download(t *testing.T, p Ptr, n int) []float32 {
	t.Helper()
	v := make([]float32, n)
	if err := CopyDtoH(unsafe.Pointer(&v[0]), p, int64(4*n)); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCUDALaunchArgumentsAtTheirSizes(t *testing.T) {
	openOrSkip(t)
	const n = 1000 // not a multiple of the block
	a := make([]float32, n)
	b := make([]float32, n)
	for i := range a {
		a[i], b[i] = float32(i), float32(2*i)
	}
	pa, pb := upload(t, a), upload(t, b)
	defer Free(pa, 4*n)
	defer Free(pb, 4*n)
	// axpy reads a float after a pointer: a mis-packed float reads as garbage.
	var args Args
	if err := Launch(K("axpy_f32"), D1(Blocks(n, 128, 4)), D1(128), 0, args.Ptr(pa).Ptr(pb).F32(-0.5).I64(n)); err != nil {
		t.Fatal(err)
	}
	got := download(t, pa, n)
	for i, v := range got {
		if v != 0 {
			t.Fatalf("axpy: element %d = %v, want 0", i, v)
		}
	}
	// Too few arguments is an error, not a crash. The driver reads past the
	// argument array (a segfault, seen on an H200) unless Launch checks the
	// count, which a driver older than 12.4 cannot give.
	k := K("axpy_f32")
	if k.Params() < 0 {
		if Device().Backend == "emulator" {
			t.Fatal("the emulator does not count axpy_f32's parameters")
		}
		t.Logf("this driver cannot count kernel parameters (cuFuncGetParamInfo needs 12.4); the short launch is not tried")
		return
	}
	if got := k.Params(); got != 4 {
		t.Fatalf("axpy_f32 takes %d parameters, want 4", got)
	}
	var short Args
	if err := Launch(k, D1(1), D1(32), 0, short.Ptr(pa)); err == nil {
		t.Fatal("launch with too few arguments succeeded")
	}
}

func TestCUDASharedMemoryAndWarpShuffles(t *testing.T) {
	openOrSkip(t)
	const n = 777
	x := make([]float32, n)
	var want float64
	for i := range x {
		x[i] = float32(i%13) - 6
		want += float64(x[i]) * float64(x[i])
	}
	px := upload(t, x)
	defer Free(px, 4*n)
	blocks := 3
	pp, err := Alloc(int64(4 * blocks))
	if err != nil {
		t.Fatal(err)
	}
	defer Free(pp, int64(4*blocks))
	var args Args
	if err := Launch(K("sum_squares_f32"), D1(blocks), D1(96), 0, args.Ptr(pp).Ptr(px).I64(n)); err != nil {
		t.Fatal(err)
	}
	var got float64
	for _, v := range download(t, pp, blocks) {
		got += float64(v)
	}
	if got != want {
		t.Fatalf("sum of squares = %v, want %v", got, want)
	}
}

func TestCUDAOutOfMemorySaysHowMuch(t *testing.T) {
	inf := openOrSkip(t)
	_, err := Alloc(inf.MemoryTotal + 1<<30)
	var oom *OutOfMemoryError
	if !errors.As(err, &oom) {
		t.Fatalf("allocating more than the device holds: %v, want *OutOfMemoryError", err)
	}
	if oom.Requested != inf.MemoryTotal+1<<30 || oom.Total <= 0 {
		t.Fatalf("error figures %+v", oom)
	}
	t.Log(err)
}

func TestCUDAAllocatorReusesFreedBlocks(t *testing.T) {
	openOrSkip(t)
	if noCache {
		t.Skip("KILN_CUDA_NOCACHE=1: the allocator has no cache to test")
	}
	p, err := Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	Free(p, 4096)
	q, err := Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(q, 4096)
	if p != q {
		t.Fatalf("a freed block of the same size was not reused: %x then %x", p, q)
	}
}

// A kernel declared after the device opened that the module lacks fails at
// its launch, with the lookup's error.
func TestCUDAKernelDeclaredLateFailsAtLaunch(t *testing.T) {
	openOrSkip(t)
	k := K("kiln_test_no_such_kernel")
	var a Args
	err := Launch(k, D1(1), D1(1), 0, &a)
	if err == nil || !strings.Contains(err.Error(), "kiln_test_no_such_kernel") {
		t.Fatalf("launching a kernel the module lacks: %v, want an error naming it", err)
	}
}

// EmptyCache hands every cached block back to the driver and reports no
// error from a healthy device.
func TestCUDAEmptyCacheReleasesTheCache(t *testing.T) {
	openOrSkip(t)
	if noCache {
		t.Skip("KILN_CUDA_NOCACHE=1: the allocator has no cache to test")
	}
	p, err := Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	Free(p, 4096)
	if Memory().Cached == 0 {
		t.Fatal("a freed block is not in the cache")
	}
	if err := EmptyCache(); err != nil {
		t.Fatalf("EmptyCache: %v", err)
	}
	if c := Memory().Cached; c != 0 {
		t.Fatalf("%d bytes cached after EmptyCache", c)
	}
}

// Uploads return before the device has the data (through the staging ring
// on a GPU): the source may be overwritten at once, and each upload still
// lands, in order with the launches between them. 64 uploads from one host
// buffer cycle the ring many times over; the last upload, above maxStaged,
// takes the synchronous path.
func TestCUDAUploadsMayReuseTheirSourceAtOnce(t *testing.T) {
	openOrSkip(t)
	const n = 1 << 10
	dst, err := Alloc(4 * 64 * n)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(dst, 4*64*n)
	src := make([]float32, n)
	for i := range 64 {
		for j := range src {
			src[j] = float32(i*n + j)
		}
		p := dst + Ptr(4*i*n)
		if err := CopyHtoD(p, unsafe.Pointer(&src[0]), 4*n); err != nil {
			t.Fatal(err)
		}
		// A launch between uploads: it scales the slice just uploaded by
		// 1, reading it after the upload and before the next one.
		var a Args
		if err := Launch(K("scale_f32"), D1(Blocks(n, 128, 8)), D1(128), 0, a.Ptr(p).F32(1).I64(n)); err != nil {
			t.Fatal(err)
		}
	}
	got := download(t, dst, 64*n)
	for i, v := range got {
		if v != float32(i) {
			t.Fatalf("element %d is %v after the uploads", i, v)
		}
	}
	big := make([]float32, maxStaged/4+1)
	big[len(big)-1] = 7
	pb := upload(t, big)
	defer Free(pb, int64(4*len(big)))
	big[len(big)-1] = 0
	if v := download(t, pb+Ptr(4*(len(big)-1)), 1); v[0] != 7 {
		t.Fatalf("the synchronous upload's last element is %v", v[0])
	}
}
