// Package cuda is Kiln's device layer: one GPU, its memory, and the kernels
// of kernels/*.cu launched by name. The engine's CUDA ops (engine/*_cuda.go)
// are written once against it and run on either backend:
//
//   - the real driver (build tag cuda, cgo, gorgonia.org/cu; needs only
//     libcuda.so.1 at run time), loading the fat binary `make kernels` builds;
//   - the emulator (build tag cudaemu): the same kernel sources compiled by
//     g++ under kernels/cuda_emu.h, device memory on the heap. CI runs every
//     kernel test this way, with AddressSanitizer (`make test-kernels`).
//
// A plain build has neither, and Init says so. Launches, uploads, memsets
// and copies are serialised on one stream (a GPU's is one Kiln creates);
// the engine's ops are synchronous from Go's point of view only where they
// read results back.
package cuda

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
	"unsafe"
)

// Ptr is a device address.
type Ptr uintptr

// Dim3 is a grid or block size.
type Dim3 struct{ X, Y, Z uint32 }

// D1 is a one-dimensional Dim3.
func D1(x int) Dim3 { return Dim3{uint32(x), 1, 1} }

// Info describes the device a process runs on.
type Info struct {
	Backend     string // "cuda" or "emulator"
	Name        string
	MemoryTotal int64
	MemoryFree  int64
	Driver      string
	Capability  string // "9.0"
	SMs         int
	Ordinal     int // its index among the visible devices (SelectDevice)
	Kernels     int // kernels loaded (every registered name was found)
	Fatbin      string
}

// ErrNotBuilt: this binary has no CUDA backend.
var ErrNotBuilt = errors.New("this kiln was built without CUDA (build with `make build GPU=1` or -tags cuda)")

// ErrNoDevice: the driver is there but it sees no usable GPU.
var ErrNoDevice = errors.New("no CUDA device found")

// OutOfMemoryError is an allocation the device could not satisfy.
type OutOfMemoryError struct {
	Requested, Free, Total, Cached int64
}

func (e *OutOfMemoryError) Error() string {
	return fmt.Sprintf("out of GPU memory: asked for %s, %s free of %s (%s held in Kiln's cache, already released); try a smaller --batch",
		human(e.Requested), human(e.Free), human(e.Total), human(e.Cached))
}

func human(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

// backend is what a build provides: backend_driver.go (tag cuda) or
// backend_emu.go (tag cudaemu); a plain build has none.
type backend interface {
	init() (Info, error) // opens device ordinal
	devices() (int, error)
	alloc(bytes int64) (Ptr, error) // returns errOOM when the device is full
	free(p Ptr) error
	memInfo() (free, total int64, err error)
	htod(dst Ptr, src unsafe.Pointer, bytes int64) error
	dtoh(dst unsafe.Pointer, src Ptr, bytes int64) error
	dtod(dst, src Ptr, bytes int64) error
	memsetZero(p Ptr, bytes int64) error
	// function resolves a kernel; nparams is -1 where the backend cannot tell.
	function(name string) (h uintptr, nparams int, err error)
	launch(h uintptr, grid, block Dim3, shmem int, slots *uint64, n int) error
	sync() error
	// mark records a point on the stream; between, after a sync, is the
	// device time from a to b; dropMark frees a mark (the profiler's).
	mark() (mark, error)
	between(a, b mark) (time.Duration, error)
	dropMark(m mark)
	// exact reports whether allocations must not be rounded up (the
	// emulator: AddressSanitizer sees one byte past a buffer).
	exact() bool
	// A graph of recorded operations (graph.go): built once, its kernel
	// node i given op's arguments, launched on the stream, dropped.
	buildGraph(ops []op) (uintptr, error)
	updateGraph(g uintptr, i int, o *op) error
	launchGraph(g uintptr) error
	dropGraph(g uintptr)
}

var errOOM = errors.New("out of device memory")

// newBackend is set by the build's backend file (backend_driver.go with the
// cuda tag, backend_emu.go with cudaemu); a plain build leaves it nil.
var newBackend func() backend

// Kernel is a kernel function by name, resolved when the device opens.
type Kernel struct {
	Name    string
	h       uintptr
	nparams int
	err     error // why a kernel declared after Init did not resolve
}

var (
	mu       sync.Mutex
	kernels  = map[string]*Kernel{}
	be       backend
	info     Info
	initErr  error
	initDone bool
)

// K declares a kernel the engine will launch (call it in a package-level
// var). Every declared kernel is looked up when the device opens, so a
// missing one fails at start, not in the middle of training.
func K(name string) *Kernel {
	mu.Lock()
	defer mu.Unlock()
	if k, ok := kernels[name]; ok {
		return k
	}
	k := &Kernel{Name: name, nparams: -1}
	kernels[name] = k
	if be != nil { // declared after the device opened: resolve now, and fail at launch
		k.h, k.nparams, k.err = be.function(name)
	}
	return k
}

// Declared returns the names of every declared kernel, sorted.
func Declared() []string {
	mu.Lock()
	defer mu.Unlock()
	names := make([]string, 0, len(kernels))
	for n := range kernels {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Built reports whether this binary has a CUDA backend at all.
func Built() bool { return newBackend != nil }

// emulated is set by the emulator's backend (the cudaemu build).
var emulated bool

// Emulated reports whether the backend is the emulator, which runs the
// kernels on the CPU.
func Emulated() bool { return emulated }

// Init opens the device once and resolves every declared kernel. Later calls
// return the first call's result.
func Init() (Info, error) {
	mu.Lock()
	defer mu.Unlock()
	if initDone {
		return info, initErr
	}
	initDone = true
	if newBackend == nil {
		initErr = ErrNotBuilt
		return info, initErr
	}
	b := newBackend()
	inf, err := b.init()
	if err != nil {
		initErr = err
		return info, err
	}
	var missing []string
	for name, k := range kernels {
		h, np, err := b.function(name)
		if err != nil {
			missing = append(missing, name)
			continue
		}
		k.h, k.nparams = h, np
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		initErr = fmt.Errorf("the kernel module lacks %d kernel(s) the engine needs: %v (rebuild with `make kernels`)", len(missing), missing)
		return info, initErr
	}
	inf.Kernels = len(kernels)
	inf.Ordinal = ordinal
	be, info = b, inf
	return info, nil
}

// Ready reports whether Init succeeded.
func Ready() bool {
	mu.Lock()
	defer mu.Unlock()
	return be != nil
}

// Device returns what Init found.
func Device() Info {
	mu.Lock()
	defer mu.Unlock()
	i := info
	if be == nil {
		return i
	}
	// Info has no room for an error: a device that cannot report its memory
	// shows none free, and the next device call returns the driver's error.
	if free, total, err := be.memInfo(); err == nil {
		i.MemoryFree, i.MemoryTotal = free, total
	} else {
		i.MemoryFree = 0
	}
	return i
}

func ready() error {
	if be == nil {
		if initErr != nil {
			return initErr
		}
		return errors.New("cuda: device not opened (call cuda.Init)")
	}
	return nil
}

// maxArgs bounds a kernel's parameter count.
const maxArgs = 24

// Args packs kernel arguments, each in an 8-byte slot that the kernel reads
// at its parameter's exact size (4 bytes for int and float, 8 for pointers and
// long long). Build one on the stack per launch.
type Args struct {
	slots [maxArgs]uint64
	n     int
	err   error
}

func (a *Args) put(v uint64) *Args {
	if a.n == maxArgs {
		a.err = fmt.Errorf("more than %d kernel arguments", maxArgs)
		return a
	}
	a.slots[a.n] = v
	a.n++
	return a
}

// Ptr adds a device pointer.
func (a *Args) Ptr(p Ptr) *Args { return a.put(uint64(p)) }

// Int adds a 32-bit int; a value that does not fit is an error at launch.
func (a *Args) Int(v int) *Args {
	if v < math.MinInt32 || v > math.MaxInt32 {
		a.err = fmt.Errorf("kernel argument %d does not fit in an int", v)
	}
	return a.put(uint64(uint32(int32(v))))
}

// Bool adds a flag as a 32-bit int: 1 or 0.
func (a *Args) Bool(v bool) *Args {
	if v {
		return a.put(1)
	}
	return a.put(0)
}

// I64 adds a 64-bit int (long long).
func (a *Args) I64(v int64) *Args { return a.put(uint64(v)) }

// U64 adds an unsigned 64-bit value (unsigned long long).
func (a *Args) U64(v uint64) *Args { return a.put(v) }

// F32 adds a float.
func (a *Args) F32(v float32) *Args { return a.put(uint64(math.Float32bits(v))) }

// Launch runs kernel k on grid×block threads with shmem bytes of dynamic
// shared memory.
func Launch(k *Kernel, grid, block Dim3, shmem int, a *Args) error {
	if a.err != nil {
		return fmt.Errorf("launch %s: %w", k.Name, a.err)
	}
	if err := ready(); err != nil {
		return err
	}
	if k.err != nil {
		return fmt.Errorf("launch %s: %w", k.Name, k.err)
	}
	if k.h == 0 {
		return fmt.Errorf("launch %s: no such kernel in the module (rebuild with `make kernels`)", k.Name)
	}
	if k.nparams >= 0 && k.nparams != a.n {
		return fmt.Errorf("launch %s: %d arguments packed, the kernel takes %d", k.Name, a.n, k.nparams)
	}
	if grid.X == 0 || grid.Y == 0 || grid.Z == 0 {
		return nil // nothing to do: an empty tensor
	}
	if g := active.Load(); g != nil {
		o := op{kind: opLaunch, k: k, grid: grid, block: block, shmem: shmem, n: a.n, slots: a.slots}
		if held, err := g.take(&o); held || err != nil {
			return err
		}
	}
	var err error
	if profiling.Load() {
		err = profiledLaunch(func() error { return be.launch(k.h, grid, block, shmem, &a.slots[0], a.n) }, k)
	} else {
		err = be.launch(k.h, grid, block, shmem, &a.slots[0], a.n)
	}
	if err != nil {
		return fmt.Errorf("launch %s grid %v block %v: %w", k.Name, grid, block, err)
	}
	return nil
}

// Params is the number of parameters the kernel takes, or -1 where the
// backend cannot tell (a driver older than CUDA 12.4) or it is not loaded.
func (k *Kernel) Params() int { return k.nparams }

// Blocks is the number of blocks of size block that cover n items, capped
// at max (kernels loop with a grid stride).
func Blocks(n, block, max int) int {
	b := (n + block - 1) / block
	if b > max {
		b = max
	}
	if b < 1 {
		b = 1
	}
	return b
}

// Synchronize waits for every launched kernel to finish.
func Synchronize() error {
	if err := ready(); err != nil {
		return err
	}
	if err := settle("Synchronize"); err != nil {
		return err
	}
	return be.sync()
}

// Copies. Sizes are in bytes.

// maxStaged is the largest upload the GPU backend stages through pinned
// memory without waiting (backend_driver.go's staging); larger ones wait.
const maxStaged = 16 << 20

// CopyHtoD copies host memory to the device. src may be reused as soon as it
// returns; on a GPU an upload of up to 16 MiB may return before the device
// has the data (it is queued in order with the launches), so it does not
// wait for the kernels before it.
func CopyHtoD(dst Ptr, src unsafe.Pointer, bytes int64) error {
	if err := ready(); err != nil {
		return err
	}
	if bytes == 0 {
		return nil
	}
	if err := settleFor(dst, bytes); err != nil {
		return err
	}
	count(&prof.uploads)
	return be.htod(dst, src, bytes)
}

// CopyDtoH copies device memory to the host.
func CopyDtoH(dst unsafe.Pointer, src Ptr, bytes int64) error {
	if err := ready(); err != nil {
		return err
	}
	if bytes == 0 {
		return nil
	}
	if err := settle("a copy to the host"); err != nil {
		return err
	}
	count(&prof.copies)
	return be.dtoh(dst, src, bytes)
}

// CopyDtoD copies within the device.
func CopyDtoD(dst, src Ptr, bytes int64) error {
	if err := ready(); err != nil {
		return err
	}
	if bytes == 0 || dst == src {
		return nil
	}
	if g := active.Load(); g != nil {
		o := op{kind: opCopy, dst: dst, src: src, bytes: bytes}
		if held, err := g.take(&o); held || err != nil {
			return err
		}
	}
	return be.dtod(dst, src, bytes)
}

// Zero sets bytes of device memory to zero.
func Zero(p Ptr, bytes int64) error {
	if err := ready(); err != nil {
		return err
	}
	if bytes == 0 {
		return nil
	}
	count(&prof.memsets)
	if g := active.Load(); g != nil {
		o := op{kind: opZero, dst: p, bytes: bytes}
		if held, err := g.take(&o); held || err != nil {
			return err
		}
	}
	return be.memsetZero(p, bytes)
}
