package engine

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
	"weak"

	"github.com/kiln-ml/kiln/cuda"
)

// The GPU side of pool.go: kernels/pool.cu.

var (
	kMaxPoolForward        = cuda.K("maxpool2d_forward_f32")
	kMaxPoolBackward       = cuda.K("maxpool2d_backward_f32")
	kAvgPoolForward        = cuda.K("avgpool2d_forward_f32")
	kAvgPoolBackward       = cuda.K("avgpool2d_backward_f32")
	kGlobalAvgPoolForward  = cuda.K("global_avgpool_forward_f32")
	kGlobalAvgPoolBackward = cuda.K("global_avgpool_backward_f32")
)

// Argmax indices on the GPU. The max-pooling ops take their argmax as a host
// []int32 (the CPU API, kept for both devices). A GPU forward pass keeps the
// indices in device memory attached to the slice's backing array and does not
// write the slice: copying them to the host and back every step would stall
// the GPU for nothing. The GPU backward pass finds them through the same
// slice. The device memory goes back to the cache when the slice is garbage.
// ArgmaxToHost copies the indices into the slice for whoever wants to read
// them; a backward pass given a slice no GPU forward pass wrote uploads it.

type deviceIndex struct {
	ptr cuda.Ptr
	n   int
}

var deviceIndices = struct {
	sync.Mutex
	m map[weak.Pointer[int32]]*deviceIndex
}{m: map[weak.Pointer[int32]]*deviceIndex{}}

// indicesOnDevice returns the device buffer attached to idx (non-empty),
// attaching one first if there is none or it is too small.
func indicesOnDevice(idx []int32) (cuda.Ptr, error) {
	key := weak.Make(&idx[0])
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
	runtime.AddCleanup(&idx[0], releaseIndices, key)
	return p, nil
}

func releaseIndices(key weak.Pointer[int32]) {
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
	e := deviceIndices.m[weak.Make(&idx[0])]
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

// poolArgs packs the geometry every 2-D pooling kernel takes after its
// pointers and element count.
func poolArgs(a *cuda.Args, g *poolGeom) *cuda.Args {
	return a.Int(g.h).Int(g.w).Int(g.oh).Int(g.ow).Int(g.kh).Int(g.kw).Int(g.sh).Int(g.sw).Int(g.ph).Int(g.pw)
}

func maxPool2DForwardCUDA(out *Tensor, argmax []int32, x *Tensor, p Pool2DParams, g *poolGeom) error {
	const op = "MaxPool2DForward"
	return runCUDA(op, func() error {
		total := out.Len()
		if total == 0 {
			return nil
		}
		var am cuda.Ptr
		if argmax != nil {
			var err error
			if am, err = indicesOnDevice(argmax); err != nil {
				return err
			}
		}
		var a cuda.Args
		a.Ptr(out.dptr()).Ptr(am).Ptr(x.dptr()).I64(int64(total))
		return launchFit(kMaxPoolForward, total, poolArgs(&a, g))
	}, func(h []*Tensor) error {
		var cpu []int32
		if argmax != nil {
			cpu = make([]int32, len(argmax))
		}
		if err := MaxPool2DForward(h[0], cpu, h[1], p); err != nil {
			return err
		}
		if argmax == nil {
			return nil
		}
		return sameIndices(op, argmax, cpu)
	}, out, x)
}

// poolWindowCheck accepts host argmax indices only inside their own window:
// the gather backward looks for each input in the windows that hold it.
func poolWindowCheck(op string, g *poolGeom) func([]int32) error {
	return func(idx []int32) error {
		on := g.oh * g.ow
		for i, a := range idx {
			o := i % on
			h0, h1 := window(o/g.ow, g.sh, g.ph, g.kh, g.h)
			w0, w1 := window(o%g.ow, g.sw, g.pw, g.kw, g.w)
			ih, iw := int(a)/g.w, int(a)%g.w
			if a < 0 || ih < h0 || ih >= h1 || iw < w0 || iw >= w1 {
				return &ShapeError{Op: op, Msg: fmt.Sprintf("argmax[%d] = %d is not inside its window", i, a)}
			}
		}
		return nil
	}
}

func maxPool2DBackwardCUDA(dx, dout *Tensor, argmax []int32, p Pool2DParams, g *poolGeom) error {
	const op = "MaxPool2DBackward"
	return runCUDA(op, func() error {
		total := dx.Len()
		if total == 0 {
			return nil
		}
		am, done, err := indicesForBackward(argmax, poolWindowCheck(op, g))
		if err != nil {
			return err
		}
		defer done()
		var a cuda.Args
		a.Ptr(dx.dptr()).Ptr(dout.dptr()).Ptr(am).I64(int64(total))
		return launchFit(kMaxPoolBackward, total, poolArgs(&a, g))
	}, func(h []*Tensor) error {
		idx, err := hostIndices(argmax)
		if err != nil {
			return err
		}
		return MaxPool2DBackward(h[0], h[1], idx, p)
	}, dx, dout)
}

func avgPool2DForwardCUDA(out, x *Tensor, p Pool2DParams, g *poolGeom) error {
	return runCUDA("AvgPool2DForward", func() error {
		total := out.Len()
		var a cuda.Args
		a.Ptr(out.dptr()).Ptr(x.dptr()).I64(int64(total))
		return launchFit(kAvgPoolForward, total, poolArgs(&a, g))
	}, func(h []*Tensor) error { return AvgPool2DForward(h[0], h[1], p) }, out, x)
}

func avgPool2DBackwardCUDA(dx, dout *Tensor, p Pool2DParams, g *poolGeom) error {
	return runCUDA("AvgPool2DBackward", func() error {
		total := dx.Len()
		var a cuda.Args
		a.Ptr(dx.dptr()).Ptr(dout.dptr()).I64(int64(total))
		return launchFit(kAvgPoolBackward, total, poolArgs(&a, g))
	}, func(h []*Tensor) error { return AvgPool2DBackward(h[0], h[1], p) }, dx, dout)
}

// planeBlock is the block size of the one-block-per-plane reductions: the
// plane rounded up to whole warps, at most 256 threads.
func planeBlock(hw int) int {
	return min(256, max(32, (hw+31)/32*32))
}

// planeGrid caps the number of plane blocks; the kernels loop beyond.
const planeGridMax = 1 << 16

func globalAvgPoolForwardCUDA(out, x *Tensor, g *poolGeom) error {
	return runCUDA("GlobalAvgPoolForward", func() error {
		hw := g.h * g.w
		var a cuda.Args
		return cuda.Launch(kGlobalAvgPoolForward, cuda.D1(min(g.planes, planeGridMax)), cuda.D1(planeBlock(hw)), 0,
			a.Ptr(out.dptr()).Ptr(x.dptr()).Int(g.planes).Int(hw))
	}, func(h []*Tensor) error { return GlobalAvgPoolForward(h[0], h[1]) }, out, x)
}

func globalAvgPoolBackwardCUDA(dx, dout *Tensor, g *poolGeom) error {
	return runCUDA("GlobalAvgPoolBackward", func() error {
		total := dx.Len()
		var a cuda.Args
		return launchFit(kGlobalAvgPoolBackward, total, a.Ptr(dx.dptr()).Ptr(dout.dptr()).I64(int64(total)).Int(g.h*g.w))
	}, func(h []*Tensor) error { return GlobalAvgPoolBackward(h[0], h[1]) }, dx, dout)
}
