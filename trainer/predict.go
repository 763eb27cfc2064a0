package trainer

import (
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"gorgonia.org/tensor"
)

// Predict runs the model in evaluation mode on a batch (N,C,H,W) and returns
// its outputs (N, classes) as a new Dense: logits, or the scaled target for
// regression.
func (t *Trainer) Predict(x *tensor.Dense) (*tensor.Dense, error) {
	in, err := engine.FromDense(x)
	if err != nil {
		return nil, err
	}
	if in.DType() != engine.Float32 {
		in = in.As(engine.Float32)
	}
	defer engine.Drop(&t.evX)
	if in, err = t.onDevice(&t.evX, in); err != nil {
		return nil, err
	}
	defer layers.Evaluating(t.Model)()
	out, err := t.Model.Forward(in)
	if err != nil {
		return nil, err
	}
	if out.Device() != engine.CPU {
		h, err := engine.ToCPU(nil, out)
		if err != nil {
			return nil, err
		}
		return h.DenseErr()
	}
	return out.Clone().DenseErr()
}
