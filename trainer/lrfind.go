package trainer

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

// LRFindOptions configure the learning-rate range test (Smith, "Cyclical
// Learning Rates for Training Neural Networks", 2017; fastai's lr_find):
// training steps at learning rates rising exponentially from Start to End.
type LRFindOptions struct {
	Start, End float64 // defaults 1e-7 and 10
	Steps      int     // default 200
	// Smoothing is β of the bias-corrected moving average of the loss
	// (default 0.9: 200 steps over eight decades leave little room for lag).
	Smoothing float64
	// Diverge stops the test once the smoothed loss exceeds Diverge × the
	// best smoothed loss so far (default 4).
	Diverge float64
}

// LRPoint is one step of the test.
type LRPoint struct {
	Step     int
	LR       float64
	Loss     float64 // the batch's loss
	Smoothed float64
}

// LRFindResult is the curve and what it suggests.
type LRFindResult struct {
	Points []LRPoint
	// Suggested is the learning rate where the smoothed loss falls fastest
	// against log LR, before its minimum (fastai's "steepest" suggestion).
	Suggested float64
	// MinLossLR is where the smoothed loss is lowest; a tenth of it is the
	// other usual rule of thumb.
	MinLossLR float64
	Diverged  bool // stopped early: the loss blew up
	// Rule is how Suggested was found: SuggestSteepest, SuggestMinOver10
	// (too short a curve, or no fall before its minimum), or SuggestNone
	// (Suggested 0: the loss was lowest at the first learning rate tried,
	// so it never fell and the range starts too high).
	Rule string
}

// The rules a suggestion comes from (LRFindResult.Rule).
const (
	SuggestSteepest  = "steepest fall of the smoothed loss against log lr, before its minimum"
	SuggestMinOver10 = "a tenth of the lr of the smoothed loss's minimum"
	SuggestNone      = "none: the smoothed loss was lowest at the first lr tried"
)

func (o *LRFindOptions) defaults() error {
	if o.Start == 0 {
		o.Start = 1e-7
	}
	if o.End == 0 {
		o.End = 10
	}
	if o.Steps == 0 {
		o.Steps = 200
	}
	if o.Smoothing == 0 {
		o.Smoothing = 0.9
	}
	if o.Diverge == 0 {
		o.Diverge = 4
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !(o.Start > 0) || !finite(o.Start) || !(o.End > o.Start) || !finite(o.End):
		return fmt.Errorf("lr-find: --start %v and --end %v: want 0 < start < end", o.Start, o.End)
	case o.Steps < 10:
		return fmt.Errorf("lr-find: --steps %d: want at least 10", o.Steps)
	case o.Smoothing < 0 || o.Smoothing >= 1:
		return fmt.Errorf("lr-find: smoothing %v: want [0, 1)", o.Smoothing)
	case !(o.Diverge > 1):
		return fmt.Errorf("lr-find: divergence factor %v: want > 1", o.Diverge)
	}
	return nil
}

// FindLR runs the learning-rate range test on train with t's model, batch
// size and optimiser kind, and returns the loss curve and a suggested
// learning rate. It uses an optimiser of its own and puts the model's
// weights and buffers back afterwards, so t is as it was.
func (t *Trainer) FindLR(ctx context.Context, train *data.Dataset, o LRFindOptions) (res *LRFindResult, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	c := t.Config
	if train == nil || train.Len() == 0 {
		return nil, fmt.Errorf("lr-find: no training data")
	}
	if err := checkHead(c, train); err != nil {
		return nil, fmt.Errorf("lr-find: %w", err)
	}
	saved := map[string]*engine.Tensor{}
	for name, v := range layers.FullState(t.Model) {
		saved[name] = v.Clone()
	}
	defer func() {
		// The range test's own result stands; a model that cannot be put
		// back says so in its error.
		if rerr := errors.Join(layers.ZeroGrad(t.Model), layers.LoadState(t.Model, saved)); rerr != nil && err == nil {
			res, err = nil, fmt.Errorf("lr-find: putting the model back: %w", rerr)
		}
		for _, v := range saved {
			v.Release()
		}
	}()
	return t.rangeTestOn(ctx, train, o)
}

// rangeTestOn runs the range test on train and suggests a learning rate.
func (t *Trainer) rangeTestOn(ctx context.Context, train *data.Dataset, o LRFindOptions) (*LRFindResult, error) {
	c := t.Config
	onModel, release := lrFindStep(t.Model, c, t.autoMicro)
	defer release()
	// The loader's batches are on the host: each goes to the model's
	// device first, as Fit's do (on the GPU every step failed,
	// "tensors on cpu and cuda").
	var xDev, yDev *engine.Tensor
	defer engine.Drop(&xDev, &yDev)
	step := func(b *data.Batch, lr float64) (float64, error) {
		on := *b
		var err error
		if on.X, err = t.onDevice(&xDev, b.X); err != nil {
			return 0, err
		}
		if on.Targets, err = t.onDevice(&yDev, b.Targets); err != nil {
			return 0, err
		}
		return onModel(&on, lr)
	}
	loader, err := data.NewLoader(train, data.LoaderOptions{BatchSize: c.Batch, Shuffle: true, DropLast: c.DropLast,
		Augment: c.Augment, Seed: c.Seed})
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	if loader.BatchesPerEpoch() == 0 {
		return nil, fmt.Errorf("lr-find: %d training samples make no batch of %d with drop-last", train.Len(), c.Batch)
	}

	defer t.Model.SetTraining(layers.Training(t.Model)) // the caller's mode, as it was
	t.Model.SetTraining(true)
	res, err := rangeTest(ctx, loader, o, step)
	if err != nil {
		return nil, err
	}
	t.Log.Info().Int("steps", len(res.Points)).Bool("diverged", res.Diverged).Msg("lr range test")
	if len(res.Points) == 0 {
		return nil, fmt.Errorf("lr-find: the loss was not finite at the first step (lr %g)", o.Start)
	}
	res.Suggested, res.MinLossLR, res.Rule = suggestLR(res.Points)
	return res, nil
}

// lrFindStep is a training step of model under c (auto: micro_batch 0's
// rule) with an optimiser of its own, so that the range test leaves the
// trainer's optimiser state alone; release frees that optimiser's state and
// the step's buffers.
func lrFindStep(model layers.Layer, c Config, auto MicroBatchRule) (step func(b *data.Batch, lr float64) (float64, error), release func()) {
	opt := newOptimizer(c)
	if c.Regression {
		r := NewRegressor(model, opt)
		r.ClipNorm, r.MicroBatch, r.AutoMicro = c.ClipNorm, c.MicroBatch, auto
		return func(b *data.Batch, lr float64) (float64, error) { return r.TrainStep(b.X, b.Targets, lr) },
			func() { ReleaseOptimizer(opt); r.ReleaseBuffers() }
	}
	cl := NewClassifier(model, opt)
	cl.Smoothing, cl.ClipNorm, cl.MicroBatch, cl.AutoMicro = c.LabelSmoothing, c.ClipNorm, c.MicroBatch, auto
	return func(b *data.Batch, lr float64) (float64, error) {
		loss, _, err := cl.TrainStep(b.X, b.Labels, lr)
		return loss, err
	}, func() { ReleaseOptimizer(opt); cl.ReleaseBuffers() }
}

// rangeTest takes o.Steps steps at learning rates rising exponentially from
// o.Start to o.End and records the loss and its smoothed curve, stopping
// early when the smoothed loss passes o.Diverge times its best.
func rangeTest(ctx context.Context, loader *data.Loader, o LRFindOptions, step func(*data.Batch, float64) (float64, error)) (*LRFindResult, error) {
	res := &LRFindResult{}
	ratio := math.Log(o.End / o.Start)
	avg, best := 0.0, math.Inf(1)
	i := 0
	for epoch := 0; i < o.Steps && !res.Diverged; epoch++ {
		for b := range loader.Batches(epoch, 0) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			lr := o.Start * math.Exp(ratio*float64(i)/float64(o.Steps-1))
			loss, err := step(b, lr)
			if err != nil {
				if math.IsNaN(loss) || math.IsInf(loss, 0) {
					res.Diverged = true // the loss overflowed: as diverged as it gets
					break
				}
				return nil, fmt.Errorf("lr-find: step %d at lr %.3g: %w", i, lr, err)
			}
			avg = o.Smoothing*avg + (1-o.Smoothing)*loss
			sm := avg / (1 - math.Pow(o.Smoothing, float64(i+1)))
			res.Points = append(res.Points, LRPoint{Step: i, LR: lr, Loss: loss, Smoothed: sm})
			best = math.Min(best, sm)
			i++
			if sm > o.Diverge*best {
				res.Diverged = true
				break
			}
			if i == o.Steps {
				break
			}
		}
	}
	return res, nil
}

// suggestLR returns the learning rate of the steepest fall of the smoothed
// loss against log LR before its minimum, and the learning rate of the
// minimum. The first tenth of the curve (the moving average warming up) and
// its last few points are left out, as fastai does; with too few points
// left (under ten points in all) the suggestion is a tenth of the minimum's
// learning rate; with the minimum at the first point, where the loss never
// fell, there is none (0).
func suggestLR(pts []LRPoint) (steepest, minLR float64, rule string) {
	lo, hi := len(pts)/10, len(pts)-len(pts)/40
	imin := 0
	for i, p := range pts {
		if p.Smoothed < pts[imin].Smoothed {
			imin = i
		}
	}
	minLR = pts[imin].LR
	if imin == 0 && len(pts) > 1 {
		return 0, minLR, SuggestNone
	}
	hi = min(hi, imin+1)
	if len(pts) < 10 || hi-lo < 3 {
		return minLR / 10, minLR, SuggestMinOver10
	}
	best, ibest := math.Inf(1), -1
	for i := max(lo, 1); i < hi-1; i++ {
		g := (pts[i+1].Smoothed - pts[i-1].Smoothed) / math.Log(pts[i+1].LR/pts[i-1].LR)
		if g < best {
			best, ibest = g, i
		}
	}
	if ibest < 0 || best >= 0 {
		return minLR / 10, minLR, SuggestMinOver10
	}
	return pts[ibest].LR, minLR, SuggestSteepest
}
