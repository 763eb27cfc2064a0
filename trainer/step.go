// Package trainer drives training: one step at a time here, whole runs in
// the rest of the package.
package trainer

import (
	"fmt"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// Classifier pairs a network with softmax cross-entropy and an optimiser, and
// runs training steps that allocate nothing once shapes are settled.
type Classifier struct {
	Net       layers.Layer
	Opt       Optimizer
	Smoothing float64 // label smoothing ε

	params  []*layers.Param
	probs   *engine.Tensor
	dlogits *engine.Tensor
}

// NewClassifier collects the network's parameters once.
func NewClassifier(net layers.Layer, opt Optimizer) *Classifier {
	_, params := layers.Params(net)
	return &Classifier{Net: net, Opt: opt, params: params}
}

// Params returns the trainable parameters in a fixed order.
func (c *Classifier) Params() []*layers.Param { return c.params }

// TrainStep runs forward, loss, backward and one optimiser update on a batch,
// returning the mean loss and the number of correct predictions.
//
//	x: the model's input batch (N, …)  labels: N class indices
func (c *Classifier) TrainStep(x *engine.Tensor, labels []int32, lr float64) (loss float64, correct int, err error) {
	for _, p := range c.params {
		p.Grad.Zero()
	}
	logits, err := c.Net.Forward(x)
	if err != nil {
		return 0, 0, err
	}
	c.probs = engine.Ensure(c.probs, logits.DType(), logits.Shape()...)
	c.dlogits = engine.Ensure(c.dlogits, logits.DType(), logits.Shape()...)
	loss, correct, err = engine.SoftmaxCrossEntropyForward(c.probs, logits, labels, c.Smoothing)
	if err != nil {
		return 0, 0, err
	}
	if loss != loss {
		return loss, correct, fmt.Errorf("loss is NaN")
	}
	if err := engine.SoftmaxCrossEntropyBackward(c.dlogits, c.probs, labels, c.Smoothing, 1); err != nil {
		return 0, 0, err
	}
	if _, err := c.Net.Backward(c.dlogits); err != nil {
		return 0, 0, err
	}
	return loss, correct, c.Opt.Step(c.params, lr)
}
