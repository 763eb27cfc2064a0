//go:build mpi

package main

/*
#cgo pkg-config: ompi-c
#include <mpi.h>
#include <stdlib.h>

// read_cvar reads an MPI_T control variable into out (zeroed, 8 bytes: wide
// enough for the int and bool variables read here).
static int read_cvar(const char *name, long long *out) {
	int provided, idx, count, err;
	MPI_T_cvar_handle h;
	*out = 0;
	err = MPI_T_init_thread(MPI_THREAD_SINGLE, &provided);
	if (err != MPI_SUCCESS) return err;
	err = MPI_T_cvar_get_index(name, &idx);
	if (err == MPI_SUCCESS) err = MPI_T_cvar_handle_alloc(idx, NULL, &h, &count);
	if (err == MPI_SUCCESS) {
		err = MPI_T_cvar_read(h, out);
		MPI_T_cvar_handle_free(&h);
	}
	MPI_T_finalize();
	return err;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// cvar reads an Open MPI setting as the library sees it (MPI_T), to show
// that the settings the package exports before MPI_Init took effect.
func cvar(name string) (int64, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var v C.longlong
	if err := C.read_cvar(cname, &v); err != C.MPI_SUCCESS {
		return 0, fmt.Errorf("MPI_T reading %s: error %d", name, int(err))
	}
	return int64(v), nil
}
