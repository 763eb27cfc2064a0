package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// wholeFlag is an integer training flag whose parse error says what the
// setting accepts (pflag's would only quote strconv).
type wholeFlag struct {
	p   *int
	key string // the configuration key
}

func (w *wholeFlag) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 0, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("must be %s", trainer.SettingRange(w.key))
	}
	*w.p = int(n)
	return nil
}

func (w *wholeFlag) String() string { return strconv.Itoa(*w.p) }
func (w *wholeFlag) Type() string   { return "int" }

// uintFlag is wholeFlag for the seed.
type uintFlag struct {
	p   *uint64
	key string
}

func (u *uintFlag) Set(s string) error {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 0, 64)
	if err != nil {
		return fmt.Errorf("must be %s", trainer.SettingRange(u.key))
	}
	*u.p = n
	return nil
}

func (u *uintFlag) String() string { return strconv.FormatUint(*u.p, 10) }
func (u *uintFlag) Type() string   { return "uint" }

// intFlag binds an integer flag to *p, keeping *p (the default
// configuration's value) as its default.
func intFlag(f *pflag.FlagSet, p *int, name, usage string) {
	f.Var(&wholeFlag{p, strings.ReplaceAll(name, "-", "_")}, name, usage)
}

// nameSetting names the setting of a *trainer.SettingError as the user gave
// it: the flag when one was given or when there is no configuration file
// (a flag is then the only way to set it), else the file's key.
func nameSetting(err error, f *pflag.FlagSet, configPath string) error {
	var se *trainer.SettingError
	if !errors.As(err, &se) {
		return err
	}
	flag := strings.ReplaceAll(se.Key, "_", "-")
	fl := f.Lookup(flag)
	switch {
	case fl != nil && (fl.Changed || configPath == ""):
		se.Name = "--" + flag
		se.Problem = keysAsFlags(se.Problem, f)
	case configPath != "":
		return fmt.Errorf("config %s: %w", configPath, err)
	}
	return err
}

// changedSettings are the flags given that a resume may not change.
func changedSettings(f *pflag.FlagSet) []string {
	var out []string
	f.Visit(func(fl *pflag.Flag) {
		if key := strings.ReplaceAll(fl.Name, "-", "_"); fl.Name != "resume" && !slices.Contains(trainer.ResumableSettings, key) {
			out = append(out, "--"+fl.Name)
		}
	})
	return out
}

// resumableFlags are the settings a resume may change, as flags.
func resumableFlags() []string {
	out := make([]string, len(trainer.ResumableSettings))
	for i, k := range trainer.ResumableSettings {
		out[i] = "--" + strings.ReplaceAll(k, "_", "-")
	}
	return out
}

// settingKey is a configuration key inside a message (early_stop,
// val_fraction): the words keysAsFlags may rewrite.
var settingKey = regexp.MustCompile(`\b[a-z]+(_[a-z]+)+\b`)

// keysAsFlags names the other settings a problem mentions as flags too,
// where the command has them, so that "--patience 3: needs early_stop"
// reads "needs --early-stop" to someone who never wrote a config file.
func keysAsFlags(problem string, f *pflag.FlagSet) string {
	return settingKey.ReplaceAllStringFunc(problem, func(key string) string {
		flag := strings.ReplaceAll(key, "_", "-")
		if f.Lookup(flag) == nil {
			return key
		}
		return "--" + flag
	})
}

// nameUsage is nameSetting for the usage errors of checks made once the
// data is read (CheckAugment, CheckValidation, ...), which kiln train and
// lr-find return from deeper down.
func nameUsage(err error, f *pflag.FlagSet, configPath string) error {
	var u usageError
	if errors.As(err, &u) {
		return usageError{nameSetting(u.error, f, configPath)}
	}
	return err
}

// configFlags binds every training flag to a Config and remembers how to
// copy each one, so that flags given on the command line override a config
// file and flags not given do not.
type configFlags struct {
	c       trainer.Config
	classes string
	miles   string
	// lenientInert leaves inert flags to kiln tune's trials (tune.go).
	lenientInert bool
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
	f.StringVar(&c.CSVTarget, "csv-target", "", "a CSV file's target column: a header name or a 0-based index, negative from the end (default: the last)")
	f.StringVar(&c.CSVTask, "csv-task", "", "a CSV file's task: auto (integers of at most 32 values are classes), classification or regression")
	f.StringVar(&c.CSVHeader, "csv-header", "", "whether a CSV file's first row names its columns: auto (when a name sits above a number), yes or no")
	f.BoolVar(&c.Augment, "augment", false, "random crop (pad 4) and horizontal flip, for classifying pictures of 16×16 and more (not MNIST digits, tables or regression)")
	f.StringVar(&c.ImageSize, "image-size", "", "image folder: bring every image to HxW (default: the model's input, 28x28 or 32x32)")
	f.StringVar(&c.ImageFit, "image-fit", "", "image folder: crop (resize the shorter side, cut the centre; default) or pad")
	f.BoolVar(&c.Strict, "strict", false, "image folder: stop at the first bad file instead of skipping it")
	intFlag(f, &c.Hidden, "hidden", "width of mlp hidden layers / gmlp channels (0: model default)")
	intFlag(f, &c.Depth, "depth", "number of mlp hidden layers / gmlp blocks (0: model default)")
	f.Float64Var(&c.Dropout, "dropout", 0, "cnn's dropout before the head (0: model default 0.3)")
	intFlag(f, &c.Epochs, "epochs", "epochs")
	intFlag(f, &c.Batch, "batch", "batch size")
	intFlag(f, &c.MicroBatch, "micro-batch", "run forward and backward N samples at a time, one update per batch (CPU; 0: Kiln's choice; -1: the whole batch)")
	f.BoolVar(&c.DropLast, "drop-last", false, "drop each epoch's last, short batch")
	f.BoolVar(&c.SyncBN, "sync-bn", false, "under mpirun: batch norm statistics over every rank's samples (nn.SyncBatchNorm), not each rank's own")
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
	f.Float64Var(&c.PlateauFactor, "plateau-factor", 0, "plateau schedule: multiply the LR by this when the validation loss stalls (0: 0.1)")
	intFlag(f, &c.PlateauPatience, "plateau-patience", "plateau schedule: validations without improvement before the LR drops (0: 10)")
	f.StringVar(&c.EarlyStop, "early-stop", "", "stop early on val_loss, val_acc, train_loss or val_rmse")
	intFlag(f, &c.Patience, "patience", "checks without improvement before --early-stop stops (0: never on patience, only at --target)")
	f.Float64Var(&c.MinDelta, "min-delta", 0, "smallest change that counts as an improvement")
	f.Float64Var(&c.Target, "target", 0, "stop once the early-stop metric reaches this")
	f.BoolVar(&c.RestoreBest, "restore-best", false, "end with the best weights, not the last")
	intFlag(f, &c.ValEvery, "val-every", "also validate every N steps (0: at epoch ends only)")
	f.Var(&uintFlag{&c.Seed, "seed"}, "seed", "random seed")
	f.StringVar(&c.Device, "device", c.Device, "cpu, cuda or auto")
	f.StringVar(&c.Precision, "precision", "", "what convolutions and linear layers multiply in: fp32 (default), tf32 (GPU) or bf16 (GPU, or a CPU with AVX512_BF16 or AMX)")
	intFlag(f, &c.Threads, "threads", "CPU threads (0: all cores)")
	f.StringVar(&c.RunDir, "run-dir", "", "run directory (default runs/<model>-<time>)")
	intFlag(f, &c.StopAfterEpoch, "stop-after-epoch", "end the run after this epoch, resumable")
	intFlag(f, &c.MemoryLimitMB, "memory-limit-mb", "refuse runs estimated to need more (default: available memory, within a container's cgroup limit)")
	intFlag(f, &c.LogEvery, "log-every", "log training loss, accuracy, LR and images/s every N steps (0: per epoch)")
	f.StringVar(&c.LogLevel, "log-level", "", "console log level: debug, info (default) or warn")
	f.BoolVar(&c.NoVisuals, "no-visuals", false, "skip histograms.jsonl and visuals.json (the pictures of kiln plot and kiln board)")
	f.BoolVar(&c.NoCUDAGraph, "no-cuda-graph", false, "on the GPU: launch each step's kernels one by one, not as one CUDA graph (the same results)")
	return cf
}

// resolve builds the run's configuration: defaults, then the config file,
// then the flags that were given.
func (cf *configFlags) resolve(f *pflag.FlagSet, configPath string) (trainer.Config, error) {
	c, err := cf.fileOverRecipe(f, configPath)
	if err != nil {
		return c, err
	}
	if err := cf.layFlags(&c, f); err != nil {
		return c, err
	}
	if c.Dataset == "mnist-rotation" {
		c.Regression = true
	}
	// A resume's own config.yaml says every setting as it was; a --config
	// given again with --resume is the user's file, read as the first time.
	runsOwn := f.Changed("resume") && !f.Changed("config")
	if !runsOwn {
		if err := optimizerDefaults(&c, f, configPath); err != nil {
			return c, err
		}
	}
	// The run's config.yaml holds the data directory: absolute, so that
	// kiln eval and --resume find it from any directory.
	if c.DataDir != "" {
		if c.DataDir, err = filepath.Abs(c.DataDir); err != nil {
			return c, err
		}
	}
	if runsOwn && !f.Changed("stop-after-epoch") {
		// The first command's stop, which this resume goes past; one given
		// now stops at once where the checkpoint has reached it.
		c.StopAfterEpoch = 0
	}
	if runsOwn {
		// The run's own config.yaml: an older Kiln took settings that
		// Validate now refuses for want of a reader, and ran without them.
		cf.dropInert(&c, f, configPath, (*trainer.Config).DropUnread)
	}
	if err := c.Validate(); err != nil { // out of range is an error, read or not
		named := false // the setting at fault was given now: it is its own problem
		if se, ok := errors.AsType[*trainer.SettingError](err); ok {
			named = f.Changed(strings.ReplaceAll(se.Key, "_", "-"))
		}
		err = nameSetting(err, f, configPath)
		if changed := changedSettings(f); runsOwn && !named && len(changed) > 0 {
			// The run's file was valid: the flags laid over it made the mix.
			err = fmt.Errorf("%w (the run's settings with %s given: a resume changes only %s)", err,
				strings.Join(changed, ", "), strings.Join(resumableFlags(), ", "))
		}
		return c, err
	}
	cf.dropInert(&c, f, configPath, (*trainer.Config).DropInert)
	if cf.lenientInert {
		return c, nil
	}
	return c, nameSetting(c.CheckInert(), f, configPath)
}

// fileOverRecipe is the config file laid over the recipe of the model
// (flag, then config file, then the default): the model is found first.
func (cf *configFlags) fileOverRecipe(f *pflag.FlagSet, configPath string) (trainer.Config, error) {
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
	if configPath == "" {
		return c, nil
	}
	c, err := trainer.LoadConfigFile(configPath, c)
	if err != nil {
		return c, err
	}
	if f.Changed("resume") && filepath.Base(configPath) == trainer.ConfigFile {
		// A run's own config.yaml, which older runs wrote without a false
		// nesterov.
		return c, trainer.RunFileOmissions(&c, configPath)
	}
	// An older run's config.yaml or tune's best.yaml given to --config
	// trains as the run did, not with the recipe's Nesterov.
	older, err := trainer.OlderKilnFile(configPath)
	if err != nil || !older {
		return c, err
	}
	if was := c.Nesterov; was {
		if err := trainer.RunFileOmissions(&c, configPath); err != nil {
			return c, err
		}
		if !f.Changed("nesterov") && c.Optimizer == "sgd" { // the Adam family reads none
			log := logger()
			log.Warn().Str("config", configPath).Msg("the file is a whole configuration without nesterov, as an older Kiln wrote them when it was false: read as nesterov: false (--nesterov for Nesterov momentum)")
		}
	}
	return c, nil
}

// layFlags lays the flags given over c.
func (cf *configFlags) layFlags(c *trainer.Config, f *pflag.FlagSet) error {
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
			err = copyFlag(c, &cf.c, fl.Name)
		}
	})
	return err
}

// dropInert leaves out an inert setting (trainer.DropInert) of the file, as
// an older Kiln, which wrote such files, ignored it; resolve refuses one
// given as a flag (kiln tune checks its trials instead: its space may give
// the model or the schedule that reads it).
func (cf *configFlags) dropInert(c *trainer.Config, f *pflag.FlagSet, configPath string,
	drop func(*trainer.Config, func(string) bool) []*trainer.SettingError) {
	given := func(key string) bool { return f.Changed(strings.ReplaceAll(key, "_", "-")) }
	log := logger()
	for _, d := range drop(c, given) {
		log.Warn().Str("config", configPath).Str("setting", d.Key).Str("value", d.Value).Str("why", d.Problem).Msg("left out: nothing reads it")
	}
}

// optimizerDefaults gives a run whose --optimizer is not its model's
// recipe's that optimiser's own defaults where neither a flag nor the
// config file sets them (trainer.UseOptimizerDefaults).
func optimizerDefaults(c *trainer.Config, f *pflag.FlagSet, configPath string) error {
	inFile := map[string]bool{}
	if configPath != "" {
		var err error
		if inFile, err = trainer.ConfigFileKeys(configPath); err != nil {
			return err
		}
	}
	given := func(key string) bool { return inFile[key] || f.Changed(strings.ReplaceAll(key, "_", "-")) }
	trainer.UseOptimizerDefaults(c, trainer.DefaultConfigFor(c.Model, c.Dataset), given)
	return nil
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
