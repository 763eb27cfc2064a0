//go:build cudaemu && !cuda && cgo

package cuda

/*
#cgo CXXFLAGS: -std=c++20 -O1 -g -fno-omit-frame-pointer -Wall -Wno-unused-function -Wno-unknown-pragmas
#cgo LDFLAGS: -lstdc++ -pthread
#cgo noescape kiln_emu_launch
#cgo nocallback kiln_emu_launch
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
int kiln_emu_lookup(const char* name, uintptr_t* handle);
int kiln_emu_names(char* buf, int cap);
int kiln_emu_launch(uintptr_t handle, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                    unsigned by, unsigned bz, unsigned shmem, uint64_t* slots, int nslots);
uintptr_t kiln_emu_malloc(size_t n);
void kiln_emu_free(uintptr_t p);
// Copies go through C so that AddressSanitizer checks the device side (and
// ThreadSanitizer orders them with the launches).
void kiln_emu_htod(uintptr_t dst, const void* src, size_t n);
void kiln_emu_dtoh(void* dst, uintptr_t src, size_t n);
void kiln_emu_dtod(uintptr_t dst, uintptr_t src, size_t n);
void kiln_emu_zero(uintptr_t p, size_t n);
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/kiln-ml/kiln/internal/kernelsrc"
)

func init() {
	newBackend = func() backend { return &emuBackend{} }
	emulated = true
}

// emuBackend runs kernels on the CPU. Its "device memory" is C heap memory,
// so a kernel's out-of-bounds access is AddressSanitizer's to report. Its
// size defaults to 4 GiB of address space (KILN_EMU_MEMORY=bytes to change),
// so out-of-memory handling can be tested too.
type emuBackend struct {
	mu     sync.Mutex
	sizes  map[Ptr]int64
	used   int64
	total  int64
	graphs map[uintptr][]op // built graphs, by handle
	nextG  uintptr
}

// devices is 1, or KILN_EMU_DEVICES: emulated devices for tests of one
// rank per device (each process emulates the one it opens).
func (e *emuBackend) devices() (int, error) {
	s := os.Getenv("KILN_EMU_DEVICES")
	if s == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("KILN_EMU_DEVICES=%q: want a device count", s)
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: KILN_EMU_DEVICES=0", ErrNoDevice)
	}
	return n, nil
}

// emuSourcesSHA is the hash of the kernel sources this emulator was
// generated for (emu_sources_gen.go, go generate ./engine).
var emuSourcesSHA string

// staleKernels says, under go test, whether kernels/ now holds other
// sources than the emulator was generated for: a kernel edited without go
// generate ./engine, whose tests would run the old build from Go's cache.
func staleKernels() error {
	if !testing.Testing() {
		return nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil
	}
	root, err := kernelsrc.Root(wd)
	if err != nil {
		return nil
	}
	sha, err := kernelsrc.SHA(root)
	if err != nil || sha == emuSourcesSHA {
		return nil
	}
	return fmt.Errorf("the CUDA emulator was built for other kernel sources than %s holds (Go's build cache does not see them change): run go generate ./engine", root+"/kernels")
}

func (e *emuBackend) init() (Info, error) {
	if err := staleKernels(); err != nil {
		panic(err) // not a missing device: a skip would hide it
	}
	n, err := e.devices()
	if err != nil {
		return Info{}, err
	}
	if ordinal >= n {
		return Info{}, fmt.Errorf("%w: emulated device %d asked, there are %d (KILN_EMU_DEVICES)", ErrNoDevice, ordinal, n)
	}
	e.sizes = map[Ptr]int64{}
	e.total = 4 << 30
	if s := os.Getenv("KILN_EMU_MEMORY"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v <= 0 {
			return Info{}, fmt.Errorf("KILN_EMU_MEMORY=%q: want a byte count", s)
		}
		e.total = v
	}
	return Info{Backend: "emulator", Name: "CUDA emulator (kernels compiled by g++, run on the CPU)",
		MemoryTotal: e.total, Driver: "none", Capability: "emulated", SMs: 1}, nil
}

func (e *emuBackend) exact() bool { return true }

func (e *emuBackend) alloc(bytes int64) (Ptr, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.used+bytes > e.total {
		return 0, errOOM
	}
	p := Ptr(C.kiln_emu_malloc(C.size_t(bytes)))
	if p == 0 {
		return 0, errOOM
	}
	e.sizes[p] = bytes
	e.used += bytes
	return p, nil
}

func (e *emuBackend) free(p Ptr) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.used -= e.sizes[p]
	delete(e.sizes, p)
	C.kiln_emu_free(C.uintptr_t(p))
	return nil
}

func (e *emuBackend) memInfo() (int64, int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.total - e.used, e.total, nil
}

// emuFault is the error the emulator's copies, memsets and launches return
// while a test has set it (FailDeviceCallsForTest): the real driver fails
// those calls, the emulator's memcpy never does.
var emuFault atomic.Pointer[error]

// FailDeviceCallsForTest makes every later copy, memset and launch fail with
// err, until it is called with nil, so that tests can check that a failing
// device call's error reaches the caller. Emulator builds only.
func FailDeviceCallsForTest(err error) {
	if err == nil {
		emuFault.Store(nil)
		return
	}
	emuFault.Store(&err)
}

func emuFailure() error {
	if p := emuFault.Load(); p != nil {
		return *p
	}
	return nil
}

func (e *emuBackend) htod(dst Ptr, src unsafe.Pointer, n int64) error {
	if err := emuFailure(); err != nil {
		return err
	}
	C.kiln_emu_htod(C.uintptr_t(dst), src, C.size_t(n))
	return nil
}
func (e *emuBackend) dtoh(dst unsafe.Pointer, src Ptr, n int64) error {
	if err := emuFailure(); err != nil {
		return err
	}
	C.kiln_emu_dtoh(dst, C.uintptr_t(src), C.size_t(n))
	return nil
}
func (e *emuBackend) dtod(dst, src Ptr, n int64) error {
	if err := emuFailure(); err != nil {
		return err
	}
	C.kiln_emu_dtod(C.uintptr_t(dst), C.uintptr_t(src), C.size_t(n))
	return nil
}
func (e *emuBackend) memsetZero(p Ptr, n int64) error {
	if err := emuFailure(); err != nil {
		return err
	}
	C.kiln_emu_zero(C.uintptr_t(p), C.size_t(n))
	return nil
}

func (e *emuBackend) function(name string) (uintptr, int, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var h C.uintptr_t
	n := C.kiln_emu_lookup(cname, &h)
	if n < 0 {
		return 0, 0, fmt.Errorf("kernel %s is not compiled into the emulator (add it to cuda/emu_*.cc)", name)
	}
	return uintptr(h), int(n), nil
}

func (e *emuBackend) launch(h uintptr, grid, block Dim3, shmem int, slots *uint64, n int) error {
	if err := emuFailure(); err != nil {
		return err
	}
	rc := C.kiln_emu_launch(C.uintptr_t(h), C.uint(grid.X), C.uint(grid.Y), C.uint(grid.Z),
		C.uint(block.X), C.uint(block.Y), C.uint(block.Z), C.uint(shmem), (*C.uint64_t)(unsafe.Pointer(slots)), C.int(n))
	switch rc {
	case 0:
		return nil
	case 1:
		return errors.New("argument count does not match the kernel")
	default:
		return errors.New("invalid launch configuration")
	}
}

func (e *emuBackend) sync() error { return nil }

// An emulated graph is its operations, copied, run in order at a launch.
func (e *emuBackend) buildGraph(ops []op) (uintptr, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.graphs == nil {
		e.graphs = map[uintptr][]op{}
	}
	e.nextG++
	e.graphs[e.nextG] = append([]op(nil), ops...)
	return e.nextG, nil
}

func (e *emuBackend) updateGraph(g uintptr, i int, o *op) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ops, ok := e.graphs[g]
	if !ok || i < 0 || i >= len(ops) || !o.sameNode(&ops[i]) || o.kind != opLaunch {
		return errors.New("no such kernel node")
	}
	ops[i] = *o
	return nil
}

func (e *emuBackend) launchGraph(g uintptr) error {
	e.mu.Lock()
	ops, ok := e.graphs[g]
	e.mu.Unlock()
	if !ok {
		return errors.New("no such graph")
	}
	for i := range ops {
		if err := ops[i].issue(); err != nil {
			return err
		}
	}
	return nil
}

func (e *emuBackend) dropGraph(g uintptr) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.graphs, g)
}

// The emulator's launches have finished when they return, so its marks are
// readings of the host's monotonic clock.
var emuEpoch = time.Now()

func (e *emuBackend) mark() (mark, error)                      { return mark(time.Since(emuEpoch)), nil }
func (e *emuBackend) between(a, b mark) (time.Duration, error) { return time.Duration(b - a), nil }
func (e *emuBackend) dropMark(mark)                            {}

// EmulatedKernels lists the kernels compiled into the emulator.
func EmulatedKernels() []string {
	buf := make([]byte, 1<<16)
	n := int(C.kiln_emu_names((*C.char)(unsafe.Pointer(&buf[0])), C.int(len(buf))))
	s := strings.TrimRight(string(buf[:min(n, len(buf))]), "\x00")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}
