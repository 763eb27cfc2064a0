package engine

import (
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/kiln-ml/kiln/cuda"
)

// Tensors on the GPU. A CUDA tensor is float32 only (float64 exists for the
// CPU gradient checks) and its data is device memory from cuda's caching
// allocator; views made by Reshape, Rows and View share it.
//
// Device memory has one owner and goes back to the cache at a known point,
// never when the garbage collector gets round to it (a GPU has no swap, and
// a step that allocates must find the same blocks free every time):
//   - the tensor NewOn (To, Clone, EnsureOn, EnsureLike) returned owns the
//     memory and frees it with Release; a view's Release does nothing, so
//     code that holds views of other tensors may release them without
//     knowing which they are;
//   - EnsureOn and EnsureLike release the buffer they replace, so a layer's
//     buffers (its own, through these two) follow its input's shape without
//     piling up, and a buffer reused from step to step stays reused;
//   - whoever made a tensor otherwise releases it: layers.Release frees a
//     model's parameters, gradients and buffers, the optimisers their state,
//     the trainer its batch uploads and results (trainer.Trainer.Release);
//   - argmax indices kept on the GPU belong to the slice's owner, which
//     releases them with ReleaseArgmax (devindex.go).
//
// A tensor nobody releases keeps its memory to the end of the process.
// Memory released is not touched again by the engine: a released buffer
// passed to EnsureOn is replaced, not reused, and KILN_CUDA_NOCACHE=1 makes
// cuda.Free return it to the device at once, so that AddressSanitizer (the
// emulator under `make test-kernels`) reports any use after release.

// devMem is device memory shared by a tensor and its views.
type devMem struct {
	ptr      cuda.Ptr
	bytes    int64
	owner    *Tensor // the one tensor whose Release frees it
	released bool
}

func newDevMem(bytes int64) (*devMem, error) {
	p, err := cuda.Alloc(bytes)
	if err != nil {
		return nil, err
	}
	return &devMem{ptr: p, bytes: bytes}, nil
}

// OpenDevice resolves a device choice. For CUDA it opens the GPU (or the
// emulator in a cudaemu build) and returns what it found; for CPU it does
// nothing.
func OpenDevice(d Device) (cuda.Info, error) {
	if d != CUDA {
		return cuda.Info{}, nil
	}
	return cuda.Init()
}

// NewOn returns a zeroed tensor on device d.
func NewOn(d Device, dt DType, shape ...int) (*Tensor, error) {
	if d == CPU {
		return New(dt, shape...), nil
	}
	if !validShape(shape) {
		return nil, fmt.Errorf("engine.NewOn: bad shape %v", slices.Clone(shape)) // cloned: shape must not escape
	}
	if dt != Float32 {
		return nil, fmt.Errorf("engine.NewOn: %v tensors live on the CPU only (CUDA is float32): %w", dt, ErrNoKernel)
	}
	if _, err := cuda.Init(); err != nil {
		return nil, err
	}
	n := numel(shape)
	m, err := newDevMem(int64(4 * n))
	if err != nil {
		return nil, err
	}
	if err := cuda.Zero(m.ptr, int64(4*n)); err != nil {
		cuda.Free(m.ptr, m.bytes)
		return nil, err
	}
	t := &Tensor{shape: append([]int(nil), shape...), dtype: Float32, device: CUDA, mem: m}
	m.owner = t
	return t, nil
}

// EnsureOn returns t when it already matches like's device and dtype and has
// the given shape, and a new zeroed tensor there otherwise, releasing t: it
// is Ensure for layers whose buffers follow their input to whatever device
// it is on, and t must be the caller's own buffer.
func EnsureOn(t, like *Tensor, shape ...int) (*Tensor, error) {
	if t != nil && t.dtype == like.dtype && t.device == like.device && sameShape(t.shape, shape) && !t.Released() {
		return t, nil
	}
	t.Release()
	return NewOn(like.device, like.dtype, shape...)
}

// To returns t on device d: t itself when it is already there, a copy
// otherwise (float64 data becomes float32 on the GPU).
func (t *Tensor) To(d Device) (*Tensor, error) {
	if t.device == d {
		return t, nil
	}
	dt := t.dtype
	if d == CUDA {
		dt = Float32
	}
	c, err := NewOn(d, dt, t.shape...)
	if err != nil {
		return nil, err
	}
	if err := c.CopyFrom(t); err != nil {
		c.Release()
		return nil, err
	}
	return c, nil
}

// Release gives a CUDA tensor's memory back to the cache now. Only the
// tensor that owns the memory (the one NewOn returned) releases it; for a
// view, a CPU tensor or nil it does nothing, as it does the second time.
// Neither the tensor nor any view of it may be used on the device
// afterwards.
func (t *Tensor) Release() {
	if t == nil || t.mem == nil || t.mem.owner != t || t.mem.released {
		return
	}
	t.mem.released = true
	cuda.Free(t.mem.ptr, t.mem.bytes)
}

// Released reports whether t's device memory has been released (by t or
// by the tensor it views).
func (t *Tensor) Released() bool { return t != nil && t.mem != nil && t.mem.released }

// ReleaseScratch gives back the scratch ops keep between calls so a steady
// step allocates nothing: on the device the cross-entropy's labels and
// per-row results, sized by the largest batch seen, and the multi-tensor
// optimiser steps' chunk tables; on the CPU the free list of column and
// partial-sum buffers (to the garbage collector). The next op that needs
// it allocates it again. Trainer.Release calls it: with it, releasing the
// last model returns every byte.
func ReleaseScratch() {
	releaseXentScratch()
	releaseOptimTables()
	releaseCPUScratch()
}

// Drop releases each buffer and forgets it (sets it to nil), so that the
// next EnsureLike makes a new one: how a layer frees the buffers it owns.
func Drop(bufs ...**Tensor) {
	for _, b := range bufs {
		(*b).Release()
		*b = nil
	}
}

func (t *Tensor) dptr() cuda.Ptr {
	if t.mem == nil {
		return 0
	}
	return t.mem.ptr + cuda.Ptr(4*t.off)
}

// EnsureLike is Ensure for a tensor that follows like's device and dtype:
// the way layers keep their buffers wherever their input lives. When device
// memory runs out it returns a tensor that carries the error, and the first
// op given it returns that error, so layers need no extra error paths. The
// buffer t it replaces is released (see EnsureOn).
func EnsureLike(t, like *Tensor, shape ...int) *Tensor {
	if like.device == CPU {
		if t != nil && t.device == CUDA {
			t.Release() // the model moved back to the CPU
		}
		return Ensure(t, like.dtype, shape...)
	}
	r, err := EnsureOn(t, like, shape...)
	if err != nil {
		return &Tensor{shape: append([]int(nil), shape...), dtype: like.dtype, device: like.device, err: err}
	}
	return r
}

// Err is the allocation error an EnsureLike tensor carries (nil normally).
func (t *Tensor) Err() error { return t.err }

// Rows returns a view of rows [start, start+n) along axis 0, sharing t's data.
func (t *Tensor) Rows(start, n int) (*Tensor, error) {
	if len(t.shape) == 0 || start < 0 || n < 0 || start+n > t.shape[0] {
		return nil, shapeErr("Rows", fmt.Sprintf("rows [%d,%d) out of range", start, start+n), "x", t)
	}
	row := 1
	for _, d := range t.shape[1:] {
		row *= d
	}
	shape := append([]int{n}, t.shape[1:]...)
	v := &Tensor{shape: shape, dtype: t.dtype, device: t.device, mem: t.mem, off: t.off + start*row, err: t.err}
	switch {
	case t.device == CUDA:
	case t.dtype == Float64:
		v.f64 = t.f64[start*row : (start+n)*row]
	default:
		v.f32 = t.f32[start*row : (start+n)*row]
	}
	return v, nil
}

// RowsView is Rows into a tensor kept by the caller: it returns v when v
// already is that view, so a layer slicing the same rows every step
// allocates nothing.
func (t *Tensor) RowsView(v *Tensor, start, n int) (*Tensor, error) {
	if v != nil && len(t.shape) > 0 && v.dtype == t.dtype && v.device == t.device && len(v.shape) == len(t.shape) &&
		v.shape[0] == n && sameShape(v.shape[1:], t.shape[1:]) && start >= 0 && start+n <= t.shape[0] {
		row := t.Len() / max(t.shape[0], 1)
		switch {
		case t.device == CUDA:
			if v.mem == t.mem && v.off == t.off+start*row {
				return v, nil
			}
		case t.dtype == Float64:
			if len(v.f64) == n*row && (n*row == 0 || &v.f64[0] == &t.f64[start*row]) {
				return v, nil
			}
		default:
			if len(v.f32) == n*row && (n*row == 0 || &v.f32[0] == &t.f32[start*row]) {
				return v, nil
			}
		}
	}
	return t.Rows(start, n)
}

// ToCPU copies src into dst on the CPU, reusing dst when it has src's shape
// and dtype (float32 for a CUDA src), and returns it. For metrics and
// checkpoints of a model on the GPU; a CPU src is returned as it is.
func ToCPU(dst, src *Tensor) (*Tensor, error) {
	if src.device == CPU {
		return src, nil
	}
	dst = Ensure(dst, Float32, src.shape...)
	return dst, dst.copyCUDA(src)
}

// copyCUDA copies between any two devices, float32 on the device side.
func (t *Tensor) copyCUDA(src *Tensor) error {
	n := int64(t.Len())
	if n == 0 {
		return nil
	}
	switch {
	case t.device == CUDA && src.device == CUDA:
		return cuda.CopyDtoD(t.dptr(), src.dptr(), 4*n)
	case t.device == CUDA: // upload
		data := src.f32
		if src.dtype == Float64 {
			data = make([]float32, n)
			for i, v := range src.f64 {
				data[i] = float32(v)
			}
		}
		return cuda.CopyHtoD(t.dptr(), unsafe.Pointer(&data[0]), 4*n)
	default: // download
		if t.dtype == Float32 {
			return cuda.CopyDtoH(unsafe.Pointer(&t.f32[0]), src.dptr(), 4*n)
		}
		tmp := make([]float32, n)
		if err := cuda.CopyDtoH(unsafe.Pointer(&tmp[0]), src.dptr(), 4*n); err != nil {
			return err
		}
		for i, v := range tmp {
			t.f64[i] = float64(v)
		}
		return nil
	}
}

// host returns a CPU copy of a CUDA tensor (t itself on the CPU). A
// download that fails leaves NaN in the copy, so Values, Dense and At show
// it, and the error in it, so As, Clone and the next op return it.
func (t *Tensor) host() *Tensor {
	if t.device == CPU {
		return t
	}
	h := New(Float32, t.shape...)
	err := t.err
	if err == nil {
		err = h.copyCUDA(t)
	}
	if err != nil {
		h.err = fmt.Errorf("copy %v to the CPU: %w", t.shape, err)
		for i := range h.f32 {
			h.f32[i] = float32(math.NaN())
		}
	}
	return h
}
