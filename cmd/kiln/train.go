package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/durable"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// exitError carries a specific exit status (130 for an interrupted run).
type exitError struct {
	error
	code int
}

// configFlags binds every training flag to a Config and remembers how to
// copy each one, so that flags given on the command line override a config
// file and flags not given do not.
type configFlags struct {
	c       trainer.Config
	classes string
	miles   string
}

func addConfigFlags(f *pflag.FlagSet) *configFlags {
	cf := &configFlags{c: trainer.DefaultConfig()}
	c := &cf.c
	f.StringVar(&c.Model, "model", c.Model, "model: "+strings.Join(layers.ModelNames(), ", "))
	f.StringVar(&c.Dataset, "dataset", c.Dataset, "data set: "+strings.Join(data.Names(), ", "))
	f.StringVar(&c.DataDir, "data-dir", "", "where the data files are (default: $KILN_DATA_DIR, ./data, then well-known places)")
	f.StringVar(&cf.classes, "classes", "", "keep only these classes, e.g. 0,1 (relabelled 0..k-1)")
	f.Float64Var(&c.Subset, "subset", 0, "keep a seeded fraction of the data, e.g. 0.1")
	f.Float64Var(&c.ValFraction, "val-fraction", c.ValFraction, "fraction of the training data held out for validation")
	f.BoolVar(&c.Augment, "augment", false, "random crop (pad 4) and horizontal flip (32×32 images)")
	intFlag(f, &c.Hidden, "hidden", "width of mlp hidden layers / gmlp channels (0: model default)")
	intFlag(f, &c.Depth, "depth", "number of mlp hidden layers / gmlp blocks (0: model default)")
	f.Float64Var(&c.Dropout, "dropout", 0, "cnn's dropout before the head (0: model default 0.3)")
	intFlag(f, &c.Epochs, "epochs", "epochs")
	intFlag(f, &c.Batch, "batch", "batch size")
	f.BoolVar(&c.DropLast, "drop-last", false, "drop each epoch's last, short batch")
	f.Float64Var(&c.LR, "lr", c.LR, "learning rate (the peak, for onecycle)")
	f.StringVar(&c.Optimizer, "optimizer", c.Optimizer, "sgd, adam or adamw")
	f.Float64Var(&c.Momentum, "momentum", c.Momentum, "SGD momentum")
	f.BoolVar(&c.Nesterov, "nesterov", c.Nesterov, "Nesterov momentum (SGD)")
	f.Float64Var(&c.WeightDecay, "weight-decay", c.WeightDecay, "weight decay (biases and norms excluded)")
	f.Float64Var(&c.ClipNorm, "clip-norm", 0, "clip the global gradient norm (0: off)")
	f.Float64Var(&c.LabelSmoothing, "label-smoothing", 0, "label smoothing ε")
	f.StringVar(&c.Schedule, "schedule", c.Schedule, "LR schedule: "+strings.Join(trainer.ScheduleKinds, ", "))
	intFlag(f, &c.Warmup, "warmup", "linear warm-up steps")
	intFlag(f, &c.StepSize, "step-size", "step schedule: decay every N steps")
	f.StringVar(&cf.miles, "milestones", "", "multistep schedule: steps at which to decay, e.g. 1000,2000")
	f.Float64Var(&c.Gamma, "gamma", 0, "step/multistep/exp decay factor")
	f.StringVar(&c.EarlyStop, "early-stop", "", "stop early on val_loss, val_acc, train_loss or val_rmse")
	intFlag(f, &c.Patience, "patience", "checks without improvement before stopping")
	f.Float64Var(&c.MinDelta, "min-delta", 0, "smallest change that counts as an improvement")
	f.Float64Var(&c.Target, "target", 0, "stop once the early-stop metric reaches this")
	f.BoolVar(&c.RestoreBest, "restore-best", false, "end with the best weights, not the last")
	intFlag(f, &c.ValEvery, "val-every", "also validate every N steps (0: at epoch ends only)")
	f.Var(&uintFlag{&c.Seed, "seed"}, "seed", "random seed")
	f.StringVar(&c.Device, "device", c.Device, "cpu, cuda or auto")
	intFlag(f, &c.Threads, "threads", "CPU threads (0: all cores)")
	f.StringVar(&c.RunDir, "run-dir", "", "run directory (default runs/<model>-<time>)")
	intFlag(f, &c.StopAfterEpoch, "stop-after-epoch", "end the run after this epoch, resumable")
	intFlag(f, &c.MemoryLimitMB, "memory-limit-mb", "refuse runs estimated to need more (default: available memory)")
	f.BoolVar(&c.NoVisuals, "no-visuals", false, "skip histograms.jsonl and visuals.json (the pictures of kiln plot and kiln board)")
	return cf
}

// resolve builds the run's configuration: defaults, then the config file,
// then the flags that were given.
func (cf *configFlags) resolve(f *pflag.FlagSet, configPath string) (trainer.Config, error) {
	// The model's own recipe is the base: find the model first (flag, then
	// config file, then the default), then lay the file and the flags over it.
	model, dataset := trainer.DefaultConfig().Model, trainer.DefaultConfig().Dataset
	if configPath != "" {
		fc, err := trainer.LoadConfigFile(configPath, trainer.DefaultConfig())
		if err != nil {
			return fc, err
		}
		model, dataset = fc.Model, fc.Dataset
	}
	if f.Changed("model") {
		model = cf.c.Model
	}
	if f.Changed("dataset") {
		dataset = cf.c.Dataset
	}
	c := trainer.DefaultConfigFor(model, dataset)
	if configPath != "" {
		var err error
		if c, err = trainer.LoadConfigFile(configPath, c); err != nil {
			return c, err
		}
	}
	var err error
	f.Visit(func(fl *pflag.Flag) {
		if err != nil {
			return
		}
		switch fl.Name {
		case "classes":
			if c.Classes, err = parseInts(cf.classes, "--classes"); c.Classes == nil {
				c.Classes = []int{} // given, and empty
			}
		case "milestones":
			if c.Milestones, err = parseInts(cf.miles, "--milestones"); c.Milestones == nil {
				c.Milestones = []int{}
			}
		case "config", "resume", "json":
		default:
			err = copyFlag(&c, &cf.c, fl.Name)
		}
	})
	if err != nil {
		return c, err
	}
	if c.Dataset == "mnist-rotation" {
		c.Regression = true
	}
	return c, nameSetting(c.Validate(), f, configPath)
}

// parseInts reads the comma-separated list of a list flag (--classes,
// --milestones): nil for an empty string, an error for an empty entry
// ("--classes ,,," must not mean every class). A flag given as "" is an
// empty list that Validate refuses; resolve sees to that.
func parseInts(s, flag string) ([]int, error) {
	key := strings.TrimPrefix(flag, "--")
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("%s %q: has an empty entry; want %s separated by commas", flag, s, trainer.SettingRange(key))
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %q is not an integer; want %s separated by commas", flag, s, p, trainer.SettingRange(key))
		}
		out = append(out, n)
	}
	return out, nil
}

func trainCmd() *cobra.Command {
	var configPath string
	var resume bool
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train a model (default: LeNet-5 on MNIST, on the CPU)",
		Args:  cobra.NoArgs,
	}
	cf := addConfigFlags(cmd.Flags())
	cmd.Flags().StringVar(&configPath, "config", "", "YAML or JSON configuration file (flags given override it)")
	cmd.Flags().BoolVar(&resume, "resume", false, "continue the run in --run-dir from its checkpoint")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := cf.resolve(cmd.Flags(), configPath)
		if err != nil {
			return usageError{err}
		}
		if resume && c.RunDir == "" {
			return usageError{errors.New("--resume needs --run-dir")}
		}
		return runTrain(c, resume)
	}
	return cmd
}

// trainingSetup is what kiln train and kiln lr-find both build from a
// config before they differ: the device and threads chosen, the data loaded,
// and a model shaped for that data inside a trainer.
type trainingSetup struct {
	splits *data.Splits
	spec   layers.Spec
	tr     *trainer.Trainer
}

// setupTraining selects the device and threads, loads the data set and builds
// the model and its trainer. It sets c.Regression from the data (a csv
// decides from its target column).
func setupTraining(c *trainer.Config, console zerolog.Logger) (*trainingSetup, error) {
	if err := selectDevice(c.Device, console); err != nil {
		return nil, err
	}
	if c.Threads > 0 {
		engine.SetThreads(c.Threads)
	}
	splits, err := data.Load(c.Dataset, data.Options{Dir: c.DataDir, Classes: c.Classes, Subset: c.Subset,
		ValFraction: c.ValFraction, Seed: c.Seed})
	if err != nil {
		return nil, err
	}
	tr0 := splits.Train
	if err := tr0.CheckClasses(); err != nil {
		return nil, usageError{err}
	}
	c.Regression = tr0.Task == data.Regression
	spec := layers.Spec{Channels: tr0.Channels, Height: tr0.Height, Width: tr0.Width, Classes: tr0.NumClasses(),
		Regression: c.Regression, Hidden: c.Hidden, Depth: c.Depth, Dropout: c.Dropout, Seed: c.Seed}
	model, err := trainer.BuildModel(*c, spec)
	if err != nil {
		return nil, err
	}
	tr, err := trainer.NewTrainer(*c, model)
	if err != nil {
		return nil, usageError{err}
	}
	return &trainingSetup{splits: splits, spec: spec, tr: tr}, nil
}

func runTrain(c trainer.Config, resume bool) error {
	if c.RunDir == "" {
		c.RunDir = filepath.Join("runs", fmt.Sprintf("%s-%s", c.Model, time.Now().Format("20060102-150405")))
	}
	err := train(c, resume)
	var full *durable.DiskFullError
	if errors.As(err, &full) {
		return fmt.Errorf("%w\nthe last checkpoint, if there is one, is kept: free some space, then kiln train --run-dir %s --resume", err, c.RunDir)
	}
	return err
}

// train is kiln train once its run directory is named.
func train(c trainer.Config, resume bool) error {
	console := logger()
	ts, err := setupTraining(&c, console)
	if err != nil {
		return err
	}
	splits, spec, tr, tr0 := ts.splits, ts.spec, ts.tr, ts.splits.Train
	run, err := trainer.OpenRunDir(c.RunDir, resume)
	if err != nil {
		return err
	}
	defer run.Close()
	if run.Finished() {
		return printFinished(c.RunDir)
	}
	var progress *os.File
	if isatty.IsTerminal(os.Stderr.Fd()) {
		progress = os.Stderr
		tr.Progress = progress
	}
	tr.Log = run.Logger(os.Stderr)
	tr.Run = run
	if err := run.WriteStart(c, c.Model, spec); err != nil {
		return err
	}
	tr.Log.Info().Str("run_dir", c.RunDir).Str("data", tr0.Source).Msg("run")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := tr.Fit(ctx, splits)
	if errors.Is(err, trainer.ErrInterrupted) {
		return exitError{fmt.Errorf("%w (kiln train --run-dir %s --resume)", err, c.RunDir), 130}
	}
	if err != nil {
		return err
	}
	printSummary(sum, c.RunDir)
	return nil
}

// printFinished answers --resume of a run that has ended: its outcome, and
// nothing changed.
func printFinished(dir string) error {
	sum, err := trainer.ReadSummary(dir)
	if err != nil {
		return err
	}
	fmt.Printf("%s has finished (%s); nothing to resume\n", dir, sum.StopReason)
	printSummary(sum, dir)
	return nil
}

// printSummary prints a run's outcome on one line.
func printSummary(sum *trainer.Summary, dir string) {
	switch {
	case sum.TestAccuracy != nil:
		fmt.Printf("test accuracy %.2f%%  loss %.4f  (%s, %d epochs, %.0f images/s)  → %s\n",
			100**sum.TestAccuracy, sum.TestLoss, sum.Weights, sum.EpochsRun, sum.TrainImagesPerSec, dir)
	case sum.TestRMSE != nil:
		fmt.Printf("test RMSE %.3f  MAE %.3f  R² %.4f  (%s, %d epochs)  → %s\n",
			*sum.TestRMSE, *sum.TestMAE, *sum.TestR2, sum.Weights, sum.EpochsRun, dir)
	case sum.StopReason == "stop-after-epoch":
		fmt.Printf("stopped after epoch %d → %s (resume with --resume)\n", sum.EpochsRun, dir)
	default:
		fmt.Printf("finished after %d epochs (%s), no test set → %s\n", sum.EpochsRun, sum.StopReason, dir)
	}
}

// selectDevice resolves --device once, at start-up, and says what it chose.
func selectDevice(s string, log zerolog.Logger) error {
	dev, err := resolveDevice(s, log)
	if err != nil {
		return err
	}
	trainer.SetDefaultDevice(dev)
	return nil
}

// copyFlag copies the Config field behind a flag (its JSON name is the flag
// name with underscores) from src to dst.
func copyFlag(dst, src *trainer.Config, flag string) error {
	name := strings.ReplaceAll(flag, "-", "_")
	dv, sv := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for i := 0; i < dv.NumField(); i++ {
		tag := strings.Split(dv.Type().Field(i).Tag.Get("json"), ",")[0]
		if tag == name {
			dv.Field(i).Set(sv.Field(i))
			return nil
		}
	}
	return fmt.Errorf("internal: flag --%s has no configuration field", flag)
}
