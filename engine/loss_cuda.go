package engine

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"unsafe"

	"github.com/kiln-ml/kiln/cuda"
)

// The GPU side of loss.go: kernels/loss.cu.

// xentState keeps the device copy of the last labels and the per-row result
// buffers between calls: a training step's forward and backward pass share
// one upload, and a steady-state step allocates nothing. The mutex is held
// from the upload through the launches that read the buffers; launches on
// the one stream run in order, so the next call's upload cannot overtake
// them.
var xentState struct {
	mu      sync.Mutex
	host    []int32  // what labels holds on the device
	labels  cuda.Ptr // int32 × cap
	rows    cuda.Ptr // per row: float64 loss, then int32 correct; (8+4) bytes × cap
	cap     int
	results []byte // host copy of rows
	valid   bool
}

// xentUpload makes the device labels equal to labels, uploading only when
// they changed. The caller holds xentState.mu.
func xentUpload(labels []int32) error {
	s := &xentState
	n := len(labels)
	if n > s.cap {
		if s.cap > 0 {
			cuda.Free(s.labels, int64(4*s.cap))
			cuda.Free(s.rows, int64(12*s.cap))
			s.labels, s.rows, s.cap, s.valid = 0, 0, 0, false
		}
		p, err := cuda.Alloc(int64(4 * n))
		if err != nil {
			return err
		}
		r, err := cuda.Alloc(int64(12 * n))
		if err != nil {
			cuda.Free(p, int64(4*n))
			return err
		}
		s.labels, s.rows, s.cap = p, r, n
		s.results = make([]byte, 12*n)
	}
	if s.valid && slices.Equal(s.host, labels) {
		return nil
	}
	s.valid = false
	if err := cuda.CopyHtoD(s.labels, unsafe.Pointer(unsafe.SliceData(labels)), int64(4*n)); err != nil {
		return err
	}
	s.host = append(s.host[:0], labels...)
	s.valid = true
	return nil
}

// releaseXentScratch frees the device labels and per-row results; the next
// cross-entropy allocates them again.
func releaseXentScratch() {
	s := &xentState
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cap == 0 {
		return
	}
	cuda.Free(s.labels, int64(4*s.cap))
	cuda.Free(s.rows, int64(12*s.cap))
	s.labels, s.rows, s.cap, s.valid = 0, 0, 0, false
	s.host, s.results = nil, nil
}

// xentBlock is the block size for rows of k classes: a warp for small k, up
// to 256 threads (a few values each) for large k.
func xentBlock(k int) int {
	b := 32
	for b < 256 && b < k {
		b *= 2
	}
	return b
}

// softmaxCrossEntropyForwardCUDA is SoftmaxCrossEntropyForward on the GPU,
// arguments checked. The row losses come back and are added on the host in
// row order in float64, as the CPU adds them.
func softmaxCrossEntropyForwardCUDA(probs, logits *Tensor, labels []int32, eps float64) (loss float64, correct int, err error) {
	const op = "SoftmaxCrossEntropyForward"
	gpu := func() (err error) {
		loss, correct, err = xentCUDA(probs, nil, logits, labels, eps, 0)
		return err
	}
	err = runCUDA(op, gpu, func(host hostCopy) error {
		l, c, err := SoftmaxCrossEntropyForward(host(probs), host(logits), labels, eps)
		if err != nil {
			return err
		}
		return checkXentLoss(op, loss, correct, l, c)
	}, probs, logits)
	return loss, correct, err
}

// softmaxCrossEntropyCUDA is SoftmaxCrossEntropy on the GPU, arguments
// checked: the forward kernel writes the gradient too, one launch.
func softmaxCrossEntropyCUDA(probs, dlogits, logits *Tensor, labels []int32, eps, scale float64) (loss float64, correct int, err error) {
	const op = "SoftmaxCrossEntropy"
	gpu := func() (err error) {
		loss, correct, err = xentCUDA(probs, dlogits, logits, labels, eps, scale)
		return err
	}
	err = runCUDA(op, gpu, func(host hostCopy) error {
		l, c, err := SoftmaxCrossEntropy(host(probs), host(dlogits), host(logits), labels, eps, scale)
		if err != nil {
			return err
		}
		return checkXentLoss(op, loss, correct, l, c)
	}, probs, dlogits, logits)
	return loss, correct, err
}

// checkXentLoss is KILN_CUDA_CHECK's comparison of a loss and its count.
func checkXentLoss(op string, loss float64, correct int, l float64, c int) error {
	if math.Abs(l-loss) > 1e-3+1e-3*math.Abs(l) || c != correct {
		return fmt.Errorf("%s: KILN_CUDA_CHECK: gpu loss %v (%d correct), cpu %v (%d correct)", op, loss, correct, l, c)
	}
	return nil
}

// xentConsts are the backward pass's constants exactly as the CPU computes
// them: s = scale/N, off = s·ε/K, on = s·(1−ε).
func xentConsts(n, k int, eps, scale float64) (s, off, on float32) {
	s64 := scale / float64(n)
	return float32(s64), float32(s64 * eps / float64(k)), float32(s64 * (1 - eps))
}

// xentCUDA launches the forward kernel (with the backward pass when dlogits
// is not nil) and adds up the row results.
func xentCUDA(probs, dlogits, logits *Tensor, labels []int32, eps, scale float64) (loss float64, correct int, err error) {
	n := logits.shape[0]
	s := &xentState
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := xentLaunch(probs, dlogits, logits, labels, eps, scale); err != nil {
		return 0, 0, err
	}
	res := s.results[:12*n]
	if err := cuda.CopyDtoH(unsafe.Pointer(&res[0]), s.rows, int64(12*n)); err != nil {
		return 0, 0, err
	}
	rowLoss := unsafe.Slice((*float64)(unsafe.Pointer(&res[0])), n)
	rowCorrect := unsafe.Slice((*int32)(unsafe.Pointer(&res[8*n])), n)
	for i := range n {
		loss += rowLoss[i]
		correct += int(rowCorrect[i])
	}
	return loss / float64(n), correct, nil
}

// xentLaunch uploads the labels and launches the forward kernel, which
// leaves its row results in xentState.rows. The caller holds xentState.mu.
func xentLaunch(probs, dlogits, logits *Tensor, labels []int32, eps, scale float64) error {
	n, k := logits.shape[0], logits.shape[1]
	s := &xentState
	if err := xentUpload(labels); err != nil {
		return err
	}
	var p, d cuda.Ptr
	if probs != nil {
		p = probs.dptr()
	}
	var ds, off, on float32
	if dlogits != nil {
		d = dlogits.dptr()
		ds, off, on = xentConsts(n, k, eps, scale)
	}
	var a cuda.Args
	a.Ptr(p).Ptr(s.rows).Ptr(s.rows + cuda.Ptr(8*n)).Ptr(logits.dptr()).Ptr(s.labels).
		F32(float32(1 - eps)).F32(float32(eps / float64(k))).Int(n).Int(k).Ptr(d).F32(ds).F32(off).F32(on)
	return cuda.Launch(kern.softmax_xent_forward_f32, cuda.D1(min(n, 65535)), cuda.D1(xentBlock(k)), 0, &a)
}

// softmaxCrossEntropyBackwardCUDA is SoftmaxCrossEntropyBackward on the GPU,
// arguments checked.
func softmaxCrossEntropyBackwardCUDA(dlogits, probs *Tensor, labels []int32, eps, scale float64) error {
	const op = "SoftmaxCrossEntropyBackward"
	n, k := probs.shape[0], probs.shape[1]
	s, off, on := xentConsts(n, k, eps, scale)
	gpu := func() error {
		st := &xentState
		st.mu.Lock()
		defer st.mu.Unlock()
		if err := xentUpload(labels); err != nil {
			return err
		}
		var a cuda.Args
		a.Ptr(dlogits.dptr()).Ptr(probs.dptr()).Ptr(st.labels).F32(s).F32(off).F32(on).Int(n).Int(k)
		return launchElt(kern.softmax_xent_backward_f32, n*k, &a)
	}
	return runCUDA(op, gpu, func(host hostCopy) error {
		return SoftmaxCrossEntropyBackward(host(dlogits), host(probs), labels, eps, scale)
	}, dlogits, probs)
}

// regressionLossCUDA is MSEForward (l1 false) or L1Forward on the GPU: one
// partial sum per block, added on the host in block order.
func regressionLossCUDA(pred, target *Tensor, l1 bool) (float64, error) {
	op, k := "MSEForward", kern.mse_forward_f32
	if l1 {
		op, k = "L1Forward", kern.l1_forward_f32
	}
	n := pred.Len()
	var loss float64
	gpu := func() error {
		blocks := cuda.Blocks(n, eltBlock, 256)
		partial, err := cuda.Alloc(int64(4 * blocks))
		if err != nil {
			return err
		}
		defer cuda.Free(partial, int64(4*blocks))
		var a cuda.Args
		if err := cuda.Launch(k, cuda.D1(blocks), cuda.D1(eltBlock), 0, a.Ptr(partial).Ptr(pred.dptr()).Ptr(target.dptr()).I64(int64(n))); err != nil {
			return err
		}
		var buf [256]float32
		if err := cuda.CopyDtoH(unsafe.Pointer(&buf[0]), partial, int64(4*blocks)); err != nil {
			return err
		}
		s := 0.0
		for _, v := range buf[:blocks] {
			s += float64(v)
		}
		loss = s / float64(n)
		return nil
	}
	err := runCUDA(op, gpu, func(host hostCopy) error {
		var l float64
		var err error
		if l1 {
			l, err = L1Forward(host(pred), host(target))
		} else {
			l, err = MSEForward(host(pred), host(target))
		}
		if err == nil && math.Abs(l-loss) > 1e-3+1e-3*math.Abs(l) {
			err = fmt.Errorf("%s: KILN_CUDA_CHECK: gpu loss %v, cpu %v", op, loss, l)
		}
		return err
	}, pred, target)
	return loss, err
}

// regressionLossBackwardCUDA is MSEBackward (l1 false) or L1Backward on the
// GPU, with the CPU's constants.
func regressionLossBackwardCUDA(dpred, pred, target *Tensor, scale float64, l1 bool) error {
	n := pred.Len()
	c := scale / float64(n)
	op, k, cf := "MSEBackward", kern.mse_backward_f32, float32(2*c)
	if l1 {
		op, k, cf = "L1Backward", kern.l1_backward_f32, float32(c)
	}
	return runCUDA(op, func() error {
		var a cuda.Args
		return launchElt(k, n, a.Ptr(dpred.dptr()).Ptr(pred.dptr()).Ptr(target.dptr()).F32(cf).I64(int64(n)))
	}, func(host hostCopy) error {
		if l1 {
			return L1Backward(host(dpred), host(pred), host(target), scale)
		}
		return MSEBackward(host(dpred), host(pred), host(target), scale)
	}, dpred, pred, target)
}

// The GPU side of losslog.go: the fused cross-entropy's row results added
// into a device slot by kernels/loss.cu's xent_log_step.

// softmaxCrossEntropyLoggedCUDA runs the fused forward and backward kernel
// and adds its rows into the log's next slot. The caller holds log.mu and
// has checked that the slot exists.
func softmaxCrossEntropyLoggedCUDA(probs, dlogits, logits *Tensor, labels []int32, eps, scale float64, log *LossLog) error {
	const op = "SoftmaxCrossEntropyLogged"
	if err := log.gpu.ensure(log.cap); err != nil {
		return err
	}
	slot := log.gpu.slots + cuda.Ptr(16*len(log.rows))
	gpu := func() error {
		n := logits.shape[0]
		s := &xentState
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := xentLaunch(probs, dlogits, logits, labels, eps, scale); err != nil {
			return err
		}
		var a cuda.Args
		a.Ptr(s.rows).Ptr(s.rows + cuda.Ptr(8*n)).Int(n).Ptr(slot)
		return cuda.Launch(kern.xent_log_step, cuda.D1(1), cuda.D1(256), 0, &a)
	}
	return runCUDA(op, gpu, func(host hostCopy) error {
		l, c, err := SoftmaxCrossEntropy(host(probs), host(dlogits), host(logits), labels, eps, scale)
		if err != nil {
			return err
		}
		var rec lossSlot
		if err := cuda.CopyDtoH(unsafe.Pointer(&rec), slot, 16); err != nil {
			return err
		}
		return checkXentLoss(op, rec.sum/float64(logits.shape[0]), int(rec.correct), l, c)
	}, probs, dlogits, logits)
}

// ensure allocates the log's slots on the device once.
func (g *lossLogGPU) ensure(capacity int) error {
	if g.cap == capacity {
		return nil
	}
	g.release()
	p, err := cuda.Alloc(int64(16 * capacity))
	if err != nil {
		return err
	}
	g.slots, g.cap = p, capacity
	return nil
}

// readCUDA copies the pending slots back and turns each into a step's mean
// loss, dividing as xentCUDA divides. The caller holds l.mu.
func (l *LossLog) readCUDA(dst []StepLoss) ([]StepLoss, error) {
	n := len(l.rows)
	if cap(l.buf) < n {
		l.buf = make([]lossSlot, l.cap)
	}
	buf := l.buf[:n]
	if err := cuda.CopyDtoH(unsafe.Pointer(&buf[0]), l.gpu.slots, int64(16*n)); err != nil {
		return dst, err
	}
	for i, r := range buf {
		dst = append(dst, StepLoss{Loss: r.sum / float64(l.rows[i]), Correct: int(r.correct)})
	}
	return dst, nil
}
