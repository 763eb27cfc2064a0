//go:build cuda && cgo

package cuda

/*
#cgo CFLAGS: -I/usr/local/cuda/include -Wno-deprecated-declarations
#cgo linux LDFLAGS: -L/usr/local/cuda/lib64/stubs -lcuda -ldl
#cgo noescape kiln_cuda_launch
#cgo nocallback kiln_cuda_launch
#include <cuda.h>
#include "driver.h"
*/
import "C"

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"gorgonia.org/cu"
)

// The real GPU, through the CUDA driver API: gorgonia.org/cu opens the device
// and its primary context, loads the embedded fat binary (fatbin.go) and
// moves memory; kernel launches go through kiln_cuda_launch
// (driver_launch.c), which packs each argument at its parameter's size and
// makes the context current on the calling OS thread in the same C call.
// Where cu falls short (its init, its opaque handles, its list of results)
// the workarounds are in cu_workarounds.go.
//
// The binary links libcuda.so.1, which only the NVIDIA driver provides:
// cmd/kiln starts this build only where that library loads (see
// cmd/kiln/device.go). Where it loads but sees no GPU, cuInit's error comes
// back from Init (kept by the interposed cuInit, cu_workarounds.go) and the
// caller falls back to the CPU.

func init() { newBackend = func() backend { return &driverBackend{} } }

// The C side sizes its parameter array with the same bound as Args.
var (
	_ [C.KILN_MAX_ARGS - maxArgs]struct{}
	_ [maxArgs - C.KILN_MAX_ARGS]struct{}
)

type driverBackend struct {
	dev    cu.Device
	ctx    cu.CUContext
	rawc   uintptr // ctx as the C launcher takes it
	stream uintptr // Kiln's stream (kiln_cuda_stream_create)
	mod    cu.Module
	stage  staging
}

// staging is the ring of pinned host buffers that uploads go through, so
// that an upload queues on the stream and returns without waiting for the
// device (issue 17, item 4): a step's labels and batch indices no longer
// wait for the step before them. Each buffer is reused once the device has
// read its previous upload, so the host runs at most len(slots) uploads
// ahead. Uploads larger than maxStaged (a training set going to the
// device once) are copied synchronously from pageable memory instead of
// pinning that much.
type staging struct {
	mu    sync.Mutex
	slots [4]stagingSlot
	next  int
}

type stagingSlot struct {
	host  unsafe.Pointer // pinned
	bytes int64
	done  uintptr // the event recorded after its last upload
}

// cudaError is a driver call that failed, with the driver's own name for the
// result (CUDA_ERROR_...).
type cudaError struct {
	call string
	rc   int
}

func (e *cudaError) Error() string {
	return fmt.Sprintf("%s: %s (%s)", e.call, C.GoString(C.kiln_cuda_error_name(C.int(e.rc))),
		C.GoString(C.kiln_cuda_error_string(C.int(e.rc))))
}

// cuErr wraps an error of gorgonia.org/cu with the call that made it.
func cuErr(call string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", call, err)
}

// bind locks the goroutine to its OS thread and makes the context current
// there, for the cu calls that follow; unbind releases the thread.
func (d *driverBackend) bind() error {
	runtime.LockOSThread()
	if err := cu.SetCurrentContext(d.ctx); err != nil {
		runtime.UnlockOSThread()
		return cuErr("cuCtxSetCurrent", err)
	}
	return nil
}

func unbind() { runtime.UnlockOSThread() }

// devices counts the GPUs the driver shows this process. Up to a context,
// a failure means no usable GPU here (ErrNoDevice: --device auto falls back
// to the CPU).
func (d *driverBackend) devices() (int, error) {
	if v, ok := os.LookupEnv("CUDA_VISIBLE_DEVICES"); ok && v == "" {
		return 0, fmt.Errorf("%w: CUDA_VISIBLE_DEVICES is set and empty", ErrNoDevice)
	}
	switch rc := int(C.kiln_cuda_init_result()); rc {
	case 0:
	case int(C.CUDA_ERROR_NO_DEVICE):
		return 0, fmt.Errorf("%w: %w", ErrNoDevice, &cudaError{"cuInit", rc})
	default:
		return 0, fmt.Errorf("%w: the NVIDIA driver did not start: %w", ErrNoDevice, &cudaError{"cuInit", rc})
	}
	n, err := cu.NumDevices()
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNoDevice, cuErr("cuDeviceGetCount", err))
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: the driver reports 0 devices", ErrNoDevice)
	}
	return n, nil
}

func (d *driverBackend) init() (Info, error) {
	n, err := d.devices()
	if err != nil {
		return Info{}, err
	}
	if ordinal >= n {
		return Info{}, fmt.Errorf("%w: device %d asked, the driver sees %d (CUDA_VISIBLE_DEVICES=%q)", ErrNoDevice, ordinal, n, os.Getenv("CUDA_VISIBLE_DEVICES"))
	}
	if d.dev, err = cu.GetDevice(ordinal); err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrNoDevice, cuErr(fmt.Sprintf("cuDeviceGet(%d)", ordinal), err))
	}
	if d.ctx, err = d.dev.RetainPrimaryCtx(); err != nil {
		return Info{}, fmt.Errorf("%w: %w (is the GPU in exclusive mode and busy?)", ErrNoDevice, cuErr("cuDevicePrimaryCtxRetain", err))
	}
	d.rawc = rawContext(d.ctx) // cu_workarounds.go
	if err := d.bind(); err != nil {
		return Info{}, err
	}
	defer unbind()
	var st C.uintptr_t
	if rc := C.kiln_cuda_stream_create(C.uintptr_t(d.rawc), &st); rc != 0 {
		return Info{}, &cudaError{"cuStreamCreate", int(rc)}
	}
	d.stream = uintptr(st)

	inf := Info{Backend: "cuda"}
	if inf.Name, err = d.dev.Name(); err != nil {
		return Info{}, cuErr("cuDeviceGetName", err)
	}
	major, minor, err := d.dev.ComputeCapability()
	if err != nil {
		return Info{}, cuErr("cuDeviceGetAttribute(compute capability)", err)
	}
	inf.Capability = fmt.Sprintf("%d.%d", major, minor)
	if inf.SMs, err = d.dev.Attribute(cu.MultiprocessorCount); err != nil {
		return Info{}, cuErr("cuDeviceGetAttribute(multiprocessor count)", err)
	}
	if v := cu.Version(); v > 0 {
		inf.Driver = fmt.Sprintf("CUDA %d.%d", v/1000, v%1000/10)
	}
	if inf.MemoryFree, inf.MemoryTotal, err = cu.MemInfo(); err != nil {
		return Info{}, cuErr("cuMemGetInfo", err)
	}
	inf.Fatbin = fmt.Sprintf("%s, sha256 %x", human(int64(len(fatbin))), sha256.Sum256([]byte(fatbin)))
	if len(fatbin) == 0 {
		return Info{}, errors.New("the embedded kernel module (cuda/kernels.fatbin) is empty: rebuild with `make kernels`")
	}
	if d.mod, err = cu.LoadData(fatbin); err != nil {
		err = fmt.Errorf("loading the kernels (%s) on %s (compute %s): %w", inf.Fatbin, inf.Name, inf.Capability, cuErr("cuModuleLoadData", err))
		if tooOld(err) {
			// A GPU older than sm_80, or a driver too old for the PTX:
			// not a usable device for this build.
			return Info{}, fmt.Errorf("%w: %w (the kernels are built for sm_80 and sm_90, with PTX for compute_90 that needs a CUDA 11.8 driver or newer)", ErrNoDevice, err)
		}
		return Info{}, err
	}
	return inf, nil
}

// tooOld reports whether a module load failed because the GPU or the driver
// cannot run this build's code (rather than a damaged module).
func tooOld(err error) bool {
	if errors.Is(err, cu.NoBinaryForGpu) || errors.Is(err, cu.InvalidPtx) {
		return true
	}
	return unsupportedPTX(err) // newer than cu's list of results: cu_workarounds.go
}

func (d *driverBackend) exact() bool { return false }

func (d *driverBackend) alloc(bytes int64) (Ptr, error) {
	if err := d.bind(); err != nil {
		return 0, err
	}
	defer unbind()
	p, err := cu.MemAlloc(bytes)
	if err == cu.OutOfMemory {
		return 0, errOOM
	}
	if err != nil {
		return 0, cuErr(fmt.Sprintf("cuMemAlloc(%s)", human(bytes)), err)
	}
	return Ptr(p), nil
}

func (d *driverBackend) free(p Ptr) error {
	if err := d.bind(); err != nil {
		return err
	}
	defer unbind()
	return cuErr("cuMemFree", cu.MemFree(cu.DevicePtr(p)))
}

func (d *driverBackend) memInfo() (free, total int64, err error) {
	if err := d.bind(); err != nil {
		return 0, 0, err
	}
	defer unbind()
	free, total, err = cu.MemInfo()
	return free, total, cuErr("cuMemGetInfo", err)
}

// htod stages bytes up to maxStaged through pinned memory and returns
// before the device has them (src may be reused at once: it was copied);
// a larger upload goes synchronously.
func (d *driverBackend) htod(dst Ptr, src unsafe.Pointer, bytes int64) error {
	if bytes > maxStaged {
		if rc := C.kiln_cuda_htod(C.uintptr_t(d.rawc), C.uintptr_t(d.stream), C.uintptr_t(dst), src, C.size_t(bytes)); rc != 0 {
			return &cudaError{"cuMemcpyHtoDAsync", int(rc)}
		}
		return nil
	}
	st := &d.stage
	st.mu.Lock()
	defer st.mu.Unlock()
	slot := &st.slots[st.next]
	st.next = (st.next + 1) % len(st.slots)
	if slot.bytes < bytes {
		if err := d.growSlot(slot, bytes); err != nil {
			return err
		}
	}
	if rc := C.kiln_cuda_stage_upload(C.uintptr_t(d.rawc), C.uintptr_t(d.stream), slot.host, C.uintptr_t(slot.done),
		C.uintptr_t(dst), src, C.size_t(bytes)); rc != 0 {
		return &cudaError{"cuMemcpyHtoDAsync", int(rc)}
	}
	return nil
}

// growSlot replaces a staging buffer with one of at least bytes (rounded up
// to a power of two from 64 KiB, so that a few sizes settle it).
func (d *driverBackend) growSlot(slot *stagingSlot, bytes int64) error {
	if slot.host != nil {
		C.kiln_cuda_stage_free(C.uintptr_t(d.rawc), slot.host, C.uintptr_t(slot.done))
		*slot = stagingSlot{}
	}
	size := int64(64 << 10)
	for size < bytes {
		size *= 2
	}
	var host unsafe.Pointer
	var done C.uintptr_t
	if rc := C.kiln_cuda_stage_alloc(C.uintptr_t(d.rawc), C.size_t(size), &host, &done); rc != 0 {
		return &cudaError{fmt.Sprintf("cuMemAllocHost(%s)", human(size)), int(rc)}
	}
	*slot = stagingSlot{host: host, bytes: size, done: uintptr(done)}
	return nil
}

// dtoh waits for the stream to reach the copy and for the copy itself.
func (d *driverBackend) dtoh(dst unsafe.Pointer, src Ptr, bytes int64) error {
	if rc := C.kiln_cuda_dtoh(C.uintptr_t(d.rawc), C.uintptr_t(d.stream), dst, C.uintptr_t(src), C.size_t(bytes)); rc != 0 {
		return &cudaError{"cuMemcpyDtoHAsync", int(rc)}
	}
	return nil
}

func (d *driverBackend) dtod(dst, src Ptr, bytes int64) error {
	if rc := C.kiln_cuda_dtod(C.uintptr_t(d.rawc), C.uintptr_t(d.stream), C.uintptr_t(dst), C.uintptr_t(src), C.size_t(bytes)); rc != 0 {
		return &cudaError{"cuMemcpyDtoDAsync", int(rc)}
	}
	return nil
}

func (d *driverBackend) memsetZero(p Ptr, bytes int64) error {
	if rc := C.kiln_cuda_zero(C.uintptr_t(d.rawc), C.uintptr_t(d.stream), C.uintptr_t(p), C.size_t(bytes)); rc != 0 {
		return &cudaError{"cuMemsetD8Async", int(rc)}
	}
	return nil
}

// function finds a kernel in the module and counts its parameters where the
// driver can (cuFuncGetParamInfo, 12.4 and later: a driver older than that
// gives -1, and the argument count is the launch site's to get right).
func (d *driverBackend) function(name string) (uintptr, int, error) {
	if err := d.bind(); err != nil {
		return 0, -1, err
	}
	defer unbind()
	f, err := d.mod.Function(name)
	if err != nil {
		return 0, -1, cuErr(fmt.Sprintf("cuModuleGetFunction(%s)", name), err)
	}
	h := rawFunction(f) // cu_workarounds.go
	return h, int(C.kiln_cuda_param_count(C.uintptr_t(h))), nil
}

func (d *driverBackend) launch(h uintptr, grid, block Dim3, shmem int, slots *uint64, n int) error {
	rc := C.kiln_cuda_launch(C.uintptr_t(d.rawc), C.uintptr_t(d.stream), C.uintptr_t(h), C.uint(grid.X), C.uint(grid.Y), C.uint(grid.Z),
		C.uint(block.X), C.uint(block.Y), C.uint(block.Z), C.uint(shmem), (*C.uint64_t)(unsafe.Pointer(slots)), C.int(n))
	if rc != 0 {
		return &cudaError{"cuLaunchKernel", int(rc)}
	}
	return nil
}

// The profiler's marks are CUDA events recorded on the launch stream.
func (d *driverBackend) mark() (mark, error) {
	var ev C.uintptr_t
	if rc := C.kiln_cuda_event_record(C.uintptr_t(d.rawc), C.uintptr_t(d.stream), &ev); rc != 0 {
		return 0, &cudaError{"cuEventRecord", int(rc)}
	}
	return mark(ev), nil
}

func (d *driverBackend) between(a, b mark) (time.Duration, error) {
	var ms C.float
	if rc := C.kiln_cuda_event_elapsed(C.uintptr_t(d.rawc), C.uintptr_t(a), C.uintptr_t(b), &ms); rc != 0 {
		return 0, &cudaError{"cuEventElapsedTime", int(rc)}
	}
	return time.Duration(float64(ms) * float64(time.Millisecond)), nil
}

func (d *driverBackend) dropMark(m mark) {
	C.kiln_cuda_event_destroy(C.uintptr_t(d.rawc), C.uintptr_t(m))
}

func (d *driverBackend) sync() error {
	if err := d.bind(); err != nil {
		return err
	}
	defer unbind()
	return cuErr("cuCtxSynchronize", cu.Synchronize())
}

// cOp is o as kiln_cuda_graph_build takes it.
func cOp(o *op) C.kiln_graph_op {
	c := C.kiln_graph_op{kind: C.int(o.kind), n: C.int(o.n), dst: C.uintptr_t(o.dst), src: C.uintptr_t(o.src), bytes: C.size_t(o.bytes)}
	if o.kind == opLaunch {
		c.fn = C.uintptr_t(o.k.h)
		c.grid = [3]C.uint{C.uint(o.grid.X), C.uint(o.grid.Y), C.uint(o.grid.Z)}
		c.block = [3]C.uint{C.uint(o.block.X), C.uint(o.block.Y), C.uint(o.block.Z)}
		c.shmem = C.uint(o.shmem)
		for i, v := range o.slots {
			c.slots[i] = C.uint64_t(v)
		}
	}
	return c
}

func (d *driverBackend) buildGraph(ops []op) (uintptr, error) {
	if len(ops) == 0 {
		return 0, errors.New("an empty graph")
	}
	cops := make([]C.kiln_graph_op, len(ops))
	for i := range ops {
		cops[i] = cOp(&ops[i])
	}
	var g C.uintptr_t
	if rc := C.kiln_cuda_graph_build(C.uintptr_t(d.rawc), &cops[0], C.int(len(cops)), &g); rc != 0 {
		return 0, &cudaError{"cuGraphInstantiate", int(rc)}
	}
	return uintptr(g), nil
}

func (d *driverBackend) updateGraph(g uintptr, i int, o *op) error {
	c := cOp(o)
	if rc := C.kiln_cuda_graph_update(C.uintptr_t(d.rawc), C.uintptr_t(g), C.int(i), &c); rc != 0 {
		return &cudaError{"cuGraphExecKernelNodeSetParams", int(rc)}
	}
	return nil
}

func (d *driverBackend) launchGraph(g uintptr) error {
	if rc := C.kiln_cuda_graph_launch(C.uintptr_t(d.rawc), C.uintptr_t(d.stream), C.uintptr_t(g)); rc != 0 {
		return &cudaError{"cuGraphLaunch", int(rc)}
	}
	return nil
}

func (d *driverBackend) dropGraph(g uintptr) {
	C.kiln_cuda_graph_destroy(C.uintptr_t(d.rawc), C.uintptr_t(d.stream), C.uintptr_t(g))
}
