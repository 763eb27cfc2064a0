package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/durable"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/mpi"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// exitError carries a specific exit status (128 + the signal for an
// interrupted run: 130 for Ctrl-C).
type exitError struct {
	error
	code int
}

func (e exitError) Unwrap() error { return e.error }

func trainCmd() *cobra.Command {
	var configPath string
	var resume bool
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train a model (default: LeNet-5 on MNIST, on the CPU)",
		Args:  noArgs("the model is --model, the data set --dataset, the run directory --run-dir"),
	}
	cf := addConfigFlags(cmd.Flags())
	cmd.Flags().StringVar(&configPath, "config", "", "YAML or JSON configuration file (flags given override it)")
	cmd.Flags().BoolVar(&resume, "resume", false, "continue the run in --run-dir from its checkpoint")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if resume && configPath == "" {
			path, err := runConfig(cmd.Flags())
			if err != nil {
				return usageError{fmt.Errorf("--resume: %w", err)}
			}
			configPath = path
			if err := checkBareResume(cmd.Flags(), configPath); err != nil {
				return err
			}
		}
		c, err := cf.resolve(cmd.Flags(), configPath)
		if err != nil {
			return usageError{err}
		}
		if resume && c.RunDir == "" {
			return usageError{errors.New("--resume needs --run-dir")}
		}
		return nameUsage(runTrain(c, resume), cmd.Flags(), configPath)
	}
	return cmd
}

// checkBareResume refuses `--run-dir DIR --resume` and nothing else where
// DIR has no config.yaml (a run killed, or stopped by a full disk, before it
// wrote one): the defaults would be taken for the run's settings and
// trained in its place. Flags of the first command given again are its
// settings, as a job script that repeats them gives them.
func checkBareResume(f *pflag.FlagSet, configPath string) error {
	dir, _ := f.GetString("run-dir")
	if configPath != "" || dir == "" {
		return nil
	}
	if _, err := os.Stat(dir); err != nil {
		return nil // --resume of no directory says so itself
	}
	if len(changedSettings(f)) > 0 {
		return nil
	}
	why := "its run stopped before writing it"
	if _, err := os.Stat(filepath.Join(dir, trainer.CheckpointFile)); err == nil {
		why = "lost since: the checkpoint is there"
	}
	return usagef("--resume: %s has no %s (%s), so its settings are unknown: give the first command's flags again with --resume",
		dir, trainer.ConfigFile, why)
}

// runConfig is the configuration a run directory holds (its config.yaml),
// the base of a --resume without --config: `kiln train --run-dir DIR
// --resume` continues DIR's run as it was started, the flags given laid over
// it (and refused at the checkpoint if they change what it trains). ""
// when there is none (a run killed before it wrote one starts afresh).
func runConfig(f *pflag.FlagSet) (string, error) {
	dir, err := f.GetString("run-dir")
	if err != nil || dir == "" {
		return "", nil
	}
	return trainer.RunConfigFile(dir)
}

// trainingSetup is what kiln train and kiln lr-find both build from a
// config before they differ: the device and threads chosen, the data loaded,
// and a model shaped for that data inside a trainer.
type trainingSetup struct {
	splits *data.Splits
	spec   layers.Spec
	tr     *trainer.Trainer
	notes  []string // what the data's load said, for train.log once it is open
}

// setupTraining selects the device and threads, loads the data set and builds
// the model and its trainer. It sets c.Regression from the data (a csv
// decides from its target column).
func setupTraining(c *trainer.Config, console zerolog.Logger) (*trainingSetup, error) {
	if err := selectDevice(c.Device, console); err != nil {
		return nil, err
	}
	if _, err := parsePrecision(c.Precision, trainer.DefaultDevice()); err != nil { // before the data set is read
		return nil, usageError{precisionRefused{err}}
	}
	if c.Threads > 0 {
		engine.SetThreads(c.Threads)
	}
	opts := c.DataOptions()
	var notes []string
	var mu sync.Mutex // the loader may note from its workers
	opts.Folder.Note = func(m string) {
		mu.Lock()
		defer mu.Unlock()
		console.Info().Msg(m)
		notes = append(notes, m)
	}
	opts.CSV.Note = opts.Folder.Note
	splits, err := data.Load(c.Dataset, opts)
	if err != nil {
		return nil, err
	}
	tr0 := splits.Train
	if err := tr0.CheckClasses(); err != nil {
		return nil, usageError{err}
	}
	if unseen := tr0.UnseenClasses(); len(unseen) > 0 {
		have, them, their := "have", "them", "their"
		if len(unseen) == 1 {
			have, them, their = "has", "it", "its"
		}
		m := fmt.Sprintf("%d of the %d classes (%s) %s no training sample (the held-out rows or --subset took them all): "+
			"the model's output for %s is never trained, and %s test samples count as wrong", len(unseen), len(tr0.Classes), strings.Join(unseen, ", "), have, them, their)
		console.Warn().Msg(m)
		notes = append(notes, m)
	}
	if err := c.TakeTask(tr0.Task); err != nil {
		return nil, usageError{err}
	}
	if err := trainer.CheckAugment(*c, tr0); err != nil {
		return nil, usageError{err}
	}
	if err := trainer.CheckSchedule(*c, tr0); err != nil {
		return nil, usageError{err}
	}
	if err := trainer.CheckValidation(*c, splits); err != nil {
		return nil, usageError{err}
	}
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
	return &trainingSetup{splits: splits, spec: spec, tr: tr, notes: notes}, nil
}

// withResumePrecision adds to a resume's refused precision that the run
// may go on in fp32: the checkpoint holds float32 masters.
func withResumePrecision(err error, resume bool, c trainer.Config) error {
	var usage usageError
	var noPrecision precisionRefused
	if resume && errors.As(err, &usage) && errors.As(usage.error, &noPrecision) && !strings.EqualFold(c.Precision, "fp32") {
		return usageError{fmt.Errorf("%w; the run may go on in another precision: %s --precision fp32", noPrecision.error, resumeCommand(c))}
	}
	return err
}

// precisionRefused is a precision the device cannot compute in, refused
// before the data set is read.
type precisionRefused struct{ error }

func (p precisionRefused) Unwrap() error { return p.error }

// parsePrecision reads --precision, refusing one dev cannot compute in.
func parsePrecision(name string, dev engine.Device) (engine.Precision, error) {
	p, err := engine.ParsePrecision(name)
	if err != nil {
		return p, err
	}
	return p, p.Check(dev)
}

func runTrain(c trainer.Config, resume bool) error {
	cleanup := func() {}
	if c.RunDir == "" {
		c.RunDir, cleanup = defaultRunDir(c.Model)
	}
	return train(c, resume, cleanup)
}

// diskFullHint says how to go on after a full disk: under mpirun before
// endWorld prints the error and aborts the job, so that every rank's line
// carries it.
func diskFullHint(err error, c trainer.Config) error {
	var full *durable.DiskFullError
	if !errors.As(err, &full) {
		return err
	}
	return fmt.Errorf("%w\nthe last checkpoint, if there is one, is kept: free some space, then %s", err, resumeCommand(c))
}

// train is kiln train once its run directory is named. Under mpirun it is
// one rank of a data-parallel run (world.go), and rank 0 alone writes the
// run directory.
func train(c trainer.Config, resume bool, cleanup func()) (err error) {
	setConsoleLevel(c.LogLevel) // before the first line: the device's
	handOverBeforeMPI(c.Device)
	world, err := joinWorld()
	if err != nil {
		return err
	}
	c.WorldSize = 0
	if world != nil && world.Size() > 1 {
		c.WorldSize = world.Size()
	}
	if world != nil {
		defer func() { abortOnPanic(world, recover()); err = endWorld(world, err) }()
	}
	defer cleanup()                               // before endWorld, which may end the process
	defer func() { err = diskFullHint(err, c) }() // deferred after endWorld: it runs first
	if world != nil {
		if err := pickGPU(world, c.Device); err != nil {
			return err
		}
		if world.Rank() != 0 {
			return trainRank(c, world)
		}
	}
	if _, err := os.Stat(filepath.Join(c.RunDir, trainer.SummaryFile)); err == nil && resume && world == nil {
		// Ended: its result, read before the data, which a finished run
		// does not need (moved away, or taken by checks made since an
		// older Kiln ran it: --augment on MNIST).
		return printFinished(c)
	}
	console := logger()
	ts, err := setupTraining(&c, console)
	if err != nil {
		return withResumePrecision(err, resume, c)
	}
	splits, spec, tr, tr0 := ts.splits, ts.spec, ts.tr, ts.splits.Train
	run, err := trainer.OpenRunDir(c.RunDir, resume)
	if err != nil {
		return err
	}
	defer run.Close()
	if world != nil {
		if _, err := shareFinished(world, run.Finished()); err != nil {
			return err
		}
	}
	if run.Finished() {
		return printFinished(c)
	}
	var progress *os.File
	if isatty.IsTerminal(os.Stderr.Fd()) {
		progress = os.Stderr
		tr.Progress = progress
	}
	tr.Log = run.LoggerAt(os.Stderr, setConsoleLevel(c.LogLevel))
	if run.Resuming() {
		notePrecisionChange(tr.Log, c)
	}
	fileLog := run.Logger(nil) // the console said them as the data loaded
	for _, n := range ts.notes {
		fileLog.Info().Str("from", "data").Msg(n)
	}
	tr.Run = run
	leave, err := useWorld(world, c, tr)
	if err != nil {
		return err
	}
	defer leaveTogether(&err, leave)
	if err := run.WriteStart(c, withSummary(trainer.ModelInfoOf(c.Model, spec, tr0))); err != nil {
		return err
	}
	tr.Log.Info().Str("run_dir", c.RunDir).Str("data", tr0.Source).Msg("run")
	ctx, stop, status := stopContext()
	defer stop()
	sum, err := tr.Fit(ctx, splits)
	var refused *trainer.ResumeRefusedError
	switch {
	case errors.Is(err, trainer.ErrInterrupted):
		return exitError{fmt.Errorf("%w (%s)", err, resumeCommand(c)), status()}
	case errors.As(err, &refused):
		return usageError{err}
	case err != nil:
		return err
	}
	printSummary(sum, c.RunDir)
	return nil
}

// trainRank is kiln train on a rank other than 0: the same steps, with no
// run directory, progress bar or summary.
func trainRank(c trainer.Config, world *mpi.World) (err error) {
	if finished, err := shareFinished(world, false); err != nil || finished {
		return err
	}
	rankFault(world.Rank())
	ts, err := setupTraining(&c, rankLogger())
	if err != nil {
		return err
	}
	ts.tr.Log = rankLogger()
	leave, err := useWorld(world, c, ts.tr)
	if err != nil {
		return err
	}
	defer leaveTogether(&err, leave)
	ctx, stop, status := stopContext()
	defer stop()
	_, err = ts.tr.Fit(ctx, ts.splits)
	if errors.Is(err, trainer.ErrInterrupted) {
		return exitError{rankInterrupted{}, status()}
	}
	return err
}

// rankInterrupted is a rank's trainer.ErrInterrupted, other than rank 0's:
// rank 0 wrote the checkpoint, and says how to resume.
type rankInterrupted struct{}

func (rankInterrupted) Error() string        { return "training interrupted; rank 0 wrote the checkpoint" }
func (rankInterrupted) Is(target error) bool { return target == trainer.ErrInterrupted }

// notePrecisionChange says so when a resume computes in another precision
// than the run started in: allowed (the checkpoint holds float32 masters),
// but config.yaml keeps the first, and a later plain --resume returns to it.
func notePrecisionChange(log zerolog.Logger, c trainer.Config) {
	was, err := trainer.LoadConfigFile(filepath.Join(c.RunDir, trainer.ConfigFile), trainer.DefaultConfig())
	if err != nil {
		return // the resume itself says what is wrong with it
	}
	from, err1 := engine.ParsePrecision(was.Precision)
	to, err2 := engine.ParsePrecision(c.Precision)
	if err1 != nil || err2 != nil || from == to {
		return
	}
	log.Warn().Str("was", from.String()).Str("now", to.String()).
		Msgf("the run started in %s and goes on in %s from here; config.yaml keeps %s, so a later --resume without --precision %s returns to it (summary.json names the precision the run ends in, which eval and predict --run take)", from, to, from, to)
}

// resumeCommand is the command that resumes c's run: under mpirun with as
// many ranks.
func resumeCommand(c trainer.Config) string {
	cmd := "kiln train --run-dir " + shellQuote(c.RunDir) + " --resume"
	if c.WorldSize > 1 {
		cmd = fmt.Sprintf("mpirun -np %d %s", c.WorldSize, cmd)
	}
	return cmd
}

// printFinished answers --resume of a run that has ended: its outcome, and
// nothing changed. Settings given that differ from the run's (another
// --epochs, say, to train on) are an error: a finished run is not
// continued, and saying nothing would pass for having done so.
func printFinished(c trainer.Config) error {
	dir := c.RunDir
	if was, err := trainer.LoadRunConfig(filepath.Join(dir, trainer.ConfigFile)); err == nil {
		if d := trainer.ResumeDiff(was, c); d != "" {
			return usageError{fmt.Errorf("--resume: %s has finished, and a finished run is not continued: the settings "+
				"given differ from its own (%s); train a new run (another --run-dir)", dir, d)}
		}
	}
	sum, err := trainer.ReadSummary(dir)
	if err != nil {
		return err
	}
	outf("%s has finished (%s); nothing to resume\n", dir, sum.StopReason)
	printSummary(sum, dir)
	return nil
}

// printSummary prints a run's outcome on one line.
func printSummary(sum *trainer.Summary, dir string) {
	switch {
	case sum.TestAccuracy != nil && sum.TestLoss != nil:
		speed := ""
		if sum.TrainImagesPerSec > 0 {
			speed = fmt.Sprintf(", %.0f images/s", sum.TrainImagesPerSec)
		}
		outf("test accuracy %.2f%%  loss %.4f  (%s, %s%s)  → %s\n",
			100**sum.TestAccuracy, *sum.TestLoss, sum.Weights, trainer.Epochs(sum.EpochsRun), speed, dir)
	case sum.TestRMSE != nil:
		outf("test RMSE %.3f  MAE %.3f  R² %.4f  (%s, %s)  → %s\n",
			*sum.TestRMSE, *sum.TestMAE, *sum.TestR2, sum.Weights, trainer.Epochs(sum.EpochsRun), dir)
	case sum.StopReason == "stop-after-epoch":
		outf("stopped after epoch %d → %s (resume with --resume)\n", sum.EpochsRun, dir)
	default:
		outf("finished after %s (%s), no test set → %s\n", trainer.Epochs(sum.EpochsRun), sum.StopReason, dir)
	}
}
