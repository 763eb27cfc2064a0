package bench

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// TTAConfig describes a time-to-accuracy run: train with Config's recipe
// (model, optimiser, schedule planned over Config.Epochs, batch, seed) and
// check the test accuracy after every epoch, stopping at Target.
type TTAConfig struct {
	Config      trainer.Config
	Train, Test *data.Dataset
	Target      float64 // test accuracy to reach, in (0, 1]
	// LossEvery records the mean training loss every this many steps (0:
	// about 20 points per epoch).
	LossEvery int
	// MaxSeconds caps the training time: past it the run stops mid-epoch,
	// checks the test set once more and reports Capped (0: no cap).
	MaxSeconds float64
	// OnEpoch, when set, sees each epoch's test check as it happens.
	OnEpoch func(TTAEpoch)
	// Device is where the model trains (zero: the CPU, or the default that
	// trainer.SetDefaultDevice set). On the GPU the training set is kept in
	// device memory when it fits, as in Fit.
	Device engine.Device
}

// TTAPoint is one point of the training-loss curve: the mean loss of the
// steps since the previous point, at this much training time.
type TTAPoint struct {
	Step    int     `json:"step"`
	Seconds float64 `json:"seconds"`
	Loss    float64 `json:"loss"`
}

// TTAEpoch is the test check after one epoch.
type TTAEpoch struct {
	Epoch        int     `json:"epoch"`
	Seconds      float64 `json:"seconds"` // training time so far (checks excluded)
	TrainLoss    float64 `json:"train_loss"`
	TestAccuracy float64 `json:"test_accuracy"`
	TestLoss     float64 `json:"test_loss"`
}

// TTARun is what one engine's time-to-accuracy run found (PyTorch's worker
// answers in the same form).
type TTARun struct {
	Params       int        `json:"params"`
	Reached      bool       `json:"reached"`
	Capped       bool       `json:"capped,omitempty"` // stopped at MaxSeconds
	Epochs       int        `json:"epochs"`           // epochs run (the one that reached Target, if any; a capped one counts)
	Seconds      float64    `json:"seconds"`          // training time, test checks and data loading excluded
	CheckSeconds float64    `json:"check_seconds"`
	Steps        int        `json:"steps"`
	ImagesPerSec float64    `json:"images_per_sec"`
	BestAccuracy float64    `json:"best_accuracy"`
	PerEpoch     []TTAEpoch `json:"per_epoch"`
	Curve        []TTAPoint `json:"curve"`
}

// TimeToAccuracy trains a fresh model of c.Config.Model on c.Train with the
// recipe in c.Config, exactly as Fit's training loop does (same loader,
// schedule, optimiser, seed and step, trainer.TrainOnBatch), and evaluates
// c.Test after each epoch. The clock stops during the checks.
// Classification only.
func TimeToAccuracy(ctx context.Context, c TTAConfig) (res *TTARun, err error) {
	l, err := newTTALoop(c)
	if err != nil {
		return nil, err
	}
	// The suite trains several models in this process, one after another.
	defer l.t.Release()
	defer l.onDev.Release()
	defer l.losses.Release()
	defer l.graph.Release()
	defer func() {
		if cerr := l.loader.Close(); cerr != nil && err == nil {
			res, err = nil, cerr
		}
	}()
	for epoch := 0; epoch < c.Config.Epochs && !l.res.Reached && !l.res.Capped; epoch++ {
		if err := l.epoch(ctx, epoch); err != nil {
			return nil, err
		}
	}
	l.res.Epochs, l.res.Seconds, l.res.Steps = len(l.res.PerEpoch), l.wall, l.step
	l.res.ImagesPerSec = float64(l.images) / max(l.wall, 1e-9)
	return l.res, nil
}

// ttaLoop is a time-to-accuracy run under way: the counters outlive an
// epoch, and the loss curve's mean runs across epoch ends.
type ttaLoop struct {
	c      TTAConfig
	t      *trainer.Trainer
	onDev  *trainer.DeviceData
	loader *data.Loader
	sched  *trainer.Schedule
	every  int // steps per loss point
	res    *TTARun

	step, images int
	wall         float64 // training seconds, checks excluded
	lossSum      float64 // since the last loss point
	lossN        int

	// The steps' losses wait where they were made (as Fit's do) and are
	// read at each loss point, when the log is full and at an epoch's end,
	// so that a GPU step waits for nothing; graph runs a GPU step that
	// repeats as one CUDA graph.
	losses            *engine.LossLog
	graph             *engine.StepGraph
	sizes             []int // the batch size of each step in losses
	read              []engine.StepLoss
	epochLoss, epochN float64
}

// newTTALoop checks c and builds the model, trainer, loader and schedule.
func newTTALoop(c TTAConfig) (*ttaLoop, error) {
	cfg := c.Config
	switch {
	case c.Train == nil || c.Train.Len() == 0 || c.Test == nil || c.Test.Len() == 0:
		return nil, fmt.Errorf("time to accuracy: need training and test data")
	case c.Train.Task != data.Classification || cfg.Regression:
		return nil, fmt.Errorf("time to accuracy: %s is not a classification data set", c.Train.Name)
	case !(c.Target > 0 && c.Target <= 1):
		return nil, fmt.Errorf("time to accuracy: target %v is not an accuracy in (0, 1]", c.Target)
	}
	if err := cfg.ValidateTraining(); err != nil {
		return nil, err
	}
	spec := layers.Spec{Channels: c.Train.Channels, Height: c.Train.Height, Width: c.Train.Width,
		Classes: c.Train.NumClasses(), Hidden: cfg.Hidden, Depth: cfg.Depth, Seed: cfg.Seed}
	model, err := layers.Build(cfg.Model, spec)
	if err != nil {
		return nil, err
	}
	t, err := trainer.NewTrainer(cfg, model)
	if err != nil {
		return nil, err
	}
	if c.Device != engine.CPU {
		if err := t.SetDevice(c.Device); err != nil {
			return nil, fmt.Errorf("time to accuracy: %w", err)
		}
	}
	onDev := t.KeepOnDevice(c.Train)
	loader, err := data.NewLoader(c.Train, data.LoaderOptions{BatchSize: cfg.Batch, Shuffle: true,
		DropLast: cfg.DropLast, Augment: cfg.Augment, Seed: cfg.Seed})
	if err != nil {
		return nil, err
	}
	nb := loader.BatchesPerEpoch()
	var sched *trainer.Schedule
	if nb == 0 {
		err = fmt.Errorf("time to accuracy: %d samples make no batch of %d", c.Train.Len(), cfg.Batch)
	} else {
		sched, err = trainer.NewSchedule(trainer.ScheduleConfig{Kind: cfg.Schedule, BaseLR: cfg.LR, Total: nb * cfg.Epochs,
			Warmup: cfg.Warmup, StepSize: cfg.StepSize, Milestones: cfg.Milestones, Gamma: cfg.Gamma})
	}
	if err != nil {
		if cerr := loader.Close(); cerr != nil {
			err = fmt.Errorf("%w (and closing the loader: %v)", err, cerr)
		}
		onDev.Release()
		t.Release()
		return nil, err
	}
	l := &ttaLoop{c: c, t: t, onDev: onDev, loader: loader, sched: sched, every: c.LossEvery,
		res: &TTARun{Params: layers.CountParams(model)}, losses: engine.NewLossLog(50), graph: t.NewStepGraph()}
	if l.every <= 0 {
		l.every = max(1, nb/20)
	}
	model.SetTraining(true)
	return l, nil
}

// epoch trains one epoch (or up to the time cap), then checks the test set.
func (l *ttaLoop) epoch(ctx context.Context, epoch int) error {
	l.epochLoss, l.epochN = 0, 0
	start := time.Now()
	for b := range l.loader.Batches(epoch, 0) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if l.c.MaxSeconds > 0 && l.wall+time.Since(start).Seconds() >= l.c.MaxSeconds {
			l.res.Capped = true
			break
		}
		if err := l.trainStep(b); err != nil {
			return fmt.Errorf("time to accuracy: epoch %d, step %d: %w", epoch+1, l.step, err)
		}
		l.step, l.images = l.step+1, l.images+b.Size()
		if l.step%l.every == 0 || l.losses.Len() == l.losses.Cap() {
			if err := l.readLosses(); err != nil {
				return fmt.Errorf("time to accuracy: epoch %d, read at step %d: %w", epoch+1, l.step, err)
			}
		}
		if l.step%l.every == 0 {
			l.res.Curve = append(l.res.Curve, TTAPoint{Step: l.step, Seconds: l.wall + time.Since(start).Seconds(), Loss: l.lossSum / float64(l.lossN)})
			l.lossSum, l.lossN = 0, 0
		}
	}
	if err := l.readLosses(); err != nil { // waits for the epoch's last step
		return fmt.Errorf("time to accuracy: epoch %d: %w", epoch+1, err)
	}
	l.wall += time.Since(start).Seconds()
	return l.check(epoch, l.epochLoss/max(l.epochN, 1))
}

// trainStep takes one step as Fit does, its loss left in l.losses.
func (l *ttaLoop) trainStep(b *data.Batch) error {
	err := l.graph.Step(func() error { return l.t.TrainOnBatchLogged(l.onDev, b, l.sched.LR(l.step), l.losses) })
	if err == nil && b.Size() > 0 {
		l.sizes = append(l.sizes, b.Size())
	}
	return err
}

// readLosses adds the logged steps' losses to the curve's and the epoch's
// sums; a loss that is not finite ends the run, as TrainOnBatch's would.
func (l *ttaLoop) readLosses() error {
	var err error
	if l.read, err = l.losses.Read(l.read[:0]); err != nil {
		return err
	}
	for i, r := range l.read {
		if math.IsNaN(r.Loss) || math.IsInf(r.Loss, 0) {
			return fmt.Errorf("loss is %v", r.Loss)
		}
		l.lossSum, l.lossN = l.lossSum+r.Loss, l.lossN+1
		l.epochLoss, l.epochN = l.epochLoss+r.Loss*float64(l.sizes[i]), l.epochN+float64(l.sizes[i])
	}
	l.sizes = l.sizes[:0]
	return nil
}

// check evaluates the test set after epoch, off the clock.
func (l *ttaLoop) check(epoch int, trainLoss float64) error {
	start := time.Now()
	r, err := l.t.Evaluate(l.c.Test)
	if err != nil {
		return err
	}
	l.res.CheckSeconds += time.Since(start).Seconds()
	e := TTAEpoch{Epoch: epoch + 1, Seconds: l.wall, TrainLoss: trainLoss, TestAccuracy: r.Accuracy, TestLoss: r.Loss}
	l.res.PerEpoch = append(l.res.PerEpoch, e)
	l.res.BestAccuracy = max(l.res.BestAccuracy, r.Accuracy)
	l.res.Reached = r.Accuracy >= l.c.Target
	if l.c.OnEpoch != nil {
		l.c.OnEpoch(e)
	}
	return nil
}
