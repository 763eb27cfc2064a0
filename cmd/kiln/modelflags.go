package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kiln-ml/kiln/engine/safetensors"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// modelFlags are the flags eval, predict and export share: which model,
// built for which data, with which weights.
type modelFlags struct {
	model, dataset, dataDir string
	weights, run, classes   string
	hidden, depth           int
	seed                    uint64
	subset, valFraction     float64 // eval only
	precision               string  // eval and predict
}

func addModelFlags(f *pflag.FlagSet) *modelFlags {
	m := &modelFlags{}
	f.StringVar(&m.model, "model", "lenet", "model: "+strings.Join(layers.ModelNames(), ", "))
	f.StringVar(&m.dataset, "dataset", "mnist", "data set (its shape, classes and normalisation): "+strings.Join(data.Names(), ", "))
	f.StringVar(&m.dataDir, "data-dir", "", "where the data files are (default: $KILN_DATA_DIR, ./data, then well-known places)")
	f.StringVar(&m.weights, "weights", "", "safetensors weights: a run's best/last.safetensors or checkpoint.safetensors, or an export (give the --model, --dataset, --classes, --hidden and --depth it was trained with)")
	f.StringVar(&m.run, "run", "", "run directory: model from its model.json, data set from its config.yaml, weights as its summary.json names them (else best, else last)")
	f.StringVar(&m.classes, "classes", "", "the classes the model was trained on, e.g. 0,1 (relabelled 0..k-1)")
	f.IntVar(&m.hidden, "hidden", 0, "width of mlp hidden layers / gmlp channels, as trained (0: model default)")
	f.IntVar(&m.depth, "depth", 0, "number of mlp hidden layers / gmlp blocks, as trained (0: model default)")
	f.Uint64Var(&m.seed, "seed", 1, "seed of the data set's --subset draw and held-out rows (as in training)")
	return m
}

// modelSetup is what the model flags resolve to.
type modelSetup struct {
	name    string
	spec    *layers.Spec // from a run's model.json; nil: derived from the data
	hidden  int
	depth   int
	seed    uint64
	dataset string
	opts    data.Options // Dir, Classes, Subset, ValFraction (eval), Seed
	weights string
	classes []string           // the run's class names (model.json), when known
	info    *trainer.ModelInfo // the run's model.json, when there is a run
	// precision is what eval and predict multiply in: --precision, else
	// the run's (its config.yaml), else fp32.
	precision string
}

// resolve applies --run (when given) under the flags that were set and
// checks every value. Mistakes are usage errors.
func (m *modelFlags) resolve(f *pflag.FlagSet) (*modelSetup, error) {
	classes, err := parseInts(m.classes, "--classes")
	if err != nil {
		return nil, usageError{err}
	}
	s := &modelSetup{name: strings.ToLower(m.model), hidden: m.hidden, depth: m.depth, seed: m.seed,
		dataset: m.dataset, weights: m.weights,
		opts:      data.Options{Dir: m.dataDir, Classes: classes, Subset: m.subset, ValFraction: m.valFraction, Seed: m.seed},
		precision: m.precision}
	if m.run != "" {
		if err := s.fromRun(m.run, f); err != nil {
			return nil, err
		}
	}
	switch {
	case !slices.Contains(layers.ModelNames(), s.name):
		return nil, usagef("--model %q: unknown (have %s)", s.name, strings.Join(layers.ModelNames(), ", "))
	case !slices.Contains(data.Names(), s.dataset):
		return nil, usagef("--dataset %q: unknown (have %s)", s.dataset, strings.Join(data.Names(), ", "))
	case s.hidden < 0 || s.depth < 0:
		return nil, usagef("--hidden and --depth must not be negative")
	case !(s.opts.Subset >= 0 && s.opts.Subset <= 1):
		return nil, usagef("--subset %v: must be a fraction in (0, 1]", s.opts.Subset)
	case !(s.opts.ValFraction >= 0 && s.opts.ValFraction < 1):
		return nil, usagef("--val-fraction %v: must be in [0, 1)", s.opts.ValFraction)
	case s.weights == "":
		return nil, usagef("--weights FILE (or --run DIR) is required")
	}
	if f.Changed("hidden") || f.Changed("depth") {
		knobs := layers.Spec{Hidden: s.hidden, Depth: s.depth}
		if s.spec != nil {
			knobs = *s.spec // the run's, under the flags
		}
		if err := layers.CheckKnobs(s.name, knobs); err != nil {
			return nil, usagef("--%v", err)
		}
	}
	for _, k := range s.opts.Classes {
		if k < 0 {
			return nil, usagef("--classes: %d is not a class", k)
		}
	}
	if st, err := os.Stat(s.weights); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, usagef("--weights %s: no such file", s.weights)
		}
		return nil, usagef("--weights: %v", err)
	} else if st.IsDir() {
		return nil, usagef("--weights %s is a directory (for a run directory use --run)", s.weights)
	}
	return s, nil
}

// fromRun takes the model, its spec, the data set and the weights from a run
// directory, except where a flag was given.
func (s *modelSetup) fromRun(dir string, f *pflag.FlagSet) error {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return usageError{fmt.Errorf("--run %s: no such directory", dir)}
	}
	info, err := trainer.ReadModelInfo(dir)
	if err != nil {
		return usageError{fmt.Errorf("--run %s: %w", dir, err)}
	}
	model, spec := info.Model, info.Spec
	s.classes, s.info = info.Classes, &info
	set := f.Changed
	if !set("model") {
		s.name = strings.ToLower(model)
	}
	if set("hidden") {
		spec.Hidden = s.hidden
	}
	if set("depth") {
		spec.Depth = s.depth
	}
	s.spec = &spec
	path, err := trainer.RunConfigFile(dir)
	switch {
	case err != nil:
		return fmt.Errorf("--run %s: %w", dir, err)
	case path == "" && !set("dataset"):
		// MNIST, the default, stood in for the run's data, silently.
		return usagef("--run %s: %s is missing: it names the data the run trained on; restore it, or give --dataset (and --data-dir)",
			dir, filepath.Join(dir, trainer.ConfigFile))
	}
	if path != "" {
		c, err := trainer.LoadConfigFile(path, trainer.DefaultConfig())
		if err != nil {
			return err
		}
		if !set("dataset") {
			s.dataset = c.Dataset
		}
		if !set("data-dir") {
			s.opts.Dir = c.DataDir
		}
		s.opts.CSV = c.DataOptions().CSV // the run's target column and task
		if t := s.opts.CSV.Task; t == "" || t == "auto" {
			// The task the guess made at training, which rows added since
			// may turn (more than 32 integer values: a regression).
			s.opts.CSV.Task = map[bool]string{false: "classification", true: "regression"}[spec.Regression]
		}
		if !set("classes") {
			s.opts.Classes = c.Classes
		}
		if !set("seed") {
			s.opts.Seed = c.Seed
		}
		if f.Lookup("subset") != nil && !set("subset") {
			s.opts.Subset = c.Subset
		}
		if f.Lookup("val-fraction") != nil && !set("val-fraction") {
			s.opts.ValFraction = c.ValFraction
		}
		if f.Lookup("precision") != nil && !set("precision") {
			s.precision = runPrecision(dir).String() // a resume in another precision ended it there
		}
	}
	if set("weights") {
		return nil
	}
	w, err := trainer.RunWeights(dir)
	if err != nil {
		return fmt.Errorf("--run %s: %w", dir, err)
	}
	s.weights = w
	return nil
}

// addPrecisionFlag adds eval's and predict's --precision.
func (m *modelFlags) addPrecisionFlag(f *pflag.FlagSet) {
	f.StringVar(&m.precision, "precision", "", "what the model's products compute in: fp32, tf32 (GPU) or bf16 (default: the run's, else fp32)")
}

// checkPrecision refuses, once the device is chosen, a precision it cannot
// compute in: the run's too, since figures in another precision would not
// be the run's (--precision fp32 asks for those).
func (s *modelSetup) checkPrecision(f *pflag.FlagSet) error {
	_, err := parsePrecision(s.precision, trainer.DefaultDevice())
	switch {
	case err != nil && !f.Changed("precision"):
		return usagef("the run trained in %s: %v (--precision fp32 computes in fp32, the figures then not quite the run's)", s.precision, err)
	case err != nil:
		return usagef("--precision %s: %v", s.precision, err)
	}
	return nil
}

// asRun makes d the data the run's model was trained on, where the data are
// the user's own (a folder's sub-folders, a CSV's rows) and may have changed
// or be another set: classes numbered by name as in model.json (another
// folder's dog was the model's cat), and a CSV's features and target on the
// run's scales (another file's statistics moved every input and output).
func (s *modelSetup) asRun(d *data.Dataset) error {
	if s.dataset != "folder" && s.dataset != "csv" {
		return nil
	}
	if err := d.AsClasses(s.classes); err != nil {
		return err
	}
	if s.dataset != "csv" || s.info == nil {
		return nil // a folder's load took the run's mean and std itself
	}
	if err := d.AsNormalised(s.info.Mean, s.info.Std); err != nil {
		return err
	}
	if t := s.info.Target; t != nil {
		d.AsTargetScale(t.Shift, t.Scale)
	}
	return nil
}

// describe returns the data set's metadata (shape, classes, normalisation)
// after --classes, reading files only for csv, whose shape lives in its file
// (its target column and task the run's), with the run's class names
// (CIFAR-10 files may name their own).
func (s *modelSetup) describe() (*data.Dataset, error) {
	if s.dataset == "csv" {
		sp, err := data.Load(s.dataset, data.Options{Dir: s.opts.Dir, Classes: s.opts.Classes, Seed: s.opts.Seed, CSV: s.opts.CSV})
		if err != nil {
			return nil, err
		}
		return sp.Train, s.asRun(sp.Train)
	}
	d, err := data.DescribeIn(s.dataset, s.opts.Dir)
	if err != nil {
		return nil, err
	}
	if len(s.opts.Classes) > 0 {
		if d, err = d.KeepClasses(s.opts.Classes); err != nil {
			return nil, err
		}
	}
	if d.Task == data.Classification && len(s.classes) == len(d.Classes) {
		d.Classes = s.classes
	}
	return d, nil
}

// build makes the model for the data meta describes (a loaded split or
// data.Describe's metadata; nil when unknown), then loads the weights.
func (s *modelSetup) build(meta *data.Dataset) (*layers.Model, error) {
	spec := layers.Spec{Hidden: s.hidden, Depth: s.depth, Seed: s.seed}
	switch {
	case s.spec != nil:
		spec = *s.spec
		if meta != nil {
			if err := specFits(spec, meta); err != nil {
				return nil, err
			}
		}
	case meta == nil:
		return nil, fmt.Errorf("no model spec: give --dataset or --run")
	default:
		spec.Channels, spec.Height, spec.Width = meta.Channels, meta.Height, meta.Width
		spec.Classes, spec.Regression = meta.NumClasses(), meta.Task == data.Regression
	}
	// Checked against memory before it is allocated: values and gradients,
	// no optimiser state.
	model, err := trainer.BuildModel(trainer.Config{Model: s.name, Optimizer: "sgd"}, spec)
	if err != nil {
		return nil, err
	}
	if err := loadWeights(model, s.weights); err != nil {
		return nil, err
	}
	return model, nil
}

// specFits checks that a run's model takes the data set's samples.
func specFits(spec layers.Spec, d *data.Dataset) error {
	switch {
	case spec.Channels != d.Channels || spec.Height != d.Height || spec.Width != d.Width:
		return fmt.Errorf("the model was built for %s inputs but %s has %d×%d×%d", specDesc(spec), d.Name, d.Channels, d.Height, d.Width)
	case spec.Regression != (d.Task == data.Regression):
		return fmt.Errorf("the model has a %s head but %s is a %v set", headName(spec), d.Name, d.Task)
	case !spec.Regression && spec.Classes != d.NumClasses():
		return fmt.Errorf("the model has %d outputs but the %s data here has %d classes (pass the --classes it was trained with)", spec.Classes, d.Name, d.NumClasses())
	}
	return nil
}

func headName(s layers.Spec) string {
	if s.Regression {
		return "regression"
	}
	return "classification"
}

func specDesc(s layers.Spec) string {
	in := fmt.Sprintf("%d×%d×%d", s.Channels, s.Height, s.Width)
	if s.Regression {
		return in + " with a regression head"
	}
	return fmt.Sprintf("%s with %d classes", in, s.Classes)
}

// loadWeights reads a safetensors state_dict into model and explains a
// mismatch in terms of the flags that cause it.
func loadWeights(model *layers.Model, path string) error {
	state, meta, err := safetensors.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--weights: %w", err)
	}
	if m := meta["model"]; m != "" && !strings.EqualFold(m, model.Name) {
		return fmt.Errorf("%s holds weights of a %s model, not %s (use --model %s)", path, m, model.Name, m)
	}
	if trainer.IsCheckpoint(meta) {
		// A run stopped before its first epoch's end has no weights file:
		// its checkpoint's model state is the weights at the stop.
		if state, err = trainer.CheckpointModel(path, state, meta); err != nil {
			return fmt.Errorf("--weights: %w", err)
		}
		fmt.Fprintf(os.Stderr, "note: %s is a training checkpoint: taking its model's weights at the step it was written\n", path)
	}
	if err := layers.LoadState(model, state); err != nil {
		return fmt.Errorf("%s does not fit %s built for %s: %w (use the --model, --dataset, --classes, --hidden and --depth it was trained with, or --run DIR)",
			path, model.Name, specDesc(model.Spec), err)
	}
	return nil
}

// usagef is a usageError: a mistake in the flags, exit status 2.
func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }
