//go:build !cgo

package main

import "errors"

// loadLibcuda cannot look for the driver without cgo; such a kiln stays on
// the CPU.
func loadLibcuda() error {
	return errors.New("this kiln was built without cgo and cannot look for the NVIDIA driver (libcuda.so.1)")
}
