//go:build cgo

package main

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

// Loads and unloads libcuda.so.1; returns NULL or dlerror()'s message.
static const char* kiln_probe_libcuda(void) {
	void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
	if (h == NULL) {
		const char* e = dlerror();
		return e ? e : "dlopen failed";
	}
	dlclose(h);
	return NULL;
}
*/
import "C"

import "fmt"

// loadLibcuda checks that the NVIDIA driver's libcuda.so.1 can be loaded,
// as the CUDA build's loader would, without keeping it.
func loadLibcuda() error {
	if e := C.kiln_probe_libcuda(); e != nil {
		return fmt.Errorf("no NVIDIA driver (libcuda.so.1 not found: %s)", C.GoString(e))
	}
	return nil
}
