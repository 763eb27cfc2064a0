package trainer

import (
	"math"
	"time"
)

// StepSplit is the split of the metrics records --log-every writes: the
// training figures averaged over the steps since the previous such record.
const StepSplit = "train_step"

// stepWindow gathers the steps since the last step record (Config.LogEvery):
// their loss and accuracy sums, images (every rank's) and time: each step's
// from the end of the loop's previous turn (the wait for its batch
// included; validations, checkpoints, step records and the time between
// epochs left out).
//
// The window is not in the checkpoint: after a --resume the first record
// averages the steps since the resume. Records already in metrics.jsonl
// when the checkpoint was written are kept and the later ones cut back
// (RunDir), so a resumed run writes each step's record once.
type stepWindow struct {
	sums    epochSums
	images  int
	seconds float64
	clock   time.Time // where the next step's time starts (fitRun.runEpoch)
}

// add counts the training step just taken: every rank's images and its
// time. Its loss and correct count come when they are read (readLosses).
func (w *stepWindow) add(images int) {
	w.images += images
	w.seconds += time.Since(w.clock).Seconds()
}

// logStep writes the step record when the step just taken ends a window
// of LogEvery steps: on the console (info), in metrics.jsonl and as the
// TensorBoard scalars train_step/loss, train_step/accuracy and lr. Every
// rank calls it at the same steps, for the sums of all ranks (one small
// all-reduce); rank 0 alone writes. wall is the run's training seconds so
// far.
func (f *fitRun) logStep(wall float64) error {
	every := f.c.LogEvery
	if every <= 0 || f.step%every != 0 {
		return nil
	}
	if err := f.readLosses(); err != nil {
		return err
	}
	w := f.window
	f.window = stepWindow{clock: w.clock}
	if err := f.t.reduceSums(&w.sums); err != nil {
		return err
	}
	if f.t.world().Rank() != 0 || w.sums.Count == 0 {
		return nil
	}
	rec := MetricsRecord{Step: f.step, Epoch: float64(f.step) / float64(f.nb), Split: StepSplit,
		Loss: w.sums.LossSum / float64(w.sums.Count), LR: f.sched.LR(f.step - 1), Wall: wall}
	if w.seconds > 0 {
		rec.ImagesPS = float64(w.images) / w.seconds
	}
	if f.bar != nil {
		_ = f.bar.Clear()
	}
	ev := f.t.Log.Info().Int("step", f.step).Float64("epoch", round3(rec.Epoch)).Float64("train_loss", rec.Loss)
	ev = f.task.trainFigures(w.sums, &rec, ev)
	ev.Float64("lr", rec.LR).Float64("images_per_sec", math.Round(rec.ImagesPS)).Msg("steps")
	return f.record(rec)
}
