package trainer

import (
	"fmt"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// Where a trainer runs. On the GPU the parameters, gradients, optimiser
// state and layer buffers live in device memory; each step uploads its batch
// into one reused device buffer and brings back only the loss and the count
// of correct predictions. Evaluation brings back the logits for the metrics.

// SetDevice moves the model to device d (opening it first). Call it before
// Fit, Evaluate or Predict; the optimiser's state is made on the device on
// its first step, and a resumed checkpoint is copied into it.
func (t *Trainer) SetDevice(d engine.Device) error {
	if d == t.device {
		return nil
	}
	if _, err := engine.OpenDevice(d); err != nil {
		return err
	}
	if err := layers.ToDevice(t.Model, d); err != nil {
		return err
	}
	t.device = d
	return nil
}

// Device is where the trainer runs.
func (t *Trainer) Device() engine.Device { return t.device }

// onDevice returns x on the trainer's device, uploading it into *buf (made
// once, reused while the shape stays).
func (t *Trainer) onDevice(buf **engine.Tensor, x *engine.Tensor) (*engine.Tensor, error) {
	if x == nil || x.Device() == t.device {
		return x, nil
	}
	if *buf == nil || !(*buf).SameShape(x.Shape()...) {
		b, err := engine.NewOn(t.device, engine.Float32, x.Shape()...)
		if err != nil {
			return nil, fmt.Errorf("batch to %v: %w", t.device, err)
		}
		*buf = b
	}
	return *buf, (*buf).CopyFrom(x)
}

// onHost returns a CPU copy of a result on the device, in *buf.
func onHost(buf **engine.Tensor, x *engine.Tensor) (*engine.Tensor, error) {
	h, err := engine.ToCPU(*buf, x)
	if err == nil && x.Device() != engine.CPU {
		*buf = h
	}
	return h, err
}
