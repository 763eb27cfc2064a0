package engine

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/kiln-ml/kiln/cuda"
)

// Argmax indices on the GPU. The max-pooling ops take their argmax as a host
// []int32 (the CPU API, kept for both devices). A GPU forward pass keeps the
// indices in device memory attached to the slice's backing array and does not
// write the slice: copying them to the host and back every step would stall
// the GPU for nothing. The GPU backward pass finds them through the same
// slice. ArgmaxToHost copies the indices into the slice for whoever wants to
// read them; a backward pass given a slice no GPU forward pass wrote uploads
// it.
//
// The device indices belong to whoever owns the slice (the pooling layer),
// which frees them with ReleaseArgmax when it replaces the slice or is
// released itself: the attachment keeps the slice's backing array reachable
// until then. A slice reused from step to step (the same first element)
// keeps its device buffer, so a training step allocates nothing here.

type deviceIndex struct {
	ptr cuda.Ptr
	n   int
}

// deviceIndices maps a slice's first element to its device indices.
var deviceIndices = struct {
	sync.Mutex
	m map[*int32]*deviceIndex
}{m: map[*int32]*deviceIndex{}}

// indicesOnDevice returns the device buffer attached to idx (non-empty),
// attaching one first if there is none or it is too small.
func indicesOnDevice(idx []int32) (cuda.Ptr, error) {
	key := &idx[0]
	deviceIndices.Lock()
	defer deviceIndices.Unlock()
	e := deviceIndices.m[key]
	if e != nil && e.n >= len(idx) {
		return e.ptr, nil
	}
	p, err := cuda.Alloc(int64(4 * len(idx)))
	if err != nil {
		return 0, err
	}
	if e != nil {
		cuda.Free(e.ptr, int64(4*e.n))
		e.ptr, e.n = p, len(idx)
		return p, nil
	}
	deviceIndices.m[key] = &deviceIndex{ptr: p, n: len(idx)}
	return p, nil
}

// ReleaseArgmax frees the device indices a GPU forward pass attached to
// argmax (MaxPool2DForward, GlobalMaxPoolForward, ChannelPoolForward on
// CUDA tensors), if any. Call it before dropping or replacing such a slice;
// the slice itself stays usable (a later GPU pass attaches new indices).
func ReleaseArgmax(argmax []int32) {
	if cap(argmax) == 0 {
		return
	}
	key := &argmax[:1][0]
	deviceIndices.Lock()
	e := deviceIndices.m[key]
	delete(deviceIndices.m, key)
	deviceIndices.Unlock()
	if e != nil {
		cuda.Free(e.ptr, int64(4*e.n))
	}
}

// attachedIndices returns the device buffer a GPU forward pass attached to
// idx, if there is one that covers it.
func attachedIndices(idx []int32) (cuda.Ptr, bool) {
	if len(idx) == 0 {
		return 0, false
	}
	deviceIndices.Lock()
	defer deviceIndices.Unlock()
	e := deviceIndices.m[&idx[0]]
	if e == nil || e.n < len(idx) {
		return 0, false
	}
	return e.ptr, true
}

// ArgmaxToHost copies into argmax the indices a GPU forward pass
// (MaxPool2DForward, GlobalMaxPoolForward, ChannelPoolForward on CUDA
// tensors) recorded for it; on the GPU they stay in device memory until
// asked for. It is an error when no GPU pass wrote this slice.
func ArgmaxToHost(argmax []int32) error {
	if len(argmax) == 0 {
		return nil
	}
	p, ok := attachedIndices(argmax)
	if !ok {
		return fmt.Errorf("engine.ArgmaxToHost: no GPU forward pass recorded indices in this slice (len %d)", len(argmax))
	}
	return cuda.CopyDtoH(unsafe.Pointer(&argmax[0]), p, int64(4*len(argmax)))
}

// indicesForBackward returns the device indices for idx: the attached ones,
// or an upload of the host slice (after valid accepts it) that done frees.
func indicesForBackward(idx []int32, valid func([]int32) error) (p cuda.Ptr, done func(), err error) {
	if p, ok := attachedIndices(idx); ok {
		return p, func() {}, nil
	}
	if err := valid(idx); err != nil {
		return 0, nil, err
	}
	if len(idx) == 0 {
		return 0, func() {}, nil
	}
	bytes := int64(4 * len(idx))
	if p, err = cuda.Alloc(bytes); err != nil {
		return 0, nil, err
	}
	if err := cuda.CopyHtoD(p, unsafe.Pointer(&idx[0]), bytes); err != nil {
		cuda.Free(p, bytes)
		return 0, nil, err
	}
	return p, func() { cuda.Free(p, bytes) }, nil
}

// hostIndices is idx as the CPU sees it after a GPU pass: the attached
// device indices when there are some, idx itself otherwise (for
// KILN_CUDA_CHECK's CPU rerun).
func hostIndices(idx []int32) ([]int32, error) {
	p, ok := attachedIndices(idx)
	if !ok {
		return idx, nil
	}
	h := make([]int32, len(idx))
	if err := cuda.CopyDtoH(unsafe.Pointer(&h[0]), p, int64(4*len(h))); err != nil {
		return nil, err
	}
	return h, nil
}

// sameIndices compares the indices a GPU pass recorded for idx with the
// CPU's (the check mode's comparison of argmax).
func sameIndices(op string, idx, cpu []int32) error {
	got, err := hostIndices(idx)
	if err != nil {
		return err
	}
	for i := range cpu {
		if got[i] != cpu[i] {
			return fmt.Errorf("%s: KILN_CUDA_CHECK: argmax[%d] gpu=%d cpu=%d", op, i, got[i], cpu[i])
		}
	}
	return nil
}
