package main

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
	"github.com/kiln-ml/kiln/trainer/tune"
)

func tuneCmd() *cobra.Command {
	var tf tuneFlags
	cmd := &cobra.Command{
		Use:   "tune",
		Short: "Search training settings: grid, random or successive halving, each trial a run directory",
		Long: `Search training settings. The space comes from --space FILE (YAML: one key per
setting, a list of values or a range) and/or --param flags:

  lr: {min: 1e-4, max: 0.3, scale: log}      --param lr=1e-4..0.3:log
  batch: {min: 16, max: 128, scale: pow2}    --param batch=16..128:pow2
  hidden: [32, 64, 128]                      --param hidden=32,64,128
  optimizer: [sgd, adamw]                    --param optimizer=sgd,adamw
  weight_decay: {min: 0, max: 0.01, steps: 4}

The training flags fix the settings the space leaves alone. Each trial is a
kiln train run directory DIR/trials/<NNN>; DIR/tune.json holds the state,
DIR/results.csv the results best first, DIR/best.yaml the best configuration
(kiln train --config DIR/best.yaml). --resume continues a stopped tune: no
finished trial runs again, a running one continues from its checkpoint. It
takes the command that started the tune again, or only --run-dir; other
settings are refused by name (--parallel and --threads may change).`,
		Args: noArgs("the settings to search are --param name=values"),
	}
	// The training flags live in their own set so that resolve sees only
	// them; cobra parses them together with the tune's own.
	cfs := pflag.NewFlagSet("training", pflag.ContinueOnError)
	cf := addConfigFlags(cfs)
	cfs.Lookup("run-dir").Usage = "tune directory (default runs/tune-<time>)"
	cfs.Lookup("threads").Usage = "CPU threads per trial (0: cores / --parallel)"
	_ = cfs.MarkHidden("stop-after-epoch")
	f := cmd.Flags()
	f.AddFlagSet(cfs)
	f.StringVar(&tf.configPath, "config", "", "YAML or JSON training configuration the trials start from (flags given override it)")
	f.StringVar(&tf.spacePath, "space", "", "search space, a YAML file")
	f.StringArrayVarP(&tf.params, "param", "p", nil, "a search dimension KEY=VALUES, e.g. lr=1e-4..0.3:log, batch=16..128:pow2, optimizer=sgd,adamw (repeatable)")
	f.StringVar(&tf.strategy, "strategy", "random", "grid, random or halving (ASHA successive halving)")
	f.IntVar(&tf.trials, "trials", 0, "number of trials (grid: 0 runs the whole grid; random and halving default 8)")
	f.IntVar(&tf.parallel, "parallel", 1, "trials run at once (capped so that threads × parallel ≤ cores)")
	f.BoolVar(&tf.resume, "resume", false, "continue the tune in --run-dir")
	f.StringVar(&tf.metric, "metric", "", "metric to rank by: "+strings.Join(tune.Metrics, ", ")+" (default val_acc, val_rmse for regression; ties on an accuracy go to the lower loss)")
	f.Uint64Var(&tf.searchSeed, "search-seed", 1, "seed of the random draws (--seed seeds the trials' training)")
	f.IntVar(&tf.eta, "eta", 3, "halving: keep the top 1/eta at each rung")
	f.Float64Var(&tf.minResource, "min-resource", 1, "halving: the first rung, in --rung-unit")
	f.StringVar(&tf.unit, "rung-unit", "epochs", "halving: rungs counted in epochs or steps")

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		markParsed(cfs)
		if err := tf.checkOwnFlags(f); err != nil {
			return err
		}
		if tf.resume {
			return tf.resumeTune(f, cfs, cf)
		}
		return tf.startTune(cfs, cf)
	}
	return cmd
}

// checkOwnFlags refuses what the tune's own flags cannot mean, whether or
// not the strategy reads them: a typo was caught only under halving.
func (tf *tuneFlags) checkOwnFlags(f *pflag.FlagSet) error {
	if tf.parallel < 1 {
		return usagef("--parallel %d: must be at least 1", tf.parallel)
	}
	if tf.strategy == "halving" || tf.resume {
		return nil // Start checks the values; a resume takes the tune's
	}
	for _, name := range []string{"eta", "min-resource", "rung-unit"} {
		if f.Changed(name) {
			return usagef("--%s %s: is for --strategy halving; this tune's is %s", name, f.Lookup(name).Value, tf.strategy)
		}
	}
	return nil
}

// tuneFlags are kiln tune's own flags (the training flags are in a
// configFlags).
type tuneFlags struct {
	configPath, spacePath, strategy, metric, unit string
	params                                        []string
	trials, parallel, eta                         int
	resume                                        bool
	searchSeed                                    uint64
	minResource                                   float64
}

// resumeTune continues the tune in dir. Flags beside --parallel and
// --threads must say what tune.json records (the same command again with
// --resume), or the refusal names the settings that differ.
func (tf *tuneFlags) resumeTune(f, cfs *pflag.FlagSet, cf *configFlags) error {
	dir := cf.c.RunDir
	if dir == "" {
		return usageError{errors.New("--resume needs --run-dir (the tune directory)")}
	}
	if !mayHoldTune(dir) {
		// Refused before the lock, which would make dir, or leave a
		// kiln.lock in it. (tune.Open checks again under the lock.)
		return fmt.Errorf("%s holds no tune (no %s) to resume: one stopped before writing it has nothing to continue; start it again without --resume", dir, tune.StateFile)
	}
	release, err := lockTuneDir(dir)
	if err != nil {
		return err
	}
	defer release(true)
	tu, err := tune.Open(dir)
	if err != nil {
		return err
	}
	if tuneFlagsGiven(f) {
		if err := tf.sameTune(cfs, cf, tu.State); err != nil {
			return usageError{fmt.Errorf("--resume continues the tune as %s records it: %w (only --parallel, --threads, --data-dir and --log-level may change)",
				filepath.Join(dir, tune.StateFile), err)}
		}
	}
	level := tu.State.Base.LogLevel // the level the tune started with, unless the console asks for another, as kiln train --resume takes
	if f.Changed("log-level") {
		c := tu.State.Base
		c.LogLevel = cf.c.LogLevel
		if err := c.Validate(); err != nil {
			return usageError{nameSetting(err, f, "")}
		}
		level = c.LogLevel
	}
	setConsoleLevel(level)
	if err := checkSpacePrecisions(tu.State.Space, tu.State.Base); err != nil {
		// On a machine without the tune's precision every trial would fail
		// for good; here it waits for one that has it.
		return usageError{fmt.Errorf("%w: resume the tune on a machine that has it", err)}
	}
	if f.Changed("data-dir") {
		// Where the data is, not what the trials train (a resume's mend for
		// a data set that was not found): the trials yet to end read it.
		if tu.State.Space.ChoosesData() {
			return usagef("--data-dir: the tune's space chooses each trial's data; it cannot change on resume")
		}
		abs, err := filepath.Abs(cf.c.DataDir) // as a start records it, for kiln eval from anywhere
		if err != nil {
			return err
		}
		for _, t := range tu.State.Trials {
			if !t.Status.Finished() {
				t.Config.DataDir = abs
			}
		}
		tu.State.Base.DataDir = abs
	}
	parallel := tf.parallel
	if !f.Changed("parallel") {
		parallel = cmp.Or(tu.State.Parallel, tf.parallel) // as the tune began
	}
	threads := cf.c.Threads
	if !f.Changed("threads") {
		// As the tune began: its trials' count, else (killed before its
		// first trial) its --threads, else as many as now. An older Kiln's
		// tune.json lacks the count: its trials' configurations have it.
		threads = cmp.Or(tu.State.Threads, tu.State.Base.Threads, trialThreads(dir, tu.State.Trials))
	}
	return runTune(tu, parallel, threads)
}

// trialThreads is the thread count the trials of the tune in dir that
// began ran on, as their config.yaml says (0: none says).
func trialThreads(dir string, trials []*tune.Trial) int {
	for _, t := range trials {
		if t.Starts == 0 {
			continue
		}
		if c, err := trainer.LoadRunConfig(filepath.Join(dir, t.Dir, trainer.ConfigFile)); err == nil && c.Threads > 0 {
			return c.Threads
		}
	}
	return 0
}

// tuneFlagsGiven: flags other than those a resume takes anyway.
func tuneFlagsGiven(f *pflag.FlagSet) bool {
	given := false
	f.Visit(func(fl *pflag.Flag) {
		given = given || !slices.Contains([]string{"resume", "run-dir", "parallel", "threads", "log-level", "data-dir"}, fl.Name)
	})
	return given
}

// sameTune is nil when the flags describe the tune st records, or names
// what differs.
func (tf *tuneFlags) sameTune(cfs *pflag.FlagSet, cf *configFlags, st *tune.State) error {
	if tf.spacePath == "" && len(tf.params) == 0 {
		// Settings are compared as the tune's whole command: a few alone
		// would differ from it in every other.
		return errors.New("settings given without the tune's --space or --param: give its whole first command again, or none of it")
	}
	base, space, set, err := tf.plan(cfs, cf)
	if err != nil {
		return err
	}
	d, err := tune.Diff(st, base, space, set)
	if err == nil && d != "" {
		err = fmt.Errorf("the flags differ in %s", d)
	}
	return err
}

// startTune builds the space and the trials from the flags and runs them.
func (tf *tuneFlags) startTune(cfs *pflag.FlagSet, cf *configFlags) error {
	base, space, set, err := tf.plan(cfs, cf)
	if err != nil {
		return usageError{err}
	}
	setConsoleLevel(base.LogLevel)
	if err := checkSpacePrecisions(space, base); err != nil {
		return usageError{err}
	}
	dir := cf.c.RunDir
	if dir == "" {
		var cleanup func()
		dir, cleanup = defaultRunDir("tune")
		defer cleanup()
	}
	release, err := lockTuneDir(dir)
	if err != nil {
		return err
	}
	tu, err := tune.Start(dir, base, space, set)
	if err != nil {
		release(false)
		if _, io := errors.AsType[*tune.WriteError](err); io {
			return err
		}
		return usageError{err}
	}
	defer release(true)
	for _, t := range tu.State.Trials {
		if t.Status == tune.Invalid { // they count among --trials: say so before the rest run
			log := logger()
			log.Warn().Str("trial", t.Name()).Str("why", t.Error).Msg("an invalid trial: its settings do not go together; it will not run")
		}
	}
	if n := space.GridSize(); set.Strategy == "grid" && set.Trials > 0 && set.Trials < n {
		log := logger()
		log.Warn().Int("trials", set.Trials).Int("grid", n).Msg("running only the first --trials points of the grid")
	}
	if n := len(tu.State.Trials); set.Strategy != "grid" && n < set.Trials {
		log := logger()
		log.Warn().Int("trials", set.Trials).Int("distinct", n).Msg("the space holds fewer distinct settings than --trials: running each once")
	}
	return runTune(tu, tf.parallel, cf.c.Threads)
}

// plan is the tune the flags describe: the trials' base configuration, the
// space and the search settings.
func (tf *tuneFlags) plan(cfs *pflag.FlagSet, cf *configFlags) (trainer.Config, *tune.Space, tune.Settings, error) {
	cf.lenientInert = true // checked here and per trial, once the space is known
	base, err := cf.resolve(cfs, tf.configPath)
	if err != nil {
		return trainer.Config{}, nil, tune.Settings{}, err
	}
	space, err := tf.space()
	if err != nil {
		return trainer.Config{}, nil, tune.Settings{}, err
	}
	inFile := map[string]bool{}
	if tf.configPath != "" {
		if inFile, err = trainer.ConfigFileKeys(tf.configPath); err != nil {
			return trainer.Config{}, nil, tune.Settings{}, err
		}
	}
	for _, k := range space.Keys() {
		// The space's values win; a flag for the same setting would be
		// left unread without a word. A config file (a best.yaml holds
		// every setting) is told so.
		if flag := strings.ReplaceAll(k, "_", "-"); cfs.Changed(flag) {
			return trainer.Config{}, nil, tune.Settings{}, fmt.Errorf("--%s %s: the search space sets %s too; give it in one place", flag, cfs.Lookup(flag).Value, k)
		}
		if inFile[k] {
			log := logger()
			log.Warn().Str("config", tf.configPath).Str("setting", k).Msg("the search space sets it: the config file's value is not used")
		}
	}
	if !slices.ContainsFunc(space.Keys(), func(k string) bool { return k == "model" || k == "schedule" }) {
		// No trial gives the setting a model or schedule that reads it; an
		// optimizer from the space may read momentum and Nesterov.
		var mayRead []string
		if slices.Contains(space.Keys(), "optimizer") {
			mayRead = []string{"momentum", "nesterov"}
		}
		if err := base.CheckInertBut(mayRead...); err != nil {
			return trainer.Config{}, nil, tune.Settings{}, nameSetting(err, cfs, tf.configPath)
		}
	}
	metric, trials := tf.metric, tf.trials
	regression, known, err := taskOf(base, space)
	if err != nil && tf.metric == "" {
		return trainer.Config{}, nil, tune.Settings{}, err
	}
	if metric == "" {
		metric = "val_acc"
		if regression {
			metric = "val_rmse"
		}
	}
	if known && slices.Contains(map[bool][]string{false: {"val_rmse", "val_mae", "test_rmse", "test_mae"},
		true: {"val_acc", "test_acc", "test_top5"}}[regression], metric) {
		task := map[bool]string{false: "a classification", true: "a regression"}[regression]
		return trainer.Config{}, nil, tune.Settings{}, fmt.Errorf("--metric %s: the data is %s, whose runs do not report it", metric, task)
	}
	if trials == 0 && tf.strategy != "grid" {
		trials = 8
	}
	base.RunDir = ""
	set := tune.Settings{Strategy: tf.strategy, Trials: trials, Metric: metric, Seed: tf.searchSeed,
		Eta: tf.eta, MinResource: tf.minResource, Unit: tf.unit, Given: givenSettings(cfs, inFile)}
	return base, space, set, nil
}

// givenSettings are the training settings the user gave, by key: a flag,
// or a key of the config file (inFile).
func givenSettings(cfs *pflag.FlagSet, inFile map[string]bool) []string {
	given := append([]string{}, slices.Collect(maps.Keys(inFile))...) // never nil: nil means "not known" to the tune
	cfs.Visit(func(fl *pflag.Flag) { given = append(given, strings.ReplaceAll(fl.Name, "-", "_")) })
	slices.Sort(given)
	return slices.Compact(given)
}

// taskOf says whether the tune's trials are regressions, where every trial
// has the one data set: a CSV file's task comes from its data (its target
// column, or --csv-task), which is read here for it (the trials read it
// again, from a cache each).
func taskOf(base trainer.Config, space *tune.Space) (regression, known bool, err error) {
	switch {
	case space.ChoosesData():
		return false, false, nil
	case base.Dataset != "csv":
		return base.Regression, true, nil
	case base.CSVTask == "regression" || base.CSVTask == "classification":
		return base.CSVTask == "regression", true, nil
	}
	splits, err := data.Load(base.Dataset, base.DataOptions())
	if err != nil {
		// A metric guessed now would stay the tune's after a resume mends it.
		return false, false, fmt.Errorf("the CSV file's task (regression or classification) decides the metric, and it could not be read: %w; "+
			"give --csv-task, or --metric", err)
	}
	return splits.Train.Task == data.Regression, true, nil
}

// checkSpacePrecisions refuses, before the tune starts, a precision the
// trials' device lacks (tf32 on the CPU, bf16 without AVX512_BF16), in the
// space or fixed by the base: every such trial would otherwise fail on its
// own.
func checkSpacePrecisions(space *tune.Space, base trainer.Config) error {
	dev, err := resolveDevice(base.Device, zerolog.Nop())
	if err != nil {
		return err
	}
	searched := slices.ContainsFunc(space.Dims, func(d tune.Dimension) bool { return d.Key == "precision" })
	if _, err := parsePrecision(base.Precision, dev); err != nil && !searched {
		return fmt.Errorf("--precision %s: %w", base.Precision, err)
	}
	for _, d := range space.Dims {
		if d.Key != "precision" {
			continue
		}
		for _, v := range d.Values {
			if _, err := parsePrecision(fmt.Sprint(v), dev); err != nil {
				return fmt.Errorf("search space: %w", err)
			}
		}
	}
	return nil
}

// space is the search space of --space and the --param flags.
func (tf *tuneFlags) space() (*tune.Space, error) {
	space := &tune.Space{}
	if tf.spacePath != "" {
		var err error
		if space, err = tune.LoadSpace(tf.spacePath); err != nil {
			return nil, err
		}
	}
	for _, p := range tf.params {
		d, err := tune.ParseParam(p)
		if err == nil {
			err = space.Add(d)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(space.Dims) == 0 {
		return nil, errors.New("no search space: give --space FILE or --param KEY=VALUES")
	}
	return space, nil
}

// mayHoldTune: dir has a tune.json, or a kiln.lock (a tune that another
// process is starting there, which the lock then names).
func mayHoldTune(dir string) bool {
	for _, name := range []string{tune.StateFile, trainer.LockFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			return true
		}
	}
	return false
}

// lockTuneDir takes the tune directory's lock (making it when missing) for
// the command's life, so that a second tune into it is refused. release
// drops the lock, and the directory too when it was made here for a tune
// that never started.
func lockTuneDir(dir string) (release func(started bool), err error) {
	_, statErr := os.Stat(dir)
	made := errors.Is(statErr, os.ErrNotExist)
	lock, err := trainer.LockDir(dir)
	if err != nil {
		return nil, err
	}
	return func(started bool) {
		lock.Close()
		if made && !started {
			os.Remove(filepath.Join(dir, trainer.LockFile))
			os.Remove(dir)
		}
	}, nil
}

// markParsed makes fs, whose flags cobra parsed as part of the command's
// set, know which were given: FlagSet.Visit lists only flags set through
// the set itself.
func markParsed(fs *pflag.FlagSet) {
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Changed {
			fl.Changed = false
			_ = fs.Set(fl.Name, fl.Value.String())
		}
	})
}
