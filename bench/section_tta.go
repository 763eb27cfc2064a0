package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// ttaTask is one time-to-accuracy problem.
type ttaTask struct {
	ID      string
	Model   string
	Dataset string
	Classes []int
	Target  float64
	Epochs  int     // the recipe's planned epochs (its schedule spans them)
	Subset  float64 // quick mode: a fraction of the data
	LR      float64 // 0: the default recipe's
	Batch   int     // 0: the default recipe's
}

// ttaTasks are the three problems, each the trainer's default recipe for
// its model and data set (one-cycle SGD, Nesterov momentum) at the batch,
// peak learning rate and epochs below; both engines run it.
//
// The batch is 128, not the default 64: a GPU's images/s grow with the
// batch (LeNet on the H200 of 2026-12-04: 176K at 64, 282K at 128; cnn's
// step there at 32×32×3 takes about as long per image at 1024 as at 128), and a
// time to accuracy is epochs at that rate. Kiln on the CPU, seeds 1–5, test
// accuracy at the last epoch: mnist-99 at lr 0.1, 3 epochs, 99.15–99.22%
// (at batch 256 with lr 0.1 or 0.15, or in 2 epochs, some seeds end under
// 99%); fashion-90 at lr 0.1, 2 epochs, 91.73–92.06% (at 256, lr 0.2,
// 91.40–91.70%; one epoch ends at 89.9–90.7% at any batch and rate tried,
// too close to 90%). The default recipe (64, lr 0.05, 3 epochs) reached
// 99.16% and 90.79%, the latter at epoch 2.
//
// The two-class task learns at 0.01: at the default 0.05 its one-epoch
// one-cycle schedule kills the ReLUs on some seeds in both engines (2 of 6
// seeds for Kiln, 1 of 6 for PyTorch, the test accuracy stuck at the share
// of ones, 53.66%); at 0.01 all 6 reach 99.8% in both.
func ttaTasks(quick bool) []ttaTask {
	if quick {
		return []ttaTask{{ID: "mnist01-99.8", Model: "lenet", Dataset: "mnist", Classes: []int{0, 1}, Target: 0.998, Epochs: 1, Subset: 0.05, LR: 0.01}}
	}
	return []ttaTask{
		{ID: "mnist-99", Model: "lenet", Dataset: "mnist", Target: 0.99, Epochs: 3, Batch: 128, LR: 0.1},
		{ID: "fashion-90", Model: "cnn", Dataset: "fashion-mnist", Target: 0.90, Epochs: 2, Batch: 128, LR: 0.1},
		{ID: "mnist01-99.8", Model: "lenet", Dataset: "mnist", Classes: []int{0, 1}, Target: 0.998, Epochs: 1, LR: 0.01},
	}
}

// TTAResult is one time-to-accuracy problem, both engines.
type TTAResult struct {
	ID      string         `json:"id"`
	Model   string         `json:"model"`
	Dataset string         `json:"dataset"`
	Classes []int          `json:"classes,omitempty"`
	Subset  float64        `json:"subset,omitempty"`
	Target  float64        `json:"target"`
	Recipe  string         `json:"recipe"`
	Config  trainer.Config `json:"config"`
	Train   int            `json:"train_samples"`
	Test    int            `json:"test_samples"`

	Kiln      *TTARun `json:"kiln,omitempty"`
	KilnError string  `json:"kiln_error,omitempty"`

	Torch        *TTARun `json:"torch,omitempty"`
	TorchSetting string  `json:"torch_setting,omitempty"`
	TorchError   string  `json:"torch_error,omitempty"`
}

// recipeText describes c for the report.
func recipeText(c trainer.Config, train int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s lr %g", c.Optimizer, c.LR)
	if c.Optimizer == "sgd" && c.Momentum > 0 {
		fmt.Fprintf(&b, " momentum %g", c.Momentum)
		if c.Nesterov {
			b.WriteString(" Nesterov")
		}
	}
	if c.WeightDecay > 0 {
		fmt.Fprintf(&b, ", weight decay %g (not on biases and norms)", c.WeightDecay)
	}
	fmt.Fprintf(&b, ", %s schedule over %d epochs, batch %d, seed %d, %d training images, test accuracy checked after each epoch",
		c.Schedule, c.Epochs, c.Batch, c.Seed, train)
	return b.String()
}

func (s *suite) runTTA(ctx context.Context) error {
	for _, task := range ttaTasks(s.cfg.Quick) {
		r := s.oneTTA(ctx, task)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.rep.TTA = append(s.rep.TTA, r)
		if err := s.write(true); err != nil {
			return err
		}
	}
	return nil
}

// config is the recipe both engines run for the task, on device.
func (task ttaTask) config(device string) trainer.Config {
	cfg := trainer.DefaultConfigFor(task.Model, task.Dataset)
	cfg.Epochs, cfg.Classes, cfg.Subset, cfg.ValFraction, cfg.Device = task.Epochs, task.Classes, task.Subset, 0, device
	if task.LR > 0 {
		cfg.LR = task.LR
	}
	if task.Batch > 0 {
		cfg.Batch = task.Batch
	}
	return cfg
}

func (s *suite) oneTTA(ctx context.Context, task ttaTask) TTAResult {
	cfg := task.config(s.cfg.Device)
	r := TTAResult{ID: task.ID, Model: task.Model, Dataset: task.Dataset, Classes: task.Classes, Subset: task.Subset,
		Target: task.Target, Config: cfg}
	splits, err := data.Load(task.Dataset, data.Options{Classes: task.Classes, Subset: task.Subset, Seed: cfg.Seed})
	if err != nil {
		r.KilnError = "cannot run: " + err.Error()
		r.TorchError = r.KilnError
		s.note(fmt.Sprintf("time to accuracy %s: %s", task.ID, r.KilnError))
		return r
	}
	r.Train, r.Test = splits.Train.Len(), splits.Test.Len()
	r.Recipe = recipeText(cfg, r.Train)
	s.log.Info().Str("task", task.ID).Str("model", task.Model).Float64("target", task.Target).Str("recipe", r.Recipe).Msg("time to accuracy")
	s.kilnTTA(ctx, task, splits, &r)
	if ctx.Err() != nil {
		return r
	}
	s.torchTTA(ctx, task, splits, &r)
	return r
}

// kilnTTA runs Kiln's side of the task into r (in this process: on the GPU
// it must be the CUDA build, kiln-cuda).
func (s *suite) kilnTTA(ctx context.Context, task ttaTask, splits *data.Splits, r *TTAResult) {
	if s.kilnCUDA != "" {
		r.KilnError = s.kilnCUDA
		return
	}
	dev := engine.CPU
	if s.cfg.Device == "cuda" {
		dev = engine.CUDA
	}
	res, err := TimeToAccuracy(ctx, TTAConfig{Config: r.Config, Train: splits.Train, Test: splits.Test,
		Device: dev, Target: task.Target, MaxSeconds: s.plan.ttaCap, OnEpoch: func(e TTAEpoch) {
			s.log.Info().Str("task", task.ID).Str("engine", "kiln").Int("epoch", e.Epoch).
				Float64("test_acc", e.TestAccuracy).Float64("seconds", math.Round(e.Seconds*10)/10).Msg("epoch")
		}})
	if err != nil {
		r.KilnError = err.Error()
		return
	}
	r.Kiln = res
}

// torchTTA runs PyTorch's side of the task into r, at the thread setting
// that won the training probe for this model at this batch on 28×28×1, else
// probing now (quick mode takes all cores for torch and one OpenBLAS thread
// instead).
func (s *suite) torchTTA(ctx context.Context, task ttaTask, splits *data.Splits, r *TTAResult) {
	if s.torch == nil {
		r.TorchError = s.rep.Settings.TorchMissing
		return
	}
	dir, err := data.Locate(task.Dataset, "")
	if err != nil {
		r.TorchError = "cannot run: " + err.Error()
		return
	}
	c := trainCase{task.Model, "28x28x1", r.Config.Batch, "fp32"}
	sets := s.torchSettings(engine.Threads())
	if _, _, ok := s.bestSetting(c, sets); !ok && !s.cfg.Quick {
		if _, err := s.probeTorch(ctx, []trainCase{c}, sets); err != nil {
			r.TorchError = err.Error()
			return
		}
	}
	set, _, ok := s.bestSetting(c, sets)
	if !ok {
		set = threadSetting{engine.Threads(), 1}
	}
	r.TorchSetting = set.String()
	spec := map[string]any{"config": r.Config, "dir": dir, "mean": splits.Train.Mean[0], "std": splits.Train.Std[0],
		"classes": task.Classes, "subset": task.Subset, "target": task.Target}
	raw, err := s.torch.run(ctx, "tta", spec, set, "--max-seconds", strconv.FormatFloat(s.plan.ttaCap, 'g', -1, 64))
	if err != nil {
		r.TorchError = err.Error()
		return
	}
	var t TTARun
	if err := json.Unmarshal(raw, &t); err != nil {
		r.TorchError = fmt.Sprintf("PyTorch tta answer: %v", err)
		return
	}
	for _, e := range t.PerEpoch {
		t.BestAccuracy = max(t.BestAccuracy, e.TestAccuracy)
	}
	r.Torch = &t
	if r.Kiln != nil && r.Kiln.Params != t.Params {
		s.note(fmt.Sprintf("time to accuracy %s: parameter counts differ: Kiln %d, PyTorch %d", task.ID, r.Kiln.Params, t.Params))
	}
	s.log.Info().Str("task", task.ID).Str("engine", "torch").Bool("reached", t.Reached).Int("epochs", t.Epochs).
		Float64("seconds", math.Round(t.Seconds*10)/10).Msg("time to accuracy")
}
