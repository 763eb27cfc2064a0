package trainer

import (
	"errors"
	"fmt"
	"math"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/trainer/data"
)

// A training loop of one's own (the benchmarks' time to accuracy, Keras's
// train_on_batch) takes Fit's steps through TrainOnBatch: the same
// optimiser, clipping, label smoothing and device as Fit, with the caller
// choosing the batches and the learning rate.

// DeviceData is a training set held in device memory, as Fit holds its own,
// so that each step gathers its batch there from the batch's indices instead
// of uploading the images. A nil *DeviceData means the set stays on the host.
type DeviceData struct{ g *gpuData }

// KeepOnDevice copies ds into device memory when the trainer runs on the GPU,
// the configuration does not augment (augmented batches differ from the
// stored images) and ds takes under a quarter of the free device memory.
// Otherwise, or if the copy fails (logged), it returns nil and batches are
// uploaded one at a time: either way TrainOnBatch gives the same steps.
func (t *Trainer) KeepOnDevice(ds *data.Dataset) *DeviceData {
	if g := t.dataOnDevice(ds); g != nil {
		return &DeviceData{g: g}
	}
	return nil
}

// TrainOnBatch takes one optimiser step on batch b at learning rate lr, as
// Fit does, and returns the batch's mean loss and, for classification, the
// count of correct answers. d is ds kept on the device by KeepOnDevice, or
// nil. A loss that is not finite is an error.
//
// In a world of several ranks (Trainer.World) every rank calls it at once
// with its shard of the same global batch, an empty one included: the
// gradients are averaged over the ranks, each weighted by its share of
// the samples, before the update, and the loss and count are this rank's.
func (t *Trainer) TrainOnBatch(d *DeviceData, b *data.Batch, lr float64) (loss float64, correct int, err error) {
	x, err := t.batchStep(d, b, lr)
	if err != nil || x == nil {
		return 0, 0, err
	}
	return t.newTask().trainStep(x, b, lr)
}

// TrainOnBatchLogged is TrainOnBatch as Fit takes its steps: the step's
// loss and correct count go into log (engine.LossLog: Read it every so many
// steps, and before it holds Cap records) instead of coming back, so that a
// GPU step waits for nothing. A loss that is not finite is found at the
// read. A rank's idle step on an empty shard logs nothing. Bracketed by a
// StepGraph (NewStepGraph), a GPU step that repeats runs as one CUDA graph.
func (t *Trainer) TrainOnBatchLogged(d *DeviceData, b *data.Batch, lr float64, log *engine.LossLog) error {
	x, err := t.batchStep(d, b, lr)
	if err != nil || x == nil {
		return err
	}
	return t.newTask().trainStepLogged(x, b, lr, log)
}

// batchStep is what every step on batch b does first: this rank's share of
// the gradient, the dropout masks' place, and the samples on the device. A
// rank with an empty shard takes its idle step here and gets no samples.
func (t *Trainer) batchStep(d *DeviceData, b *data.Batch, lr float64) (*engine.Tensor, error) {
	switch {
	case b == nil:
		return nil, errors.New("TrainOnBatch: no batch")
	case !(lr >= 0) || math.IsInf(lr, 0): // Fit's schedule refuses them; a loop of one's own too
		return nil, fmt.Errorf("TrainOnBatch: learning rate %v: must be a finite number ≥ 0", lr)
	case b.X == nil && !(b.Size() == 0 && t.distributed()): // a rank's idle step has none
		return nil, errors.New("TrainOnBatch: the batch has no inputs (X)")
	case b.X != nil && t.regressor != nil && b.Targets == nil:
		return nil, errors.New("TrainOnBatch: a regression's batch needs its Targets")
	case b.X != nil && t.classifier != nil && b.Labels == nil:
		return nil, errors.New("TrainOnBatch: a classification's batch needs its Labels")
	}
	t.gradScale = t.shareOf(b)
	t.grads.Share = t.gradScale
	for _, d := range t.dropouts {
		d.Shard(b.Start, b.Total)
	}
	if b.Size() == 0 && t.distributed() {
		return nil, t.idleStep(lr)
	}
	var g *gpuData
	if d != nil {
		g = d.g
	}
	return t.batchOnDevice(g, b)
}
