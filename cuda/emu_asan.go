//go:build cudaemu && !cuda && cgo && asan

package cuda

// Under `go test -asan` the kernel sources are instrumented too, so a kernel
// that runs past a buffer stops at its own source line.

// #cgo CXXFLAGS: -fsanitize=address
import "C"
