//go:build cuda && cgo

package cuda

import (
	"errors"
	"math"
	"os"
	"testing"
	"unsafe"
)

// NCCL on the real GPU, one rank, started without mpirun (issue 18's GPU
// test): the library loads from the loader's path or $KILN_NCCL_LIBRARY,
// a one-rank communicator forms, and its all-reduce leaves the buffer as
// it was (a sum over one rank), on the stream the kernels use. Skips,
// saying why, without a GPU or without NCCL; REQUIRE_NCCL=1 makes a
// missing NCCL a failure.
func TestNCCLOneRank(t *testing.T) {
	if _, err := Init(); err != nil {
		t.Skipf("skipped: no CUDA device (%v)", err)
	}
	version, err := LoadNCCL()
	if err != nil {
		if os.Getenv("REQUIRE_NCCL") == "1" {
			t.Fatalf("REQUIRE_NCCL=1: %v", err)
		}
		t.Skipf("skipped: %v", err)
	}
	t.Logf("NCCL %s from %s", version, ncclLibrary())
	id, err := NewNCCLID()
	if err != nil {
		t.Fatal(err)
	}
	comm, err := NewNCCLComm(id, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer comm.Close()
	host := make([]float32, 1000)
	for i := range host {
		host[i] = float32(i) * 0.5
	}
	p, err := Alloc(int64(4 * len(host)))
	if err != nil {
		t.Fatal(err)
	}
	defer Free(p, int64(4*len(host)))
	if err := CopyHtoD(p, unsafe.Pointer(&host[0]), int64(4*len(host))); err != nil {
		t.Fatal(err)
	}
	if err := comm.AllreduceSumFloat32(p, len(host)); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, len(host))
	if err := CopyDtoH(unsafe.Pointer(&got[0]), p, int64(4*len(got))); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(host[i]) {
			t.Fatalf("after a one-rank all-reduce [%d] = %v, want %v", i, got[i], host[i])
		}
	}
	if os.Getenv("NCCL_ALGO") == "" {
		t.Error("NCCL_ALGO was not pinned")
	}
}

// A library that is not there is ErrNoNCCL naming the path.
func TestNCCLMissingLibrary(t *testing.T) {
	if ncclLoaded {
		t.Skip("skipped: NCCL is already loaded in this process")
	}
	t.Setenv("KILN_NCCL_LIBRARY", "/nonexistent/libnccl.so.2")
	if _, err := LoadNCCL(); !errors.Is(err, ErrNoNCCL) {
		t.Errorf("LoadNCCL of a missing library: %v, want ErrNoNCCL", err)
	}
}
