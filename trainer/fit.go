package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

// ErrInterrupted is returned by Fit when its context is cancelled (Ctrl-C):
// a checkpoint was written and the run can be resumed.
var ErrInterrupted = errors.New("training interrupted; checkpoint written, resume with --resume")

// Callbacks let a program watch a run and stop it. Any may be nil.
type Callbacks struct {
	// OnValidation runs after each validation; returning true stops the run.
	OnValidation func(MetricsRecord) bool
	// OnEpochEnd runs after each epoch with its training record; returning
	// true stops the run.
	OnEpochEnd func(MetricsRecord) bool
}

// Summary is what a run produced: summary.json.
type Summary struct {
	Model             string   `json:"model"`
	Dataset           string   `json:"dataset"`
	Params            int      `json:"params"`
	TestAccuracy      *float64 `json:"test_accuracy,omitempty"`
	TestTop5          *float64 `json:"test_top5,omitempty"`
	TestRMSE          *float64 `json:"test_rmse,omitempty"`
	TestMAE           *float64 `json:"test_mae,omitempty"`
	TestR2            *float64 `json:"test_r2,omitempty"`
	TestLoss          float64  `json:"test_loss"`
	Weights           string   `json:"weights"`
	EpochsRun         int      `json:"epochs_run"`
	BestEpoch         int      `json:"best_epoch"`
	StoppedEarly      bool     `json:"stopped_early"`
	StopReason        string   `json:"stop_reason"`
	Steps             int      `json:"steps"`
	TrainImagesPerSec float64  `json:"train_images_per_sec"`
	TrainSeconds      float64  `json:"train_seconds"`
	Confusion         [][]int  `json:"confusion,omitempty"`
}

// EvalResult holds a model's figures on one data set.
type EvalResult struct {
	Loss      float64 `json:"loss"`
	Accuracy  float64 `json:"accuracy,omitempty"`
	Top5      float64 `json:"top5,omitempty"`
	RMSE      float64 `json:"rmse,omitempty"`
	MAE       float64 `json:"mae,omitempty"`
	R2        float64 `json:"r2,omitempty"`
	Confusion [][]int `json:"confusion,omitempty"`
	Count     int     `json:"count"`
}

// Trainer runs Fit, Evaluate and Predict for a model: the Go counterpart of
// Keras's Model.fit. Config says how; Run, when set, receives the run
// directory's files; Progress, when set (a terminal), shows a progress bar.
type Trainer struct {
	Config    Config
	Model     layers.Layer
	Log       zerolog.Logger
	Run       *RunDir
	Progress  io.Writer
	Callbacks Callbacks
	Resume    bool

	opt        Optimizer
	classifier *Classifier
	regressor  *Regressor
	params     []*layers.Param
	vis        *visualState // pictures and TensorBoard events (visuals.go)

	device                   engine.Device  // device.go
	xDev, yDev, evX, evY, ev *engine.Tensor // batches on the device, results back
}

// NewTrainer prepares a trainer for model, which may be any network (not
// only one of the zoo), with configuration c (its training settings are
// validated; Model and Dataset are only names for the logs).
func NewTrainer(c Config, model layers.Layer) (*Trainer, error) {
	if err := c.ValidateTraining(); err != nil {
		return nil, err
	}
	t := &Trainer{Config: c, Model: model, Log: zerolog.Nop()}
	switch c.Optimizer {
	case "sgd":
		t.opt = &SGD{Momentum: c.Momentum, WeightDecay: c.WeightDecay, Nesterov: c.Nesterov}
	case "adam":
		t.opt = &AdamW{WeightDecay: c.WeightDecay, L2: true}
	default:
		t.opt = &AdamW{WeightDecay: c.WeightDecay}
	}
	if c.Regression {
		t.regressor = NewRegressor(model, t.opt)
		t.regressor.ClipNorm = c.ClipNorm
		t.params = t.regressor.Params()
	} else {
		t.classifier = NewClassifier(model, t.opt)
		t.classifier.Smoothing, t.classifier.ClipNorm = c.LabelSmoothing, c.ClipNorm
		t.params = t.classifier.Params()
	}
	if defaultDevice != engine.CPU {
		if err := t.SetDevice(defaultDevice); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// resumeKey is the configuration a resumed run must share with the run it
// continues: everything but where and how fast it runs.
func resumeKey(c Config) json.RawMessage {
	c.RunDir, c.Threads, c.Device, c.StopAfterEpoch, c.DataDir, c.NoVisuals = "", 0, "", 0, "", false
	b, _ := json.Marshal(c)
	return b
}

// Fit trains on s.Train, validates on s.Val (when present) and evaluates the
// chosen weights on s.Test (when present).
func (t *Trainer) Fit(ctx context.Context, s *data.Splits) (*Summary, error) {
	c := t.Config
	if s == nil || s.Train == nil || s.Train.Len() == 0 {
		return nil, fmt.Errorf("fit: no training data")
	}
	if c.Regression != (s.Train.Task == data.Regression) {
		return nil, fmt.Errorf("fit: data set %s is %v but the model has a %s head", s.Train.Name, s.Train.Task, map[bool]string{true: "regression", false: "classification"}[c.Regression])
	}
	loader, err := data.NewLoader(s.Train, data.LoaderOptions{BatchSize: c.Batch, Shuffle: true, DropLast: c.DropLast,
		Augment: c.Augment, Seed: c.Seed})
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	nb := loader.BatchesPerEpoch()
	gdata := t.dataOnDevice(s.Train)
	total := nb * c.Epochs
	if nb == 0 {
		return nil, fmt.Errorf("fit: %d training samples make no batch of %d with drop-last", s.Train.Len(), c.Batch)
	}
	sched, err := NewSchedule(ScheduleConfig{Kind: c.Schedule, BaseLR: c.LR, Total: total, Warmup: c.Warmup,
		StepSize: c.StepSize, Milestones: c.Milestones, Gamma: c.Gamma})
	if err != nil {
		return nil, err
	}
	monitor := c.EarlyStop
	if monitor == "" && s.Val != nil {
		monitor = "val_loss"
	}
	var stopper *EarlyStopping
	if monitor != "" {
		stopper = &EarlyStopping{Metric: monitor}
		if c.EarlyStop != "" {
			stopper.Patience, stopper.MinDelta, stopper.Target = c.Patience, c.MinDelta, c.Target
		}
	}
	if c.Batch&(c.Batch-1) != 0 {
		t.Log.Warn().Int("batch", c.Batch).Msg("batch size is not a power of two; kernels are tuned for powers of two")
	}
	if err := t.checkMemory(s.Train); err != nil {
		return nil, err
	}

	epoch0, step, elapsed := 0, 0, 0.0
	if t.Resume {
		if t.Run == nil {
			return nil, fmt.Errorf("resume: no run directory")
		}
		st, err := LoadCheckpoint(t.Run.File(CheckpointFile), t.Model, t.opt, t.params)
		if err != nil {
			return nil, fmt.Errorf("resume: %w", err)
		}
		if string(st.Config) != string(resumeKey(c)) {
			return nil, fmt.Errorf("resume: the configuration differs from the run in %s (only --run-dir, --threads, --device, --data-dir and --stop-after-epoch may change)", t.Run.Path)
		}
		epoch0, step, elapsed = st.Epoch, st.Step, st.Elapsed
		if st.Schedule != nil {
			sched.PlateauScale, sched.PlateauBest, sched.PlateauBad, sched.PlateauSeen =
				st.Schedule.PlateauScale, st.Schedule.PlateauBest, st.Schedule.PlateauBad, st.Schedule.PlateauSeen
		}
		if st.EarlyStop != nil && stopper != nil {
			stopper.Best, stopper.BestStep, stopper.BestEpoch, stopper.Bad, stopper.Seen =
				st.EarlyStop.Best, st.EarlyStop.BestStep, st.EarlyStop.BestEpoch, st.EarlyStop.Bad, st.EarlyStop.Seen
		}
		t.Log.Info().Int("epoch", epoch0).Int("step", step).Msg("resumed from checkpoint")
	}
	t.openVisuals(s, step)
	defer t.closeVisuals()
	t.Log.Info().Str("model", c.Model).Str("dataset", s.Train.Name).Int("params", layers.CountParams(t.Model)).
		Int("train", s.Train.Len()).Int("val", lenOf(s.Val)).Int("test", lenOf(s.Test)).
		Int("batches_per_epoch", nb).Int("epochs", c.Epochs).Int("total_steps", total).
		Str("schedule", sched.Config().Kind).Float64("lr", c.LR).Str("optimizer", c.Optimizer).
		Int("threads", engine.Threads()).Msg("training")

	checkpoint := func(epochsDone int) error {
		if t.Run == nil {
			return nil
		}
		return SaveCheckpoint(t.Run.File(CheckpointFile), t.Model, t.opt, t.params, RunState{
			Epoch: epochsDone, Step: step, Schedule: sched, EarlyStop: stopper,
			Config: resumeKey(c), Elapsed: elapsed,
		})
	}
	record := func(r MetricsRecord) {
		t.visualRecord(r)
		if t.Run != nil {
			if err := t.Run.Record(r); err != nil {
				t.Log.Error().Err(err).Msg("writing metrics")
			}
		}
	}

	var bar *progressbar.ProgressBar
	if t.Progress != nil {
		// Counted in images, so the rate it shows is images/s.
		bar = progressbar.NewOptions(loader.SamplesPerEpoch()*c.Epochs, progressbar.OptionSetWriter(t.Progress),
			progressbar.OptionShowIts(), progressbar.OptionSetItsString("img"),
			progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetWidth(30), progressbar.OptionClearOnFinish())
		_ = bar.Set(step * c.Batch)
	}

	summary := &Summary{Model: c.Model, Dataset: s.Train.Name, Params: layers.CountParams(t.Model)}
	warnedCollapse := false // say it once per run
	validate := func(epoch float64) (stop string, err error) {
		if s.Val == nil {
			return "", nil
		}
		if bar != nil {
			_ = bar.Clear()
		}
		r, err := t.Evaluate(s.Val)
		if err != nil {
			return "", err
		}
		rec := MetricsRecord{Step: step, Epoch: epoch, Split: "val", Loss: r.Loss, LR: sched.LR(step - 1), Wall: elapsed}
		ev := t.Log.Info().Int("step", step).Float64("epoch", round3(epoch)).Float64("val_loss", r.Loss)
		value := r.Loss
		if c.Regression {
			rec.RMSE, rec.MAE, rec.R2 = ptr(r.RMSE), ptr(r.MAE), ptr(r.R2)
			ev = ev.Float64("val_rmse", r.RMSE).Float64("val_mae", r.MAE)
			if monitor == "val_rmse" {
				value = r.RMSE
			}
		} else {
			rec.Accuracy = ptr(r.Accuracy)
			ev = ev.Float64("val_acc", r.Accuracy)
			if monitor == "val_acc" {
				value = r.Accuracy
			}
		}
		ev.Msg("validation")
		if !c.Regression && !warnedCollapse {
			warnedCollapse = t.warnIfCollapsed("validation", r.Confusion, s.Val.Classes)
		}
		record(rec)
		t.visualValidation(s.Val, step, epoch, r)
		sched.Observe(r.Loss)
		if stopper != nil && monitor != "train_loss" {
			improved, why := stopper.Observe(value, int(math.Ceil(epoch)), step)
			if improved && t.Run != nil {
				summary.BestEpoch = int(math.Ceil(epoch))
				if err := layers.SaveWeights(t.Model, t.Run.File(BestWeights), map[string]string{"model": c.Model, "step": fmt.Sprint(step)}); err != nil {
					return "", err
				}
			}
			stop = why
		}
		if t.Callbacks.OnValidation != nil && t.Callbacks.OnValidation(rec) && stop == "" {
			stop = "stopped by a callback"
		}
		return stop, nil
	}

	t.Model.SetTraining(true)
	start := time.Now()
	stepsThisRun, imagesThisRun := 0, 0
	stopReason, epochsRun := "", epoch0
	for epoch := epoch0; epoch < c.Epochs && stopReason == ""; epoch++ {
		skip := 0
		if epoch == epoch0 {
			skip = step - epoch0*nb
		}
		var cm *ClassMetrics
		var rm RegressionMetrics
		if !c.Regression {
			cm = NewClassMetrics(max(s.Train.NumClasses(), 1))
		}
		tEpoch := time.Now()
		for b := range loader.Batches(epoch, skip) {
			if err := ctx.Err(); err != nil {
				elapsed += time.Since(tEpoch).Seconds()
				if cerr := checkpoint(epoch); cerr != nil {
					return nil, cerr
				}
				t.Log.Warn().Int("epoch", epoch).Int("step", step).Msg("interrupted: checkpoint written")
				return nil, ErrInterrupted
			}
			lr := sched.LR(step)
			if c.Regression {
				x, err := t.batchOnDevice(gdata, b)
				if err != nil {
					return nil, err
				}
				y, err := t.onDevice(&t.yDev, b.Targets)
				if err != nil {
					return nil, err
				}
				loss, err := t.regressor.TrainStep(x, y, lr)
				if err != nil {
					return nil, t.stepError(err, epoch, step)
				}
				rm.LossSum += loss * float64(b.Size())
				rm.Count += b.Size()
			} else {
				x, err := t.batchOnDevice(gdata, b)
				if err != nil {
					return nil, err
				}
				loss, correct, err := t.classifier.TrainStep(x, b.Labels, lr)
				if err != nil {
					return nil, t.stepError(err, epoch, step)
				}
				cm.LossSum += loss * float64(b.Size())
				cm.Count += b.Size()
				cm.Correct += correct
			}
			step++
			stepsThisRun++
			imagesThisRun += b.Size()
			if bar != nil {
				_ = bar.Add(b.Size())
			}
			if c.ValEvery > 0 && step%c.ValEvery == 0 && step%nb != 0 {
				elapsed += time.Since(tEpoch).Seconds()
				tEpoch = time.Now()
				why, err := validate(float64(epoch) + float64(step-epoch*nb)/float64(nb))
				if err != nil {
					return nil, err
				}
				if why != "" {
					stopReason = why
					break
				}
			}
		}
		elapsed += time.Since(tEpoch).Seconds()
		epochsRun = epoch + 1
		ips := float64(imagesThisRun) / time.Since(start).Seconds()
		tr := MetricsRecord{Step: step, Epoch: float64(epoch + 1), Split: "train", LR: sched.LR(step - 1), Wall: elapsed, ImagesPS: ips}
		ev := t.Log.Info().Int("epoch", epoch+1).Int("step", step)
		if c.Regression {
			tr.Loss = rm.Loss()
			ev = ev.Float64("train_loss", tr.Loss)
		} else {
			tr.Loss, tr.Accuracy = cm.Loss(), ptr(cm.Accuracy())
			ev = ev.Float64("train_loss", tr.Loss).Float64("train_acc", cm.Accuracy())
		}
		ev.Float64("lr", tr.LR).Float64("images_per_sec", math.Round(ips)).Msg("epoch done")
		record(tr)
		if stopReason == "" {
			why, err := validate(float64(epoch + 1))
			if err != nil {
				return nil, err
			}
			stopReason = why
		}
		if stopper != nil && monitor == "train_loss" && stopReason == "" {
			improved, why := stopper.Observe(tr.Loss, epoch+1, step)
			if improved && t.Run != nil {
				summary.BestEpoch = epoch + 1
				if err := layers.SaveWeights(t.Model, t.Run.File(BestWeights), map[string]string{"model": c.Model}); err != nil {
					return nil, err
				}
			}
			stopReason = why
		}
		if t.Callbacks.OnEpochEnd != nil && t.Callbacks.OnEpochEnd(tr) && stopReason == "" {
			stopReason = "stopped by a callback"
		}
		if err := checkpoint(epoch + 1); err != nil {
			return nil, err
		}
		if t.Run != nil {
			if err := layers.SaveWeights(t.Model, t.Run.File(LastWeights), map[string]string{"model": c.Model}); err != nil {
				return nil, err
			}
		}
		if c.StopAfterEpoch > 0 && epoch+1 == c.StopAfterEpoch && epoch+1 < c.Epochs {
			if bar != nil {
				_ = bar.Clear()
			}
			t.Log.Info().Int("epoch", epoch+1).Msg("stopping after this epoch as asked; resume with --resume")
			summary.EpochsRun = epochsRun
			summary.StopReason = "stop-after-epoch"
			return summary, nil
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	summary.EpochsRun = epochsRun
	summary.Steps = step
	summary.TrainSeconds = elapsed
	summary.TrainImagesPerSec = float64(imagesThisRun) / math.Max(time.Since(start).Seconds(), 1e-9)
	summary.StoppedEarly = stopReason != ""
	summary.StopReason = stopReason
	if stopReason == "" {
		summary.StopReason = fmt.Sprintf("completed %d epochs", c.Epochs)
	} else {
		ev := t.Log.Info().Str("reason", stopReason)
		if stopper != nil {
			ev = ev.Str("metric", stopper.Metric).Float64("best", stopper.Best).Int("best_epoch", stopper.BestEpoch).Int("best_step", stopper.BestStep)
		}
		ev.Msg("early stop")
	}
	if stopper != nil {
		summary.BestEpoch = stopper.BestEpoch
	}
	summary.Weights = LastWeights
	if c.RestoreBest && t.Run != nil {
		if _, err := os.Stat(t.Run.File(BestWeights)); err == nil {
			if _, err := layers.LoadWeights(t.Model, t.Run.File(BestWeights)); err != nil {
				return nil, err
			}
			summary.Weights = BestWeights
			t.Log.Info().Int("best_epoch", summary.BestEpoch).Msg("restored the best weights")
		}
	}
	if s.Test != nil {
		r, err := t.Evaluate(s.Test)
		if err != nil {
			return nil, err
		}
		summary.TestLoss = r.Loss
		rec := MetricsRecord{Step: step, Epoch: float64(epochsRun), Split: "test", Loss: r.Loss, Wall: elapsed}
		ev := t.Log.Info().Float64("test_loss", r.Loss)
		if c.Regression {
			summary.TestRMSE, summary.TestMAE, summary.TestR2 = ptr(r.RMSE), ptr(r.MAE), ptr(r.R2)
			rec.RMSE, rec.MAE, rec.R2 = summary.TestRMSE, summary.TestMAE, summary.TestR2
			ev = ev.Float64("test_rmse", r.RMSE).Float64("test_mae", r.MAE).Float64("test_r2", r.R2)
		} else {
			summary.TestAccuracy, summary.Confusion = ptr(r.Accuracy), r.Confusion
			rec.Accuracy = summary.TestAccuracy
			ev = ev.Float64("test_acc", r.Accuracy)
			if s.Test.NumClasses() > 5 {
				summary.TestTop5, rec.Top5 = ptr(r.Top5), ptr(r.Top5)
				ev = ev.Float64("test_top5", r.Top5)
			}
		}
		ev.Str("weights", summary.Weights).Msg("test")
		record(rec)
		if !c.Regression {
			t.Log.Info().Msg("confusion matrix (rows: true class, columns: predicted)\n" + formatConfusion(r.Confusion, s.Test.Classes))
			t.warnIfCollapsed("test", r.Confusion, s.Test.Classes)
		}
	}
	t.finishVisuals(s, step, summary.Weights == BestWeights)
	if t.Run != nil {
		if err := t.Run.WriteJSON(SummaryFile, summary); err != nil {
			return nil, err
		}
	}
	return summary, nil
}

func (t *Trainer) stepError(err error, epoch, step int) error {
	t.Log.Error().Err(err).Int("epoch", epoch+1).Int("step", step).Msg("training step failed; the last checkpoint is kept")
	return fmt.Errorf("epoch %d, step %d: %w (the last good checkpoint is kept; try a lower --lr or --clip-norm)", epoch+1, step, err)
}

// Evaluate runs the model in evaluation mode over ds and returns its figures.
func (t *Trainer) Evaluate(ds *data.Dataset) (EvalResult, error) {
	c := t.Config
	loader, err := data.NewLoader(ds, data.LoaderOptions{BatchSize: max(c.Batch, 256), Prefetch: -1})
	if err != nil {
		return EvalResult{}, err
	}
	defer loader.Close()
	t.Model.SetTraining(false)
	defer t.Model.SetTraining(true)
	var cm *ClassMetrics
	var rm RegressionMetrics
	if !c.Regression {
		cm = NewClassMetrics(max(ds.NumClasses(), 1))
	}
	var pred, targ []float64
	for b := range loader.Batches(0, 0) {
		x, err := t.onDevice(&t.evX, b.X)
		if err != nil {
			return EvalResult{}, err
		}
		out, err := t.Model.Forward(x)
		if err != nil {
			return EvalResult{}, err
		}
		if out, err = onHost(&t.ev, out); err != nil {
			return EvalResult{}, err
		}
		t.observeEval(ds, b, out)
		if c.Regression {
			loss, err := engine.MSEForward(out, b.Targets)
			if err != nil {
				return EvalResult{}, err
			}
			pred, targ = pred[:0], targ[:0]
			for i := 0; i < b.Size(); i++ {
				pred = append(pred, ds.TargetValue(out.At(i)))
				targ = append(targ, ds.TargetValue(b.Targets.At(i)))
			}
			rm.Add(loss, pred, targ)
			continue
		}
		loss, _, err := engine.SoftmaxCrossEntropyForward(nil, out, b.Labels, 0)
		if err != nil {
			return EvalResult{}, err
		}
		cm.Add(loss, out, b.Labels)
	}
	if c.Regression {
		return EvalResult{Loss: rm.Loss(), RMSE: rm.RMSE(), MAE: rm.MAE(), R2: rm.R2(), Count: rm.Count}, nil
	}
	return EvalResult{Loss: cm.Loss(), Accuracy: cm.Accuracy(), Top5: cm.Top5Accuracy(), Confusion: cm.Confusion, Count: cm.Count}, nil
}

// collapsedClass reports the one class a classifier predicted for every
// sample of a confusion matrix ([true][predicted]) that holds at least two
// true classes: a run that has collapsed (dead ReLUs after too large a
// learning rate, say) and now scores the share of that class.
func collapsedClass(conf [][]int) (int, bool) {
	predicted, trueClasses := -1, 0
	for _, row := range conf {
		n := 0
		for p, v := range row {
			if v == 0 {
				continue
			}
			n += v
			if predicted != -1 && p != predicted {
				return 0, false
			}
			predicted = p
		}
		if n > 0 {
			trueClasses++
		}
	}
	return predicted, predicted >= 0 && trueClasses >= 2
}

// warnIfCollapsed logs a warning when every prediction of split fell in one
// class, and reports whether it did.
func (t *Trainer) warnIfCollapsed(split string, conf [][]int, names []string) bool {
	k, ok := collapsedClass(conf)
	if !ok {
		return false
	}
	name := fmt.Sprint(k)
	if k < len(names) {
		name = names[k]
	}
	t.Log.Warn().Str("split", split).Str("class", name).
		Msgf("the model predicts class %s for every %s sample: training has collapsed (dead ReLUs or diverged weights); "+
			"try a lower --lr, or another --seed", name, split)
	return true
}

func lenOf(d *data.Dataset) int {
	if d == nil {
		return 0
	}
	return d.Len()
}

func ptr(v float64) *float64 { return &v }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func formatConfusion(m [][]int, names []string) string {
	s := ""
	for i, row := range m {
		name := fmt.Sprint(i)
		if i < len(names) {
			name = names[i]
		}
		if len(name) > 12 {
			name = name[:12]
		}
		s += fmt.Sprintf("%12s", name)
		for _, v := range row {
			s += fmt.Sprintf(" %5d", v)
		}
		s += "\n"
	}
	return s
}
