//go:build cuda && cgo

package cuda

// Where Kiln works around gorgonia.org/cu, the Go binding of the CUDA driver
// API that the driver backend (backend_driver.go) uses to open the device,
// load the module and move memory. Each workaround says why it is needed and
// what would let it go; nothing else in the package reaches past cu's API.

/*
#cgo CFLAGS: -I/usr/local/cuda/include
#define _GNU_SOURCE
#cgo linux LDFLAGS: -ldl
#include <cuda.h>
#include <dlfcn.h>
#include "driver.h"

// 1. The interposed cuInit.
//
// Why: cu calls cuInit(0) in its package init() and, when that fails (no
// GPU, an empty CUDA_VISIBLE_DEVICES, a driver too old), prints a message
// and calls os.Exit(1) before main runs, so a binary built with -tags cuda
// could never fall back to the CPU. This definition of cuInit, in the
// executable, is the one cu's cgo code links to: it calls the driver's own
// cuInit (found with dlsym(RTLD_NEXT)), keeps the result for
// kiln_cuda_init_result, and reports success to its caller. Nothing else in
// cu runs before our backend's init, which checks the kept result first and
// never touches the driver after a failed cuInit.
// When it can go: when cu's init leaves the error to its caller (or does not
// call cuInit at all), or when the backend calls the driver API directly.
static int kiln_cuinit_done;
static CUresult kiln_cuinit_rc = CUDA_ERROR_NOT_INITIALIZED;

CUresult CUDAAPI cuInit(unsigned int flags) {
	if (!kiln_cuinit_done) {
		CUresult (*real)(unsigned int) = (CUresult(*)(unsigned int))dlsym(RTLD_NEXT, "cuInit");
		kiln_cuinit_rc = real ? real(flags) : CUDA_ERROR_NOT_FOUND;
		kiln_cuinit_done = 1;
	}
	return CUDA_SUCCESS;
}

int kiln_cuda_init_result(void) {
	cuInit(0);
	return (int)kiln_cuinit_rc;
}
*/
import "C"

import (
	"errors"
	"reflect"
	"unsafe"

	"gorgonia.org/cu"
)

// 2. cu's handles as raw driver handles.
//
// Why: kernel launches go through kiln_cuda_launch (driver_launch.c), which
// packs each argument at its parameter's size and makes the context current
// in the same C call as cuLaunchKernel; cu's own LaunchKernel allocates per
// launch and leaves the context to the calling thread. cu exports no way to
// get the CUcontext or CUfunction inside its CUContext and Function, so we
// read them through unsafe, after checking at compile time (below) that each
// is exactly one pointer.
// When it can go: when cu exposes the raw handles (or a launch that takes
// packed arguments and a context), or when the backend calls the driver API
// directly.
var (
	_ [unsafe.Sizeof(cu.Function{}) - unsafe.Sizeof(uintptr(0))]struct{}
	_ [unsafe.Sizeof(uintptr(0)) - unsafe.Sizeof(cu.Function{})]struct{}
	_ [unsafe.Sizeof(cu.CUContext{}) - unsafe.Sizeof(uintptr(0))]struct{}
	_ [unsafe.Sizeof(uintptr(0)) - unsafe.Sizeof(cu.CUContext{})]struct{}
)

// rawContext is ctx's CUcontext, for the C launcher.
func rawContext(ctx cu.CUContext) uintptr { return *(*uintptr)(unsafe.Pointer(&ctx)) }

// rawFunction is f's CUfunction, for the C launcher.
func rawFunction(f cu.Function) uintptr { return *(*uintptr)(unsafe.Pointer(&f)) }

// 3. A driver result cu does not know, through reflect.
//
// Why: cu turns a CUresult into its own integer error type (cuResult,
// unexported) and names only the results of the CUDA version it was written
// for. CUDA_ERROR_UNSUPPORTED_PTX_VERSION (a driver older than the PTX in
// our fat binary) is newer than that list, so the only way to recognise it
// is to read the integer inside the unexported type with reflect.
// When it can go: when cu exports its result type or lists that result.

// unsupportedPTX reports whether err (or the error it wraps) is cu's
// error for CUDA_ERROR_UNSUPPORTED_PTX_VERSION.
func unsupportedPTX(err error) bool {
	var r error
	for e := err; e != nil; e = errors.Unwrap(e) {
		r = e
	}
	v := reflect.ValueOf(r)
	return v.Kind() == reflect.Int && v.Int() == int64(C.CUDA_ERROR_UNSUPPORTED_PTX_VERSION)
}
