//go:build cudaemu && !cuda && cgo && kilntsan

package cuda

// With the kilntsan tag (make test-kernels-race) the kernel sources run
// under ThreadSanitizer: the emulator plays each CUDA thread of a block on
// its own OS thread, so a missing barrier is a data race it reports at the
// kernel's line. emu_runtime.cc orders the calls from Go and sets the
// defaults (__tsan_default_options).

// #cgo CXXFLAGS: -fsanitize=thread
// #cgo LDFLAGS: -fsanitize=thread
import "C"
