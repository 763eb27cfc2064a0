package engine

import (
	"errors"
	"fmt"
	"sync"

	"github.com/kiln-ml/kiln/cuda"
)

// LossLog keeps training steps' losses and correct counts where the steps
// ran, so that a GPU step copies nothing back to the host: the trainer reads
// them in one batch every so many steps (issue 17, item 4). On the CPU the
// records are kept in host memory as they are made.
//
// A LossLog holds at most Cap records between two Reads. It is safe for one
// goroutine at a time.
type LossLog struct {
	mu   sync.Mutex
	cap  int
	dev  Device     // where the pending records are; set by the first one
	rows []int      // each pending record's rows: its loss is a sum until Read
	cpu  []StepLoss // the CPU's pending records
	gpu  lossLogGPU // the GPU's (losslog_cuda.go)
	buf  []lossSlot // Read's host copy of the GPU records
}

// StepLoss is one training step's mean loss and its count of correct
// predictions.
type StepLoss struct {
	Loss    float64
	Correct int
}

// lossSlot is one record as the GPU writes it (kernels/loss.cu,
// xent_log_step): the row losses' sum, added in row order, and the count.
type lossSlot struct{ sum, correct float64 }

// ErrLossLogFull: a LossLog already holds Cap records; Read them first.
var ErrLossLogFull = errors.New("loss log is full: read it before the next step")

// NewLossLog makes a log for up to capacity steps between reads.
func NewLossLog(capacity int) *LossLog {
	return &LossLog{cap: max(capacity, 1)}
}

// Cap is how many records the log holds between reads.
func (l *LossLog) Cap() int { return l.cap }

// Len is how many records wait to be read.
func (l *LossLog) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.rows)
}

// SoftmaxCrossEntropyLogged is SoftmaxCrossEntropy whose loss and correct
// count go into log instead of coming back: on the GPU the same two
// kernels' work plus one small launch that adds the rows up, with no copy to
// the host. The record's loss is the bits SoftmaxCrossEntropy returns for the
// same inputs on the same device. A loss that is not finite is not an error
// here: the reader of the log sees it.
func SoftmaxCrossEntropyLogged(probs, dlogits, logits *Tensor, labels []int32, smoothing, scale float64, log *LossLog) error {
	const op = "SoftmaxCrossEntropyLogged"
	if log == nil {
		return &ShapeError{Op: op, Msg: "a loss log is required"}
	}
	if probs == nil || dlogits == nil || logits == nil {
		return shapeErr(op, "probs, dlogits and logits are required", "probs", probs, "dlogits", dlogits, "logits", logits)
	}
	dev, _, err := agreeDev(op, probs, dlogits, logits)
	if err != nil {
		return err
	}
	if err := checkCrossEntropy(op, probs, logits, labels, smoothing); err != nil {
		return err
	}
	if err := checkCrossEntropy(op, dlogits, logits, labels, smoothing); err != nil {
		return err
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if err := log.room(op, dev); err != nil {
		return err
	}
	if dev == CUDA {
		if err := softmaxCrossEntropyLoggedCUDA(probs, dlogits, logits, labels, smoothing, scale, log); err != nil {
			return err
		}
	} else {
		loss, correct, err := SoftmaxCrossEntropy(probs, dlogits, logits, labels, smoothing, scale)
		if err != nil {
			return err
		}
		log.cpu = append(log.cpu, StepLoss{loss, correct})
	}
	log.rows = append(log.rows, logits.shape[0])
	return nil
}

// Add puts a record made on the host (a loss already read back, as a
// regression step's is) behind those pending. It cannot follow GPU records.
func (l *LossLog) Add(r StepLoss) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.room("LossLog.Add", CPU); err != nil {
		return err
	}
	l.cpu = append(l.cpu, r)
	l.rows = append(l.rows, 1)
	return nil
}

// room checks that one more record fits and that it is on the device of
// those pending. The caller holds l.mu.
func (l *LossLog) room(op string, dev Device) error {
	if len(l.rows) >= l.cap {
		return fmt.Errorf("%s: %w (%d records)", op, ErrLossLogFull, l.cap)
	}
	if len(l.rows) > 0 && dev != l.dev {
		return &ShapeError{Op: op, Msg: fmt.Sprintf("the log holds %v records; this step is on the %v", l.dev, dev)}
	}
	l.dev = dev
	return nil
}

// Read appends the pending records to dst, oldest first, and empties the
// log. On the GPU it is the one copy to the host, and waits for the steps.
func (l *LossLog) Read(dst []StepLoss) ([]StepLoss, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.rows)
	if n == 0 {
		return dst, nil
	}
	if l.dev == CUDA {
		var err error
		if dst, err = l.readCUDA(dst); err != nil {
			return dst, err
		}
	} else {
		dst = append(dst, l.cpu...)
		l.cpu = l.cpu[:0]
	}
	l.rows = l.rows[:0]
	return dst, nil
}

// Release frees the log's device memory and drops the records not read.
func (l *LossLog) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gpu.release()
	l.rows, l.cpu = l.rows[:0], l.cpu[:0]
}

// lossLogGPU is a LossLog's device memory: cap slots.
type lossLogGPU struct {
	slots cuda.Ptr
	cap   int
}

func (g *lossLogGPU) release() {
	if g.cap > 0 {
		cuda.Free(g.slots, int64(16*g.cap))
	}
	*g = lossLogGPU{}
}
