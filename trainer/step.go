// Package trainer drives training: one step at a time here, whole runs in
// the rest of the package.
package trainer

import (
	"errors"
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
	// MicroBatch, when above 0 and below a batch's rows, runs the batch's
	// forward and backward that many rows at a time (microBatches); at 0
	// AutoMicro chooses (its zero value: the whole batch), below 0 the batch
	// runs whole.
	MicroBatch int
	AutoMicro  MicroBatchRule

	params  []*layers.Param
	grads   []*engine.Tensor // the step's gradient list, kept: a step allocates nothing
	views   []*engine.Tensor // the micro-batches' views of the batch, kept likewise
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

func (c *Classifier) after() stepAfter {
	return stepAfter{c.ClipNorm, c.Reduce, &c.grads, c.MicroBatch, c.AutoMicro, &c.views}
}

// TrainStep runs forward, loss, backward and one optimiser update on a batch,
// returning the mean loss and the number of correct predictions.
//
//	x: the model's input batch (N, …)  labels: N class indices
func (c *Classifier) TrainStep(x *engine.Tensor, labels []int32, lr float64) (loss float64, correct int, err error) {
	if err := checkLabels(x, labels); err != nil {
		return 0, 0, err
	}
	loss, err = step(c.Net, c.params, c.Opt, c.after(), x, lr, c.crossEntropy(labels, &correct, true))
	return loss, correct, err
}

// checkLabels refuses a batch whose labels are not one per row, as
// PyTorch's cross-entropy does ("Expected input batch_size (2) to match
// target batch_size (7)"): a micro-batch would otherwise slice past the
// labels, and extra labels would go unnoticed.
func checkLabels(x *engine.Tensor, labels []int32) error {
	if x.Rank() == 0 || len(labels) != x.Dim(0) {
		return &engine.ShapeError{Op: "Classifier.TrainStep", Msg: fmt.Sprintf("%d labels for a batch of %v", len(labels), x.Shape())}
	}
	return nil
}

// crossEntropy is the loss step takes: softmax cross-entropy of the rows'
// logits and labels and its gradient in one call (one launch on the GPU),
// the correct predictions added to correct. With stop, a loss that is not
// finite stops the step before the backward pass.
func (c *Classifier) crossEntropy(labels []int32, correct *int, stop bool) lossGrad {
	return func(logits *engine.Tensor, rows microBatch) (float64, *engine.Tensor, error) {
		c.probs = engine.EnsureLike(c.probs, logits, logits.Shape()...)
		c.dlogits = engine.EnsureLike(c.dlogits, logits, logits.Shape()...)
		loss, n, err := engine.SoftmaxCrossEntropy(c.probs, c.dlogits, logits, labels[rows.lo:rows.lo+rows.n], c.Smoothing,
			rows.share)
		*correct += n
		if err != nil {
			return 0, nil, err
		}
		if stop {
			if err := finiteTrainingLoss(loss); err != nil {
				return loss, nil, err
			}
		}
		return loss, c.dlogits, nil
	}
}

// TrainStepLogged is TrainStep whose loss and correct count go into log
// (engine.SoftmaxCrossEntropyLogged) instead of coming back, so that a step
// on the GPU waits for nothing: Fit reads the log every so many steps. A
// loss that is not finite does not stop the step; the log's reader sees it.
// In micro-batches (CPU only) the step's one record is the batch's mean loss
// and correct count, added up on the host.
func (c *Classifier) TrainStepLogged(x *engine.Tensor, labels []int32, lr float64, log *engine.LossLog) error {
	if err := checkLabels(x, labels); err != nil {
		return err
	}
	if c.after().size(x) > 0 {
		correct := 0
		loss, err := step(c.Net, c.params, c.Opt, c.after(), x, lr, c.crossEntropy(labels, &correct, false))
		if err != nil {
			return err
		}
		return log.Add(engine.StepLoss{Loss: loss, Correct: correct})
	}
	_, err := step(c.Net, c.params, c.Opt, c.after(), x, lr, func(logits *engine.Tensor, _ microBatch) (float64, *engine.Tensor, error) {
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
	// micro, auto and views: the micro-batches' rows, chosen by auto at 0,
	// and their views (microBatches).
	micro int
	auto  MicroBatchRule
	views *[]*engine.Tensor
}

// size is the micro-batch a batch x is split into (0: none).
func (a stepAfter) size(x *engine.Tensor) int {
	return microSize(a.micro, a.auto, x.Dim(0), x.Device())
}

// microSize is the micro-batch set as micro, or chosen by auto at 0, for a
// batch of rows on dev: 0 where the batch runs whole.
func microSize(micro int, auto MicroBatchRule, rows int, dev engine.Device) int {
	if micro == 0 {
		micro = auto.Size(rows, dev)
	}
	if micro <= 0 || micro >= rows {
		return 0
	}
	return micro
}

// MicroBatchFor is the micro-batch TrainStep splits a batch of rows on dev
// into: 0 where it runs whole.
func (c *Classifier) MicroBatchFor(rows int, dev engine.Device) int {
	return microSize(c.MicroBatch, c.AutoMicro, rows, dev)
}

// lossGrad is a step's loss: the mean loss of the outputs of a batch's rows
// and its gradient scaled by their share of the batch.
type lossGrad func(out *engine.Tensor, rows microBatch) (float64, *engine.Tensor, error)

// microBatch is rows [lo, lo+n) of a batch, share = n/N of it.
type microBatch struct {
	lo, n int
	share float64
}

// step is what every training step shares: zero the gradients, forward,
// the loss and the gradient of the outputs (lossGrad), backward, reduce
// over the ranks, clip, and update. The loss it returns is the batch's mean.
func step(net layers.Layer, params []*layers.Param, opt Optimizer, after stepAfter, x *engine.Tensor, lr float64,
	lossGrad lossGrad) (float64, error) {
	if opt == nil {
		return 0, errors.New("trainer: a training step needs an optimizer (NewClassifier or NewRegressor was given nil)")
	}
	if err := flattenDeviceGrads(params); err != nil {
		return 0, err
	}
	if err := clearGrads(params, after.grads); err != nil {
		return 0, err
	}
	var loss float64
	err := microBatches(x, after.size(x), after.views, func(xm *engine.Tensor, rows microBatch) error {
		out, err := net.Forward(xm)
		if err != nil {
			return err
		}
		l, dout, err := lossGrad(out, rows)
		loss += l * rows.share
		if err != nil {
			return err
		}
		return backward(net, dout, rows.lo+rows.n < x.Dim(0))
	})
	if err != nil {
		return loss, err
	}
	if err := settleGrads(params, after.grads); err != nil {
		return 0, err
	}
	return loss, update(params, opt, after, lr)
}

// backward runs net's backward pass; more says that micro-batches after this
// one will add to the gradients, so a model's AfterBackward (the ranks'
// buckets, sent as the pass finishes their layers) waits for the last one:
// sent after the first micro-batch, a bucket would miss the others' sums.
func backward(net layers.Layer, dout *engine.Tensor, more bool) error {
	if m, ok := net.(*layers.Model); ok && more && m.AfterBackward != nil {
		hook := m.AfterBackward
		m.AfterBackward = nil
		defer func() { m.AfterBackward = hook }()
	}
	_, err := net.Backward(dout)
	return err
}

// microBatches calls f on x whole, or, with micro above 0 and below x's rows,
// on views of micro rows at a time (the last one what is left), each
// forward and backward in turn: the backward passes add their gradients
// (the first one, of a cleared gradient, writes it), each scaled by its
// rows' share of the batch, so their sum is the whole batch's mean's, one
// update for the batch, and the activations kept for a backward pass are a
// micro-batch's. That is for the CPU's caches: gMLP's activations at batch
// 128 are 8 MB a tensor and go to memory between every two ops, a
// micro-batch's stay in L2 (1.2–1.4× the images/s on a 2-core Xeon,
// bench/results). Layers that mix the rows of a batch (batch norm) are
// refused where the micro-batch is set (CheckMicroBatch) and left whole by
// the automatic one (MicroBatchRule). On the GPU a micro-batch's loss would
// have to be read back: refused.
func microBatches(x *engine.Tensor, micro int, views *[]*engine.Tensor, f func(*engine.Tensor, microBatch) error) error {
	rows := x.Dim(0)
	if micro <= 0 || micro >= rows {
		return f(x, microBatch{0, rows, 1})
	}
	if x.Device() != engine.CPU {
		return fmt.Errorf("micro_batch %d: micro-batches run on the CPU only, not on the %v", micro, x.Device())
	}
	for i, lo := 0, 0; lo < rows; i, lo = i+1, lo+micro {
		n := min(micro, rows-lo)
		if i == len(*views) {
			*views = append(*views, nil)
		}
		v, err := x.RowsView((*views)[i], lo, n)
		if err != nil {
			return err
		}
		(*views)[i] = v
		if err := f(v, microBatch{lo, n, float64(n) / float64(rows)}); err != nil {
			return err
		}
	}
	return nil
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
		return lossNotFinite(loss)
	}
	return nil
}

// lossNotFinite is the error of a diverged loss: the one failure a lower
// learning rate or clipping may cure (stepError advises them for it alone).
type lossNotFinite float64

func (l lossNotFinite) Error() string { return fmt.Sprintf("loss is %v", float64(l)) }

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
	// MicroBatch and AutoMicro are Classifier's.
	MicroBatch int
	AutoMicro  MicroBatchRule

	params []*layers.Param
	grads  []*engine.Tensor // as Classifier's
	views  []*engine.Tensor // as Classifier's
	tviews []*engine.Tensor // the targets' rows of each micro-batch
	dpred  *engine.Tensor
}

// NewRegressor collects the network's parameters once.
func NewRegressor(net layers.Layer, opt Optimizer) *Regressor {
	_, params := layers.Params(net)
	return &Regressor{Net: net, Opt: opt, params: params}
}

// Params returns the trainable parameters in a fixed order.
func (r *Regressor) Params() []*layers.Param { return r.params }

func (r *Regressor) after() stepAfter {
	return stepAfter{r.ClipNorm, r.Reduce, &r.grads, r.MicroBatch, r.AutoMicro, &r.views}
}

// TrainStep runs one step on predictions (N,1) against targets (N,1) and
// returns the batch's mean squared error.
func (r *Regressor) TrainStep(x, targets *engine.Tensor, lr float64) (float64, error) {
	i := 0
	return step(r.Net, r.params, r.Opt, r.after(), x, lr, func(pred *engine.Tensor, rows microBatch) (float64, *engine.Tensor, error) {
		t := targets
		if rows.n < targets.Dim(0) {
			if i == len(r.tviews) {
				r.tviews = append(r.tviews, nil)
			}
			v, err := targets.RowsView(r.tviews[i], rows.lo, rows.n)
			if err != nil {
				return 0, nil, err
			}
			r.tviews[i], t = v, v
			i++
		}
		loss, err := engine.MSEForward(pred, t)
		if err != nil {
			return 0, nil, err
		}
		if err := finiteTrainingLoss(loss); err != nil {
			return loss, nil, err
		}
		r.dpred = engine.EnsureLike(r.dpred, pred, pred.Shape()...)
		return loss, r.dpred, engine.MSEBackward(r.dpred, pred, t, rows.share)
	})
}
