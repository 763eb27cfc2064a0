//go:build cuda && cgo

package cuda

/*
#cgo CFLAGS: -I/usr/local/cuda/include
#include <stdlib.h>
#include <string.h>
#include "nccl_driver.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// ncclLoaded is set once the library has loaded (it stays loaded).
var ncclLoaded bool

// LoadNCCL opens NCCL and returns its version ("2.21.5").
func LoadNCCL() (string, error) {
	path := C.CString(ncclLibrary())
	defer C.free(unsafe.Pointer(path))
	if e := C.kiln_nccl_load(path); e != nil {
		return "", fmt.Errorf("%w: %s: %s", ErrNoNCCL, ncclLibrary(), C.GoString(e))
	}
	ncclLoaded = true
	var v C.int
	if rc := C.kiln_nccl_version(&v); rc != 0 {
		return "", ncclErr("ncclGetVersion", rc, 0)
	}
	// 2.9 and later: major*10000 + minor*100 + patch.
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100), nil
}

// NewNCCLID makes the token of a new communicator (on rank 0).
func NewNCCLID() (NCCLID, error) {
	var id NCCLID
	if _, err := LoadNCCL(); err != nil {
		return id, err
	}
	var cid C.kiln_nccl_id
	if rc := C.kiln_nccl_unique_id(&cid); rc != 0 {
		return id, ncclErr("ncclGetUniqueId", rc, 0)
	}
	copy(id[:], C.GoBytes(unsafe.Pointer(&cid), C.int(len(id))))
	return id, nil
}

// NewNCCLComm joins the communicator of id as rank of size, on the device
// Init opened. Every rank calls it at once: it returns when all have.
func NewNCCLComm(id NCCLID, rank, size int) (*NCCLComm, error) {
	d, err := driver()
	if err != nil {
		return nil, err
	}
	if _, err := LoadNCCL(); err != nil {
		return nil, err
	}
	if err := pinNCCLAlgorithm(); err != nil {
		return nil, err
	}
	var cid C.kiln_nccl_id
	C.memcpy(unsafe.Pointer(&cid), unsafe.Pointer(&id[0]), C.size_t(len(id)))
	var h C.uintptr_t
	var cuRC C.int
	if rc := C.kiln_nccl_comm_init(C.uintptr_t(d.rawc), &h, C.int(size), &cid, C.int(rank), &cuRC); rc != 0 {
		return nil, ncclErr("ncclCommInitRank", rc, cuRC)
	}
	return &NCCLComm{handle: uintptr(h)}, nil
}

// AllreduceSumFloat32 replaces the n floats at p on every rank by their
// sum over the ranks, queued on the stream every kernel runs on.
func (c *NCCLComm) AllreduceSumFloat32(p Ptr, n int) error {
	d, err := driver()
	if err != nil {
		return err
	}
	if err := settle("an NCCL all-reduce"); err != nil { // a step's held-back operations write p (graph.go)
		return err
	}
	var cuRC C.int
	if rc := C.kiln_nccl_allreduce_sum_f32(C.uintptr_t(d.rawc), C.uintptr_t(d.stream), C.uintptr_t(c.handle), C.uintptr_t(p), C.uint64_t(n), &cuRC); rc != 0 {
		return ncclErr("ncclAllReduce", rc, cuRC)
	}
	return nil
}

// Close leaves the communicator.
func (c *NCCLComm) Close() error {
	if c == nil || c.handle == 0 {
		return nil
	}
	rc := C.kiln_nccl_comm_destroy(C.uintptr_t(c.handle))
	c.handle = 0
	if rc != 0 {
		return ncclErr("ncclCommDestroy", rc, 0)
	}
	return nil
}

// driver is the opened real-GPU backend NCCL runs on.
func driver() (*driverBackend, error) {
	mu.Lock()
	defer mu.Unlock()
	if err := ready(); err != nil {
		return nil, err
	}
	return be.(*driverBackend), nil
}

func ncclErr(call string, rc, cuRC C.int) error {
	if rc == -1 {
		return &cudaError{"cuCtxSetCurrent before " + call, int(cuRC)}
	}
	return fmt.Errorf("%s: %s (ncclResult %d)", call, C.GoString(C.kiln_nccl_error_string(rc)), int(rc))
}
