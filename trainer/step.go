// Package trainer drives training: one step at a time here, whole runs in
// the rest of the package.
package trainer

import (
	"fmt"
	"math"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// Classifier pairs a network with softmax cross-entropy and an optimiser, and
// runs training steps that allocate nothing once shapes are settled.
type Classifier struct {
	Net       layers.Layer
	Opt       Optimizer
	Smoothing float64 // label smoothing ε
	ClipNorm  float64 // clip the global gradient norm to this (0: off)

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
	loss, err = step(c.Net, c.params, c.Opt, c.ClipNorm, x, lr, func(logits *engine.Tensor) (float64, *engine.Tensor, error) {
		c.probs = engine.EnsureLike(c.probs, logits, logits.Shape()...)
		c.dlogits = engine.EnsureLike(c.dlogits, logits, logits.Shape()...)
		loss, n, err := engine.SoftmaxCrossEntropyForward(c.probs, logits, labels, c.Smoothing)
		correct = n
		if err != nil {
			return 0, nil, err
		}
		if err := finiteTrainingLoss(loss); err != nil {
			return loss, nil, err
		}
		return loss, c.dlogits, engine.SoftmaxCrossEntropyBackward(c.dlogits, c.probs, labels, c.Smoothing, 1)
	})
	return loss, correct, err
}

// step is what every training step shares: zero the gradients, forward,
// the loss and the gradient of the outputs (lossGrad), backward, clip, and
// update.
func step(net layers.Layer, params []*layers.Param, opt Optimizer, clipNorm float64, x *engine.Tensor, lr float64,
	lossGrad func(out *engine.Tensor) (float64, *engine.Tensor, error)) (float64, error) {
	for _, p := range params {
		if err := p.Grad.Zero(); err != nil {
			return 0, err
		}
	}
	out, err := net.Forward(x)
	if err != nil {
		return 0, err
	}
	loss, dout, err := lossGrad(out)
	if err != nil {
		return loss, err
	}
	if _, err := net.Backward(dout); err != nil {
		return 0, err
	}
	if clipNorm > 0 {
		// Only when clipping: the norm is a pass over every gradient (on the
		// GPU, a device-to-host copy per parameter) that nothing else reads.
		if _, err := ClipGradNorm(params, clipNorm); err != nil {
			return loss, err
		}
	}
	return loss, opt.Step(params, lr)
}

// finiteTrainingLoss stops a run whose loss has diverged.
func finiteTrainingLoss(loss float64) error {
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return fmt.Errorf("loss is %v", loss)
	}
	return nil
}

// ClipGradNorm scales all gradients down so that their global L2 norm is at
// most maxNorm (torch.nn.utils.clip_grad_norm_), and returns the norm before
// clipping. maxNorm 0 only measures. A failing device call stops it with the
// error, never with a NaN norm that would skip the clipping.
func ClipGradNorm(params []*layers.Param, maxNorm float64) (float64, error) {
	s := 0.0
	for _, p := range params {
		ss, err := engine.SumSquares(p.Grad)
		if err != nil {
			return 0, err
		}
		s += ss
	}
	norm := math.Sqrt(s)
	if maxNorm > 0 && norm > maxNorm {
		scale := maxNorm / (norm + 1e-6)
		for _, p := range params {
			if err := engine.Scale(p.Grad, scale); err != nil {
				return norm, err
			}
		}
	}
	return norm, nil
}

// Regressor is Classifier's counterpart for a one-output model trained with
// mean squared error.
type Regressor struct {
	Net      layers.Layer
	Opt      Optimizer
	ClipNorm float64

	params []*layers.Param
	dpred  *engine.Tensor
}

// NewRegressor collects the network's parameters once.
func NewRegressor(net layers.Layer, opt Optimizer) *Regressor {
	_, params := layers.Params(net)
	return &Regressor{Net: net, Opt: opt, params: params}
}

// Params returns the trainable parameters in a fixed order.
func (r *Regressor) Params() []*layers.Param { return r.params }

// TrainStep runs one step on predictions (N,1) against targets (N,1) and
// returns the batch's mean squared error.
func (r *Regressor) TrainStep(x, targets *engine.Tensor, lr float64) (float64, error) {
	return step(r.Net, r.params, r.Opt, r.ClipNorm, x, lr, func(pred *engine.Tensor) (float64, *engine.Tensor, error) {
		loss, err := engine.MSEForward(pred, targets)
		if err != nil {
			return 0, nil, err
		}
		if err := finiteTrainingLoss(loss); err != nil {
			return loss, nil, err
		}
		r.dpred = engine.EnsureLike(r.dpred, pred, pred.Shape()...)
		return loss, r.dpred, engine.MSEBackward(r.dpred, pred, targets, 1)
	})
}
