package tune

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// Trainer is the real objective: each trial is a kiln train run of a zoo
// model in its directory, in this process, writing the files kiln train
// writes (config.yaml, model.json, metrics.jsonl, train.log, weights,
// checkpoint, summary.json). Data sets are loaded once per distinct set of
// data options and shared, read-only, by the trials.
type Trainer struct {
	mu    sync.Mutex
	cache map[string]*loaded
}

type loaded struct {
	once   sync.Once
	splits *data.Splits
	err    error
}

// NewTrainer returns the real objective's runner.
func NewTrainer() *Trainer { return &Trainer{cache: map[string]*loaded{}} }

func (o *Trainer) data(c trainer.Config) (*data.Splits, error) {
	opts := c.DataOptions()
	key, err := json.Marshal(struct {
		Name string
		Opts data.Options
	}{c.Dataset, opts})
	if err != nil { // every trial's key was "" (a func field): all trained on the first one's data
		return nil, fmt.Errorf("tune: data options: %w", err)
	}
	o.mu.Lock()
	l := o.cache[string(key)]
	if l == nil {
		l = &loaded{}
		o.cache[string(key)] = l
	}
	o.mu.Unlock()
	l.once.Do(func() { l.splits, l.err = data.Load(c.Dataset, opts) })
	return l.splits, l.err
}

// Objective is o as a tune Objective.
func (o *Trainer) Objective() Objective { return o.run }

func (o *Trainer) run(ctx context.Context, r Run) (Outcome, error) {
	c := r.Config
	c.DropInert(nil) // an older Kiln's trials kept settings nothing reads (target without early_stop)
	splits, err := o.data(c)
	if err != nil {
		return Outcome{}, err
	}
	tr0 := splits.Train
	if err := c.TakeTask(tr0.Task); err != nil {
		return Outcome{}, err
	}
	spec := layers.Spec{Channels: tr0.Channels, Height: tr0.Height, Width: tr0.Width, Classes: tr0.NumClasses(),
		Regression: c.Regression, Hidden: c.Hidden, Depth: c.Depth, Dropout: c.Dropout, Seed: c.Seed}
	model, err := trainer.BuildModel(c, spec)
	if err != nil {
		return Outcome{}, err
	}
	tr, err := trainer.NewTrainer(c, model)
	if err != nil {
		return Outcome{}, err
	}
	defer tr.Release() // trials run one after another in this process, each on its own model
	run, err := trainer.OpenRunDir(r.Dir, r.Resume)
	if err != nil {
		return Outcome{}, err
	}
	defer run.Close()
	tr.Log = run.Logger(nil)
	tr.Run = run
	if err := run.WriteStart(c, trainer.ModelInfoOf(c.Model, spec, tr0)); err != nil {
		return Outcome{}, err
	}
	nb := tr0.Len() / c.Batch
	if !c.DropLast && tr0.Len()%c.Batch != 0 {
		nb++
	}
	if r.Report != nil {
		tr.Callbacks.OnValidation = func(rec trainer.MetricsRecord) bool {
			return r.Report(Report{Step: rec.Step, Epoch: rec.Epoch, TotalSteps: nb * c.Epochs, Metrics: recordMetrics(rec)})
		}
	}
	if _, err := tr.Fit(ctx, splits); err != nil {
		return Outcome{}, err
	}
	return OutcomeFromRunDir(r.Dir)
}

// recordMetrics names a metrics record's figures split_loss, split_acc, …
func recordMetrics(r trainer.MetricsRecord) map[string]float64 {
	m := map[string]float64{r.Split + "_loss": r.Loss}
	for name, v := range map[string]*float64{"acc": r.Accuracy, "top5": r.Top5, "rmse": r.RMSE, "mae": r.MAE, "r2": r.R2} {
		if v != nil {
			m[r.Split+"_"+name] = *v
		}
	}
	return m
}

// OutcomeFromRunDir reads what a kiln train run directory says of its end:
// the validation of the weights it kept (the last, or with --restore-best
// the best) and the test figures from metrics.jsonl, epochs and steps from
// summary.json (or, without one, from the last record).
func OutcomeFromRunDir(dir string) (Outcome, error) {
	b, err := os.ReadFile(filepath.Join(dir, trainer.MetricsFile))
	if err != nil {
		return Outcome{}, fmt.Errorf("run %s: %w", dir, err)
	}
	out := Outcome{Metrics: map[string]float64{}}
	var last trainer.MetricsRecord
	valAt := map[int]trainer.MetricsRecord{} // by step
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r trainer.MetricsRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return out, fmt.Errorf("run %s: %s: %w", dir, trainer.MetricsFile, err)
		}
		if r.Split == "val" || r.Split == "test" {
			for k, v := range recordMetrics(r) {
				out.Metrics[k] = v
			}
		}
		if r.Split == "val" {
			valAt[r.Step] = r
		}
		last = r
	}
	out.Steps, out.Epochs = last.Step, int(last.Epoch)
	var sum trainer.Summary
	if b, err := os.ReadFile(filepath.Join(dir, trainer.SummaryFile)); err == nil {
		if err := json.Unmarshal(b, &sum); err != nil {
			return out, fmt.Errorf("run %s: %s: %w", dir, trainer.SummaryFile, err)
		}
		out.Steps, out.Epochs, out.Seconds = sum.Steps, sum.EpochsRun, sum.TrainSeconds
	}
	if best, ok := valAt[sum.BestStep]; ok && sum.Weights == trainer.BestWeights {
		// The run kept its best weights (--restore-best): the trial is
		// those weights' validation, not the last, a worse one.
		for k, v := range recordMetrics(best) {
			out.Metrics[k] = v
		}
	}
	return out, nil
}
