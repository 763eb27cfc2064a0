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
	// Reduce, when set, runs between backward and clipping: data-parallel
	// training averages the gradients over the ranks there.
	Reduce func(params []*layers.Param) error

	params  []*layers.Param
	grads   []*engine.Tensor // the step's gradient list, kept: a step allocates nothing
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

func (c *Classifier) after() stepAfter { return stepAfter{c.ClipNorm, c.Reduce, &c.grads} }

// TrainStep runs forward, loss, backward and one optimiser update on a batch,
// returning the mean loss and the number of correct predictions.
//
//	x: the model's input batch (N, …)  labels: N class indices
func (c *Classifier) TrainStep(x *engine.Tensor, labels []int32, lr float64) (loss float64, correct int, err error) {
	loss, err = step(c.Net, c.params, c.Opt, c.after(), x, lr, func(logits *engine.Tensor) (float64, *engine.Tensor, error) {
		c.probs = engine.EnsureLike(c.probs, logits, logits.Shape()...)
		c.dlogits = engine.EnsureLike(c.dlogits, logits, logits.Shape()...)
		// The loss and its gradient in one call (one launch on the GPU); a
		// loss that is not finite stops the step before the backward pass.
		loss, n, err := engine.SoftmaxCrossEntropy(c.probs, c.dlogits, logits, labels, c.Smoothing, 1)
		correct = n
		if err != nil {
			return 0, nil, err
		}
		if err := finiteTrainingLoss(loss); err != nil {
			return loss, nil, err
		}
		return loss, c.dlogits, nil
	})
	return loss, correct, err
}

// TrainStepLogged is TrainStep whose loss and correct count go into log
// (engine.SoftmaxCrossEntropyLogged) instead of coming back, so that a step
// on the GPU waits for nothing: Fit reads the log every so many steps. A
// loss that is not finite does not stop the step; the log's reader sees it.
func (c *Classifier) TrainStepLogged(x *engine.Tensor, labels []int32, lr float64, log *engine.LossLog) error {
	_, err := step(c.Net, c.params, c.Opt, c.after(), x, lr, func(logits *engine.Tensor) (float64, *engine.Tensor, error) {
		c.probs = engine.EnsureLike(c.probs, logits, logits.Shape()...)
		c.dlogits = engine.EnsureLike(c.dlogits, logits, logits.Shape()...)
		return 0, c.dlogits, engine.SoftmaxCrossEntropyLogged(c.probs, c.dlogits, logits, labels, c.Smoothing, 1, log)
	})
	return err
}

// stepAfter is what a step does besides forward and backward: the list
// it gathers the gradients into (to zero them before, to clip them after),
// and between backward and the update, the reduction and the clipping.
type stepAfter struct {
	clipNorm float64
	reduce   func(params []*layers.Param) error
	grads    *[]*engine.Tensor
}

// step is what every training step shares: zero the gradients, forward,
// the loss and the gradient of the outputs (lossGrad), backward, reduce
// over the ranks, clip, and update.
func step(net layers.Layer, params []*layers.Param, opt Optimizer, after stepAfter, x *engine.Tensor, lr float64,
	lossGrad func(out *engine.Tensor) (float64, *engine.Tensor, error)) (float64, error) {
	if err := flattenDeviceGrads(params); err != nil {
		return 0, err
	}
	if err := clearGrads(params, after.grads); err != nil {
		return 0, err
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
	if err := settleGrads(params, after.grads); err != nil {
		return 0, err
	}
	return loss, update(params, opt, after, lr)
}

// update is a step's end, from reduced gradients: clip, then the optimiser.
func update(params []*layers.Param, opt Optimizer, after stepAfter, lr float64) error {
	if after.reduce != nil {
		if err := after.reduce(params); err != nil {
			return err
		}
	}
	if after.clipNorm > 0 {
		// Only when clipping: the norm is a pass over every gradient that
		// nothing else reads (on the GPU computed and applied there, with
		// nothing read back).
		if err := clipGrads(params, after.grads, after.clipNorm); err != nil {
			return err
		}
	}
	return opt.Step(params, lr)
}

// flattenDeviceGrads puts a model's gradients on the GPU into one buffer
// the model owns (layers.FlattenModelGrads, once), so that zeroing them is
// one memset, not one per parameter; a reducer all-reduces the same buffer.
func flattenDeviceGrads(params []*layers.Param) error {
	if len(params) == 0 || params[0].Grad.Device() != engine.CUDA {
		return nil
	}
	if err := layers.FlattenModelGrads(params); err != nil {
		return fmt.Errorf("flat gradient buffer: %w", err)
	}
	return nil
}

// zeroGrads zeroes the gradients on every thread (engine.ZeroAll).
func zeroGrads(params []*layers.Param, list *[]*engine.Tensor) error {
	return withGrads(params, list, engine.ZeroAll)
}

// clearGrads starts a step's gradients at zero: those whose layers can
// overwrite them on the backward pass are marked cleared (Param.ClearGrad:
// no pass over them), the rest are zeroed as zeroGrads does.
func clearGrads(params []*layers.Param, list *[]*engine.Tensor) error {
	return zeroGradsIf(params, list, (*layers.Param).ClearGrad, false)
}

// settleGrads zeroes, after the backward pass, the gradients still marked
// cleared (Param.SettleGrad): those of layers it did not reach.
func settleGrads(params []*layers.Param, list *[]*engine.Tensor) error {
	return zeroGradsIf(params, list, (*layers.Param).SettleGrad, true)
}

// zeroGradsIf zeroes, on every thread, the gradients of the params for
// which marked(p) is want.
func zeroGradsIf(params []*layers.Param, list *[]*engine.Tensor, marked func(*layers.Param) bool, want bool) error {
	return withGradsOf(params, list, func(p *layers.Param) bool { return marked(p) == want }, engine.ZeroAll)
}

// clipGrads scales the gradients to a global norm of at most maxNorm
// (engine.ClipByGlobalNorm).
func clipGrads(params []*layers.Param, list *[]*engine.Tensor, maxNorm float64) error {
	return withGrads(params, list, func(grads []*engine.Tensor) error { return engine.ClipByGlobalNorm(grads, maxNorm) })
}

// withGrads calls do with the gradients of params, gathered into list. They
// are gathered each call, since flattening may have replaced the tensors
// with views of a flat buffer. The list belongs to the Classifier or
// Regressor, not to a sync.Pool: a pool empties at every GC, and refilling
// it allocated in steps that should allocate nothing (a GC in CI's
// allocation test, once).
func withGrads(params []*layers.Param, list *[]*engine.Tensor, do func([]*engine.Tensor) error) error {
	return withGradsOf(params, list, nil, do)
}

// withGradsOf is withGrads on the params that keep accepts (nil: all).
func withGradsOf(params []*layers.Param, list *[]*engine.Tensor, keep func(*layers.Param) bool,
	do func([]*engine.Tensor) error) error {
	grads := (*list)[:0]
	for _, p := range params {
		if keep == nil || keep(p) {
			grads = append(grads, p.Grad)
		}
	}
	err := do(grads)
	clear(grads) // hold no tensors between steps
	*list = grads[:0]
	return err
}

// idleStep is the step of a rank whose shard of a short last batch is
// empty: no forward or backward, a zero gradient into the reduction, and the
// same update as every other rank.
func idleStep(params []*layers.Param, opt Optimizer, after stepAfter, lr float64) error {
	if err := zeroGrads(params, after.grads); err != nil {
		return err
	}
	return update(params, opt, after, lr)
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
	Reduce   func(params []*layers.Param) error // as Classifier's

	params []*layers.Param
	grads  []*engine.Tensor // as Classifier's
	dpred  *engine.Tensor
}

// NewRegressor collects the network's parameters once.
func NewRegressor(net layers.Layer, opt Optimizer) *Regressor {
	_, params := layers.Params(net)
	return &Regressor{Net: net, Opt: opt, params: params}
}

// Params returns the trainable parameters in a fixed order.
func (r *Regressor) Params() []*layers.Param { return r.params }

func (r *Regressor) after() stepAfter { return stepAfter{r.ClipNorm, r.Reduce, &r.grads} }

// TrainStep runs one step on predictions (N,1) against targets (N,1) and
// returns the batch's mean squared error.
func (r *Regressor) TrainStep(x, targets *engine.Tensor, lr float64) (float64, error) {
	return step(r.Net, r.params, r.Opt, r.after(), x, lr, func(pred *engine.Tensor) (float64, *engine.Tensor, error) {
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
