package trainer

import (
	"fmt"

	"github.com/kiln-ml/kiln/engine"
)

// Fit reads its steps' losses and correct counts back in batches (issue 17,
// item 4): a GPU step leaves them on the device (engine.LossLog) and waits
// for nothing, and they are read every lossReadEvery steps and whenever a
// figure needs them: a --log-every record, a validation, the epoch's end,
// an interrupt. A loss that is not finite therefore stops a GPU run up to
// lossReadEvery steps after the step it happened at, which the error names;
// nothing is written to the run directory in between. On the CPU, where a
// read costs nothing, every step is read at once.
const lossReadEvery = 50

// loggedStep is a step whose loss is in the log, not yet read.
type loggedStep struct {
	step int // the steps taken before it (stepError names it step+1)
	size int // this rank's samples
}

// newLossLog makes the run's log on the trainer's device.
func (f *fitRun) newLossLog() {
	every := 1
	if f.t.device == engine.CUDA {
		every = lossReadEvery
	}
	f.losses = engine.NewLossLog(every)
}

// logged notes the step just logged, and reads the log when it is full.
func (f *fitRun) logged(step, size int) error {
	f.unread = append(f.unread, loggedStep{step, size})
	if len(f.unread) < f.losses.Cap() {
		return nil
	}
	return f.readLosses()
}

// readLosses adds the steps read back to the epoch's sums and the step
// window's, and stops the run at the first loss that is not finite.
func (f *fitRun) readLosses() error {
	if len(f.unread) == 0 {
		return nil
	}
	recs, err := f.losses.Read(f.read[:0])
	f.read = recs
	if err == nil && len(recs) != len(f.unread) {
		err = fmt.Errorf("loss log: %d records for %d steps", len(recs), len(f.unread))
	}
	if err != nil {
		return f.t.stepError(err, f.epochs, f.step)
	}
	for i, r := range recs {
		s := f.unread[i]
		if err := finiteTrainingLoss(r.Loss); err != nil {
			if later := len(recs) - 1 - i; later > 0 {
				// f.step counts the steps taken or not yet, by where the read
				// comes from: count the steps read after it instead.
				err = fmt.Errorf("%w (found %d steps later: a GPU run reads its losses every %d steps)", err, later, f.losses.Cap())
			}
			f.unread = f.unread[:0]
			return f.t.stepError(err, f.epochs, s.step)
		}
		f.sums.add(r.Loss, s.size, r.Correct)
		f.window.sums.add(r.Loss, s.size, r.Correct)
	}
	f.unread = f.unread[:0]
	return nil
}

// add counts a step's mean loss over size samples and its correct answers.
func (s *epochSums) add(loss float64, size, correct int) {
	s.LossSum += loss * float64(size)
	s.Count += size
	s.Correct += correct
}
