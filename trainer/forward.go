package trainer

import (
	"fmt"
	"math"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// Outputs runs the model in evaluation mode over every sample of x, in
// batches of max(Config.Batch, 256) as Evaluate takes them, on the trainer's
// device, and returns the outputs on the CPU, (N, outputs). Unlike Predict,
// which runs x in one pass, it bounds the activations for a large x; and it
// refuses a NaN or infinite output, naming its sample, so that no
// probability or prediction is made of one.
//
//	x: (N, …) float32 on the CPU
func (t *Trainer) Outputs(x *engine.Tensor) (*engine.Tensor, error) {
	if x == nil || x.Rank() < 2 || x.Dim(0) == 0 {
		return nil, fmt.Errorf("Outputs: want a non-empty batch (N, …), got %v", x)
	}
	if x.DType() != engine.Float32 {
		x = x.As(engine.Float32)
	}
	batch, n := max(t.Config.Batch, 256), x.Dim(0)
	defer layers.Evaluating(t.Model)()
	var (
		dev, host *engine.Tensor // reused while the batch shape stays
		all       []float32
	)
	defer engine.Drop(&dev)
	for lo := 0; lo < n; lo += batch {
		xb, err := x.Rows(lo, min(batch, n-lo))
		if err != nil {
			return nil, err
		}
		if xb, err = t.onDevice(&dev, xb); err != nil {
			return nil, err
		}
		out, err := t.Model.Forward(xb)
		if err != nil {
			return nil, err
		}
		if out, err = onHost(&host, out); err != nil {
			return nil, err
		}
		if all, err = appendFinite(all, out, lo); err != nil {
			return nil, err
		}
	}
	return engine.FromFloat32(all, n, len(all)/n)
}

// appendFinite appends a batch's outputs, (B, K), to all, or refuses a
// non-finite one; first is the batch's first sample.
func appendFinite(all []float32, out *engine.Tensor, first int) ([]float32, error) {
	k := out.Len() / out.Dim(0)
	vals, err := out.ValuesErr()
	if err != nil {
		return nil, err
	}
	for i, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("the model's output for sample %d is %v: its weights (or the input) hold NaN or infinite values", first+i/k, v)
		}
		all = append(all, float32(v))
	}
	return all, nil
}

// Softmax returns the softmax of each row of logits, (N, K), as float64
// probabilities on the CPU. It is the engine's softmax, the one training
// uses: SoftmaxCrossEntropyForward's, given labels of class 0 (valid for any
// K), its loss unused.
func Softmax(logits *engine.Tensor) (*engine.Tensor, error) {
	l := logits.As(engine.Float64)
	if l.Rank() != 2 || l.Dim(0) == 0 {
		return nil, fmt.Errorf("Softmax: want logits (N, K), got %v", logits)
	}
	p := engine.New(engine.Float64, l.Shape()...)
	if _, _, err := engine.SoftmaxCrossEntropyForward(p, l, make([]int32, l.Dim(0)), 0); err != nil {
		return nil, err
	}
	return p, nil
}
