package engine

import (
	"math"
	"slices"
	"sync"
	"unsafe"

	"github.com/kiln-ml/kiln/cuda"
)

// The GPU side of optim.go: kernels/optim.cu, with the hyper-parameters
// rounded to float32 exactly as the CPU's float32 path rounds them.

func sgdStepCUDA(w, g, buf *Tensor, c SGDConfig) error {
	return runCUDA("SGDStep", func() error {
		n := w.Len()
		var bp cuda.Ptr
		if buf != nil {
			bp = buf.dptr()
		}
		nesterov := 0
		if c.Nesterov {
			nesterov = 1
		}
		var a cuda.Args
		a.Ptr(w.dptr()).Ptr(g.dptr()).Ptr(bp).F32(float32(c.LR)).F32(float32(c.Momentum)).F32(float32(c.WeightDecay)).
			Int(nesterov).I64(int64(n))
		return launchElt(kern.sgd_step_f32, n, &a)
	}, func(host hostCopy) error { return SGDStep(host(w), host(g), host(buf), c) }, w, g, buf)
}

func adamWStepCUDA(w, g, m, v *Tensor, c AdamWConfig) error {
	return runCUDA("AdamWStep", func() error {
		n := w.Len()
		bc1 := 1 - math.Pow(c.Beta1, float64(c.Step))
		bc2 := 1 - math.Pow(c.Beta2, float64(c.Step))
		var a cuda.Args
		a.Ptr(w.dptr()).Ptr(g.dptr()).Ptr(m.dptr()).Ptr(v.dptr()).F32(float32(c.Beta1)).F32(float32(c.Beta2)).
			F32(float32(c.LR / bc1)).F32(float32(1 / math.Sqrt(bc2))).F32(float32(1 - c.LR*c.WeightDecay)).
			F32(float32(c.Eps)).I64(int64(n))
		return launchElt(kern.adamw_step_f32, n, &a)
	}, func(host hostCopy) error { return AdamWStep(host(w), host(g), host(m), host(v), c) }, w, g, m, v)
}

// The multi-tensor steps (SGDStepAll, AdamWStepAll): the parameters cut into
// chunks of at most optimChunk elements, listed in a table on the device
// that the kernel's blocks take grid-stride. The table is uploaded only when
// it changes: a training loop steps the same tensors with the same decay,
// so after its first step a step is one launch and no copy.

// optimChunk is the most elements of one chunk: a block's work, 8 per
// thread. Small, so that a large parameter spreads over many blocks: with
// 65,536 one block walked LeNet's 48,000-element fc1 alone, 188 dependent
// loads a thread, 46 µs of a 360 µs step on the H200.
const optimChunk = 2048

// sgdChunk is kernels/optim.cu's kiln_sgd_chunk, field for field.
type sgdChunk struct {
	w, g, buf cuda.Ptr
	n         int64
	wd        float32
	_         int32
}

// adamWChunk is kernels/optim.cu's kiln_adamw_chunk, field for field.
type adamWChunk struct {
	w, g, m, v cuda.Ptr
	n          int64
	decay      float32
	_          int32
}

// chunkTable is one kernel's table: host, built for the call; sent, what
// the device buffer holds. The mutex is held from the build through the
// launch; launches on the one stream run in order, so the next call's
// upload cannot overtake the kernel that reads the table.
type chunkTable[C comparable] struct {
	mu         sync.Mutex
	host, sent []C
	dev        cuda.Ptr
	cap        int // chunks dev holds room for
}

var (
	sgdTable   chunkTable[sgdChunk]
	adamWTable chunkTable[adamWChunk]
)

// upload makes the device table equal to host, copying only on a change.
func (t *chunkTable[C]) upload() error {
	if t.dev != 0 && slices.Equal(t.host, t.sent) {
		return nil
	}
	size := int64(unsafe.Sizeof(t.host[0]))
	if len(t.host) > t.cap {
		t.free()
		p, err := cuda.Alloc(size * int64(len(t.host)))
		if err != nil {
			return err
		}
		t.dev, t.cap = p, len(t.host)
	}
	t.sent = t.sent[:0]
	if err := cuda.CopyHtoD(t.dev, unsafe.Pointer(unsafe.SliceData(t.host)), size*int64(len(t.host))); err != nil {
		return err
	}
	t.sent = append(t.sent, t.host...)
	return nil
}

func (t *chunkTable[C]) free() {
	if t.cap > 0 {
		var c C
		cuda.Free(t.dev, int64(unsafe.Sizeof(c))*int64(t.cap))
	}
	t.dev, t.cap, t.sent = 0, 0, t.sent[:0]
}

func (t *chunkTable[C]) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.free()
	t.host, t.sent = nil, nil
}

// releaseOptimTables frees both tables; the next multi-tensor step uploads
// its table again.
func releaseOptimTables() {
	sgdTable.release()
	adamWTable.release()
}

// launchChunks runs k over the table's chunks, one block per chunk.
func launchChunks(k *cuda.Kernel, n int, a *cuda.Args) error {
	return cuda.Launch(k, cuda.D1(min(n, eltMaxBlocks)), cuda.D1(eltBlock), 0, a)
}

// offsetPtr is p moved off float32 elements on, or 0 for no tensor.
func offsetPtr(t *Tensor, off int) cuda.Ptr {
	if t == nil {
		return 0
	}
	return t.dptr() + cuda.Ptr(4*off)
}

func sgdStepAllCUDA(ps []SGDParam, c SGDConfig) error {
	gpu := func() error {
		t := &sgdTable
		t.mu.Lock()
		defer t.mu.Unlock()
		t.host = t.host[:0]
		for _, p := range ps {
			wd := float32(p.config(c).WeightDecay)
			for off, n := 0, p.W.Len(); off < n; off += optimChunk {
				t.host = append(t.host, sgdChunk{w: offsetPtr(p.W, off), g: offsetPtr(p.G, off),
					buf: offsetPtr(p.Buf, off), n: int64(min(optimChunk, n-off)), wd: wd})
			}
		}
		if len(t.host) == 0 {
			return nil
		}
		if err := t.upload(); err != nil {
			return err
		}
		nesterov := 0
		if c.Nesterov {
			nesterov = 1
		}
		var a cuda.Args
		a.Ptr(t.dev).Int(len(t.host)).F32(float32(c.LR)).F32(float32(c.Momentum)).Int(nesterov)
		return launchChunks(kern.sgd_step_multi_f32, len(t.host), &a)
	}
	if !checkCUDA {
		return gpu()
	}
	var args []*Tensor
	for _, p := range ps {
		args = append(args, p.W, p.G, p.Buf)
	}
	return runCUDA("SGDStepAll", gpu, func(host hostCopy) error {
		hps := make([]SGDParam, len(ps))
		for i, p := range ps {
			hps[i] = SGDParam{W: host(p.W), G: host(p.G), Buf: host(p.Buf), NoDecay: p.NoDecay}
		}
		return SGDStepAll(hps, c)
	}, args...)
}

func adamWStepAllCUDA(ps []AdamWParam, c AdamWConfig) error {
	gpu := func() error {
		t := &adamWTable
		t.mu.Lock()
		defer t.mu.Unlock()
		t.host = t.host[:0]
		for _, p := range ps {
			decay := float32(1 - c.LR*p.config(c).WeightDecay)
			for off, n := 0, p.W.Len(); off < n; off += optimChunk {
				t.host = append(t.host, adamWChunk{w: offsetPtr(p.W, off), g: offsetPtr(p.G, off),
					m: offsetPtr(p.M, off), v: offsetPtr(p.V, off), n: int64(min(optimChunk, n-off)), decay: decay})
			}
		}
		if len(t.host) == 0 {
			return nil
		}
		if err := t.upload(); err != nil {
			return err
		}
		bc1 := 1 - math.Pow(c.Beta1, float64(c.Step))
		bc2 := 1 - math.Pow(c.Beta2, float64(c.Step))
		var a cuda.Args
		a.Ptr(t.dev).Int(len(t.host)).F32(float32(c.Beta1)).F32(float32(c.Beta2)).F32(float32(c.LR / bc1)).
			F32(float32(1 / math.Sqrt(bc2))).F32(float32(c.Eps))
		return launchChunks(kern.adamw_step_multi_f32, len(t.host), &a)
	}
	if !checkCUDA {
		return gpu()
	}
	var args []*Tensor
	for _, p := range ps {
		args = append(args, p.W, p.G, p.M, p.V)
	}
	return runCUDA("AdamWStepAll", gpu, func(host hostCopy) error {
		hps := make([]AdamWParam, len(ps))
		for i, p := range ps {
			hps[i] = AdamWParam{W: host(p.W), G: host(p.G), M: host(p.M), V: host(p.V), NoDecay: p.NoDecay}
		}
		return AdamWStepAll(hps, c)
	}, args...)
}
