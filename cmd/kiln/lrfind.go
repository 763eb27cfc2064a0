package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/plots"
)

// Files kiln lr-find writes into its directory.
const (
	lrFindCSV  = "lr_find.csv"
	lrFindPNG  = "lr_find.png"
	lrFindJSON = "lr_find.json"
)

// lrFindUnread are the training flags the range test does not read.
var lrFindUnread = []string{"epochs", "lr", "schedule", "warmup", "step-size", "milestones", "gamma", "plateau-factor", "plateau-patience", "early-stop",
	"patience", "min-delta", "target", "restore-best", "val-every", "stop-after-epoch", "log-every", "no-visuals", "sync-bn"}

func lrFindCmd() *cobra.Command {
	var configPath string
	var o trainer.LRFindOptions
	cmd := &cobra.Command{
		Use:   "lr-find",
		Short: "The learning-rate range test: loss against an exponentially rising LR, and a suggested LR",
		Long: `The learning-rate range test (Smith 2017, fastai's lr_find): --steps training
steps at learning rates rising exponentially from --start to --end, with the
model, batch size and optimiser the training flags give. It stops once the
smoothed loss exceeds 4× its best. It writes DIR/lr_find.csv (step, lr, loss,
smoothed loss), DIR/lr_find.png (loss against LR, log scale, the suggestion
marked) and DIR/lr_find.json, and prints the suggested LR: where the smoothed
loss falls fastest against log LR, before its minimum. The model is built
afresh and nothing is kept: train with kiln train --lr <suggested>.`,
		Args: noArgs("the model is --model, the data set --dataset"),
	}
	cfs := pflag.NewFlagSet("training", pflag.ContinueOnError)
	cf := addConfigFlags(cfs)
	cfs.Lookup("run-dir").Usage = "output directory (default runs/lr-find-<model>-<time>)"
	for _, name := range lrFindUnread {
		_ = cfs.MarkHidden(name) // the range test has no use for them
	}
	f := cmd.Flags()
	f.AddFlagSet(cfs)
	f.StringVar(&configPath, "config", "", "YAML or JSON training configuration (flags given override it)")
	f.Float64Var(&o.Start, "start", 1e-7, "first learning rate")
	f.Float64Var(&o.End, "end", 10, "last learning rate")
	f.IntVar(&o.Steps, "steps", 200, "training steps from --start to --end")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		markParsed(cfs)
		for _, name := range lrFindUnread {
			if cfs.Changed(name) { // a config file's are a training's, and welcome
				return usagef("--%s: kiln lr-find does not read it (it trains --steps steps at rates from --start to --end)", name)
			}
		}
		c, err := cf.resolve(cfs, configPath)
		if err == nil {
			err = checkLRFindFlags(o)
		}
		if err != nil {
			return usageError{err}
		}
		return nameUsage(runLRFind(c, o), cfs, configPath)
	}
	return cmd
}

// checkLRFindFlags refuses the range test's own numbers before any work:
// FindLR would, but only after the data set is loaded and the model built.
func checkLRFindFlags(o trainer.LRFindOptions) error {
	switch {
	case !(o.Start > 0 && o.Start <= math.MaxFloat64):
		return fmt.Errorf("--start %v: must be a finite number > 0", o.Start)
	case !(o.End > o.Start && o.End <= math.MaxFloat64):
		return fmt.Errorf("--end %v: must be a finite number > --start (%v)", o.End, o.Start)
	case o.Steps < 10:
		return fmt.Errorf("--steps %d: must be at least 10", o.Steps)
	}
	return nil
}

func runLRFind(c trainer.Config, o trainer.LRFindOptions) error {
	console := logger()
	dir := c.RunDir
	if dir == "" {
		var cleanup func()
		dir, cleanup = defaultRunDir("lr-find-" + c.Model)
		defer cleanup()
	}
	if f := trainer.RunOrTuneFileIn(dir); f != "" {
		// A run's lock is not lr-find's to take, nor its directory to fill.
		return usagef("--run-dir %s holds a training run or tune (%s): lr-find writes a directory of its own; choose another", dir, f)
	}
	ts, err := setupTraining(&c, console)
	if err != nil {
		return err
	}
	tr, tr0 := ts.tr, ts.splits.Train
	tr.Log = console
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lr-find directory: %w", err)
	}
	console.Info().Str("model", c.Model).Str("dataset", c.Dataset).Str("optimizer", c.Optimizer).Int("batch", c.Batch).
		Float64("start", o.Start).Float64("end", o.End).Int("steps", o.Steps).Str("dir", dir).Msg("lr range test")
	ctx, stop, status := stopContext()
	defer stop()
	res, err := tr.FindLR(ctx, tr0, o)
	if err != nil {
		if ctx.Err() != nil {
			return exitError{errors.New("lr-find interrupted: nothing kept (it is run again whole)"), status()}
		}
		return usageError{err}
	}
	if err := writeLRFind(dir, c, o, res); err != nil {
		return err
	}
	switch res.Rule {
	case trainer.SuggestNone:
		outf("no suggested lr: the smoothed loss was lowest at the first lr tried (%.3g), so it never fell: lower --start\n", o.Start)
	case trainer.SuggestSteepest:
		outf("suggested lr %.3g (steepest fall of the smoothed loss); the min-loss/10 rule gives %.3g\n", res.Suggested, res.MinLossLR/10)
	default:
		outf("suggested lr %.3g (%s: no steady fall before the minimum to take the steepest of)\n", res.Suggested, res.Rule)
	}
	outf("%d steps%s → %s\n", len(res.Points), map[bool]string{true: " (stopped: the loss diverged)"}[res.Diverged],
		filepath.Join(dir, lrFindPNG))
	return nil
}

func writeLRFind(dir string, c trainer.Config, o trainer.LRFindOptions, res *trainer.LRFindResult) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write([]string{"step", "lr", "loss", "smoothed_loss"})
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }
	xs, raw, sm := make([]float64, len(res.Points)), make([]float64, len(res.Points)), make([]float64, len(res.Points))
	lo, hi := math.Inf(1), math.Inf(-1)
	// As fastai's plot (skip_end=5), the last steps, where the loss blows
	// up in one or two steps, do not set the scale: they squashed the curve
	// into a flat line along the bottom.
	skipEnd := 0
	if len(res.Points) > 10 {
		skipEnd = 5
	}
	for i, p := range res.Points {
		_ = w.Write([]string{strconv.Itoa(p.Step), g(p.LR), g(p.Loss), g(p.Smoothed)})
		xs[i], raw[i], sm[i] = p.LR, p.Loss, p.Smoothed
		lo = math.Min(lo, p.Smoothed)
		if i < len(res.Points)-skipEnd {
			hi = math.Max(hi, p.Smoothed)
		}
	}
	w.Flush()
	if err := trainer.WriteFileAtomic(filepath.Join(dir, lrFindCSV), buf.Bytes()); err != nil {
		return err
	}
	// Batch losses far above the smoothed curve (the blow-up at the end)
	// would squash the chart; they stay in the CSV.
	for i := range raw {
		if raw[i] > 1.5*hi {
			raw[i] = math.NaN()
		}
		if sm[i] > 1.5*hi {
			sm[i] = math.NaN()
		}
	}
	series := []plots.Series{{Name: "batch loss", X: xs, Y: raw}, {Name: "smoothed loss", X: xs, Y: sm}}
	if res.Suggested > 0 {
		series = append(series, plots.Series{Name: fmt.Sprintf("suggested %.3g", res.Suggested), X: []float64{res.Suggested, res.Suggested}, Y: []float64{lo, hi}})
	}
	if err := plots.Lines(filepath.Join(dir, lrFindPNG), fmt.Sprintf("LR range test: %s on %s, %s, batch %d", c.Model, c.Dataset, c.Optimizer, c.Batch),
		"learning rate", "training loss", true, series...); err != nil {
		return err
	}
	b, err := json.MarshalIndent(map[string]any{
		"suggested_lr": res.Suggested, "rule": res.Rule,
		"min_loss_lr": res.MinLossLR, "min_loss_lr_over_10": res.MinLossLR / 10, "diverged": res.Diverged,
		"steps": len(res.Points), "start": o.Start, "end": o.End, "config": c,
	}, "", "  ")
	if err != nil {
		return err
	}
	return trainer.WriteFileAtomic(filepath.Join(dir, lrFindJSON), append(b, '\n'))
}
