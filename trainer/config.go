package trainer

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/userfile"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

// Config is a training run's whole configuration: what `kiln train` takes
// from flags and from a YAML or JSON file (flags win), and what a run
// directory's config.yaml records.
type Config struct {
	Model       string  `json:"model" yaml:"model"`
	Dataset     string  `json:"dataset" yaml:"dataset"`
	DataDir     string  `json:"data_dir,omitempty" yaml:"data_dir,omitempty"`
	Classes     []int   `json:"classes,omitempty" yaml:"classes,omitempty"`
	Subset      float64 `json:"subset,omitempty" yaml:"subset,omitempty"`
	ValFraction float64 `json:"val_fraction" yaml:"val_fraction"`
	Augment     bool    `json:"augment,omitempty" yaml:"augment,omitempty"`
	Regression  bool    `json:"regression,omitempty" yaml:"regression,omitempty"`
	Hidden      int     `json:"hidden,omitempty" yaml:"hidden,omitempty"`
	Depth       int     `json:"depth,omitempty" yaml:"depth,omitempty"`
	Dropout     float64 `json:"dropout,omitempty" yaml:"dropout,omitempty"`

	Epochs         int     `json:"epochs" yaml:"epochs"`
	Batch          int     `json:"batch" yaml:"batch"`
	MicroBatch     int     `json:"micro_batch,omitempty" yaml:"micro_batch,omitempty"` // samples a forward and backward take at a time (0: Kiln's choice, MicroBatchRule; -1: the batch)
	DropLast       bool    `json:"drop_last" yaml:"drop_last"`
	LR             float64 `json:"lr" yaml:"lr"`
	Optimizer      string  `json:"optimizer" yaml:"optimizer"`
	Momentum       float64 `json:"momentum" yaml:"momentum"`
	Nesterov       bool    `json:"nesterov" yaml:"nesterov"` // written when false: the recipe's is true
	WeightDecay    float64 `json:"weight_decay" yaml:"weight_decay"`
	ClipNorm       float64 `json:"clip_norm,omitempty" yaml:"clip_norm,omitempty"`
	LabelSmoothing float64 `json:"label_smoothing,omitempty" yaml:"label_smoothing,omitempty"`
	Schedule       string  `json:"schedule" yaml:"schedule"`
	Warmup         int     `json:"warmup,omitempty" yaml:"warmup,omitempty"`
	StepSize       int     `json:"step_size,omitempty" yaml:"step_size,omitempty"`
	Milestones     []int   `json:"milestones,omitempty" yaml:"milestones,omitempty"`
	Gamma          float64 `json:"gamma,omitempty" yaml:"gamma,omitempty"`
	// PlateauFactor and PlateauPatience are ReduceLROnPlateau's factor and
	// patience (validations without improvement); 0: 0.1 and 10.
	PlateauFactor   float64 `json:"plateau_factor,omitempty" yaml:"plateau_factor,omitempty"`
	PlateauPatience int     `json:"plateau_patience,omitempty" yaml:"plateau_patience,omitempty"`

	EarlyStop   string  `json:"early_stop,omitempty" yaml:"early_stop,omitempty"`
	Patience    int     `json:"patience,omitempty" yaml:"patience,omitempty"`
	MinDelta    float64 `json:"min_delta,omitempty" yaml:"min_delta,omitempty"`
	Target      float64 `json:"target,omitempty" yaml:"target,omitempty"`
	RestoreBest bool    `json:"restore_best,omitempty" yaml:"restore_best,omitempty"`
	ValEvery    int     `json:"val_every,omitempty" yaml:"val_every,omitempty"`

	Seed   uint64 `json:"seed" yaml:"seed"`
	Device string `json:"device" yaml:"device"`
	// Precision is what convolutions, linear layers and the SGU's token
	// mixing multiply in: fp32 (""), tf32 (GPU) or bf16 (engine.Precision).
	// Parameters, optimiser state and checkpoints stay float32.
	Precision      string `json:"precision,omitempty" yaml:"precision,omitempty"`
	Threads        int    `json:"threads,omitempty" yaml:"threads,omitempty"`
	RunDir         string `json:"run_dir,omitempty" yaml:"run_dir,omitempty"`
	StopAfterEpoch int    `json:"stop_after_epoch,omitempty" yaml:"stop_after_epoch,omitempty"`
	MemoryLimitMB  int    `json:"memory_limit_mb,omitempty" yaml:"memory_limit_mb,omitempty"`
	// NoVisuals skips histograms.jsonl, visuals.json and the event file's
	// histograms (scalars are still written): for speed-sensitive runs.
	NoVisuals bool `json:"no_visuals,omitempty" yaml:"no_visuals,omitempty"`
	// NoCUDAGraph runs every GPU step as separate launches, not as one
	// CUDA graph once the step repeats (engine.StepGraph). Either way the
	// steps give the same bits.
	NoCUDAGraph bool `json:"no_cuda_graph,omitempty" yaml:"no_cuda_graph,omitempty"`
	// WorldSize is the number of ranks that train the run together (data
	// parallel, under mpirun), when more than one. kiln train sets it from
	// the launcher, not from a flag; config.yaml records it.
	WorldSize int `json:"world_size,omitempty" yaml:"world_size,omitempty"`
	// SyncBN makes batch norm take its statistics over the global batch of
	// every rank (nn.SyncBatchNorm) instead of each rank's shard.
	SyncBN bool `json:"sync_bn,omitempty" yaml:"sync_bn,omitempty"`

	// An image folder (--dataset folder): the size its images are brought
	// to ("HxW"; "": the model's input size, 28x28 or 32x32), how (crop:
	// resize the shorter side and cut the centre; pad: resize the longer
	// side and pad), and whether one bad file stops the run (strict)
	// instead of being skipped, counted and named.
	ImageSize string `json:"image_size,omitempty" yaml:"image_size,omitempty"`
	ImageFit  string `json:"image_fit,omitempty" yaml:"image_fit,omitempty"`
	Strict    bool   `json:"strict,omitempty" yaml:"strict,omitempty"`

	// A CSV file (--dataset csv): its target column (a header name or a
	// 0-based index, negative from the end; "": the last) and its task
	// ("auto", "": integers of at most 32 values are classes; or
	// "classification", "regression").
	CSVTarget string `json:"csv_target,omitempty" yaml:"csv_target,omitempty"`
	CSVTask   string `json:"csv_task,omitempty" yaml:"csv_task,omitempty"`
	// CSVHeader says whether a CSV file's first row names its columns:
	// "auto" ("": when a name sits above a number), "yes" or "no".
	CSVHeader string `json:"csv_header,omitempty" yaml:"csv_header,omitempty"`

	// LogEvery logs the training loss, accuracy, learning rate and images/s
	// every so many steps (0: at epoch ends only); LogLevel is the
	// console's least level: debug, info (""), warn.
	LogEvery int    `json:"log_every,omitempty" yaml:"log_every,omitempty"`
	LogLevel string `json:"log_level,omitempty" yaml:"log_level,omitempty"`
}

// DefaultConfig is `kiln train` with no flags: LeNet on MNIST on the CPU,
// with a recipe that reaches 99% test accuracy in 3 epochs.
func DefaultConfig() Config {
	return Config{
		Model: "lenet", Dataset: "mnist", ValFraction: 0.1,
		Epochs: 3, Batch: 64, LR: 0.05, Optimizer: "sgd", Momentum: 0.9, Nesterov: true,
		WeightDecay: 5e-4, Schedule: "onecycle", Seed: 1, Device: "auto",
	}
}

// DefaultConfigFor is DefaultConfig with the recipe that suits model and
// dataset: the attention-free token mixer gmlp trains best with AdamW and
// decoupled weight decay, the convolutional models with SGD and Nesterov
// momentum; regression on mnist-rotation (MSE on targets in [-1,1]) diverges
// at SGD's classification step and does best with AdamW (cnn, 5 epochs, seed 1:
// test RMSE 6.03° with SGD at lr 0.01, 4.77° with AdamW at 2e-3).
func DefaultConfigFor(model, dataset string) Config {
	c := DefaultConfig()
	c.Model, c.Dataset = model, dataset
	if model == "gmlp" {
		c.Optimizer, c.LR, c.Momentum, c.Nesterov, c.WeightDecay = "adamw", 3e-3, 0, false, 0.05
	}
	if dataset == "mnist-rotation" && model != "gmlp" {
		c.Optimizer, c.LR, c.Momentum, c.Nesterov, c.WeightDecay = "adamw", 2e-3, 0, false, 0.01
	}
	return c
}

// optimizerDefaults are each optimiser's own settings: SGD's are
// DefaultConfig's recipe, Adam's and AdamW's PyTorch's.
var optimizerDefaults = map[string]struct {
	lr, momentum, weightDecay float64
	nesterov                  bool
}{
	"sgd": {0.05, 0.9, 5e-4, true}, "adam": {1e-3, 0, 0, false}, "adamw": {1e-3, 0, 0.01, false},
}

// UseOptimizerDefaults gives c, whose optimiser is not its recipe's (the
// model's DefaultConfigFor), that optimiser's own learning rate, momentum,
// Nesterov and weight decay where given says the user set none: gMLP's
// AdamW recipe (lr 3e-3, no momentum, weight decay 0.05) under SGD trained
// to 12% on MNIST.
func UseOptimizerDefaults(c *Config, recipe Config, given func(key string) bool) {
	if given("momentum") && !given("nesterov") && c.Momentum == 0 {
		c.Nesterov = false // plain SGD, asked for: not the recipe's Nesterov, which needs momentum
	}
	d, ok := optimizerDefaults[c.Optimizer]
	if !ok || c.Optimizer == recipe.Optimizer {
		return
	}
	if !given("lr") {
		c.LR = d.lr
	}
	if !given("momentum") {
		c.Momentum = d.momentum
	}
	if !given("nesterov") {
		c.Nesterov = d.nesterov && c.Momentum > 0
	}
	if !given("weight_decay") {
		c.WeightDecay = d.weightDecay
	}
}

// ConfigFileKeys are the settings a configuration file sets.
func ConfigFileKeys(path string) (map[string]bool, error) {
	b, err := ReadConfigFile(path)
	if err != nil {
		return nil, err
	}
	m, err := settingsMap(bytes.TrimPrefix(b, []byte("\ufeff")), strings.EqualFold(filepath.Ext(path), ".json"))
	keys := map[string]bool{}
	for k := range m {
		keys[k] = true
	}
	return keys, err
}

// Limits on a configuration file, checked before it is parsed: a
// configuration is a flat map of a few hundred bytes, and the YAML parser's
// memory grows with both the size and the nesting of what it is given.
const (
	MaxConfigBytes = 256 << 10
	MaxConfigDepth = 8
)

// LoadConfigFile reads YAML or JSON (by extension; YAML otherwise) over base,
// refusing unknown keys so that a typo is an error, not a silent default.
// The file must be a regular file within MaxConfigBytes whose collections
// nest at most MaxConfigDepth deep; a number of the wrong kind (epochs: 1.5,
// seed: -1) is a *SettingError naming its key.
func LoadConfigFile(path string, base Config) (Config, error) {
	b, err := ReadConfigFile(path)
	if err != nil {
		return base, fmt.Errorf("config: %w", err)
	}
	c, err := ParseConfig(b, strings.EqualFold(filepath.Ext(path), ".json"), base)
	if err != nil {
		return base, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// RunConfigFile is the path of run directory dir's config.yaml, "" when it
// has none. One that holds nothing (a power cut's, a copy cut short) is an
// error: read, its defaults would stand in for the run's settings.
func RunConfigFile(dir string) (string, error) {
	path := filepath.Join(dir, ConfigFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	case err != nil:
		return "", err
	case len(bytes.TrimSpace(b)) == 0:
		return "", fmt.Errorf("%s is empty (a power cut, or a copy cut short), so the run's settings are unknown: "+
			"restore it, or remove it and give the settings again as flags", path)
	}
	return path, nil
}

// LoadRunConfig reads a run's configuration file over its own model's
// recipe (DefaultConfigFor), as the run resolved it: a setting the file
// leaves out (nesterov: false, omitted) is the recipe's, not DefaultConfig's.
func LoadRunConfig(path string) (Config, error) {
	c, err := LoadConfigFile(path, DefaultConfig())
	if err != nil {
		return c, err
	}
	if c, err = LoadConfigFile(path, DefaultConfigFor(c.Model, c.Dataset)); err != nil {
		return c, err
	}
	return c, RunFileOmissions(&c, path)
}

// RunFileOmissions restores what a run's config.yaml from an older Kiln
// left out: nesterov, written only when true, so that a file without it
// was a run without it, not the recipe's true (an Adam run's resume was
// refused, "nesterov: unset → true", and an SGD run at momentum 0 could not
// be read: "nesterov needs momentum > 0").
func RunFileOmissions(c *Config, path string) error {
	keys, err := ConfigFileKeys(path)
	if err != nil {
		return err
	}
	if !keys["nesterov"] {
		c.Nesterov = false
	}
	return nil
}

// OlderKilnFile reports whether path is a whole configuration as an older
// Kiln wrote them (a run's config.yaml, a tune's best.yaml) under any name:
// every key Kiln always writes but nesterov, which it wrote only when true.
// RunFileOmissions reads such a file as it was meant.
func OlderKilnFile(path string) (bool, error) {
	keys, err := ConfigFileKeys(path)
	if err != nil {
		return false, err
	}
	for _, k := range []string{"model", "val_fraction", "batch", "drop_last", "lr", "optimizer", "momentum", "seed", "device"} {
		if !keys[k] {
			return false, nil
		}
	}
	return !keys["nesterov"], nil
}

// ParseConfig reads the settings in b (JSON when isJSON, YAML otherwise)
// over base, as LoadConfigFile does with a file's bytes.
func ParseConfig(b []byte, isJSON bool, base Config) (Config, error) {
	b = bytes.TrimPrefix(b, []byte("\ufeff")) // a byte-order mark, as some editors write
	if isJSON {
		if err := checkJSONSyntax(b); err != nil {
			return base, err
		}
	} else if err := OneYAMLDocument(b); err != nil {
		return base, err
	} else if empty, err := yamlEmpty(b); err != nil || empty {
		return base, err // a file of comments alone sets nothing
	}
	if err := checkNumbers(b, isJSON); err != nil {
		return base, err
	}
	c := base
	var err error
	if isJSON {
		dec := json.NewDecoder(bytes.NewReader(jsonWholes(b)))
		dec.DisallowUnknownFields()
		if err = dec.Decode(&c); err == nil && dec.More() {
			err = errors.New("more than one JSON value: a file of settings is one object")
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			// Go's "cannot unmarshal number into Go struct field
			// Config.precision of type string", in the file's words.
			err = fmt.Errorf("%s: a JSON %s where the setting is %s", te.Field, te.Value, jsonKind(te.Type.Kind().String()))
		}
	} else {
		err = DecodeYAML(b, &c, yaml.Strict())
	}
	if err != nil {
		return base, err
	}
	// No shell reads a file's paths: "~/runs" made a folder named ~ in the
	// working directory, which the output wrote as if it were the home.
	for _, p := range []struct {
		key  string
		path *string
	}{{"data_dir", &c.DataDir}, {"run_dir", &c.RunDir}} {
		if *p.path, err = expandHome(*p.path); err != nil {
			return base, fmt.Errorf("%s %q: %w", p.key, *p.path, err)
		}
	}
	return c, nil
}

// expandHome replaces a leading ~ (alone or before a /) by the home
// directory, as a shell would.
func expandHome(path string) (string, error) {
	rest, ok := strings.CutPrefix(path, "~")
	if !ok || rest != "" && rest[0] != '/' {
		return path, nil // ~user is left to the shell
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return path, fmt.Errorf("~ is the home directory, but %w", err)
	}
	return home + rest, nil
}

// jsonKind names a Go kind as a JSON value: a string, a number, a list …
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "a list"
	case "struct", "map":
		return "an object"
	}
	return "a number"
}

// yamlEmpty reports whether b holds no YAML document (nothing, or comments):
// decoded over a configuration it would zero every setting.
func yamlEmpty(b []byte) (bool, error) {
	var v any
	if err := DecodeYAML(b, &v); err != nil {
		return false, err
	}
	return v == nil, nil
}

// OneYAMLDocument refuses YAML of more than one document: settings after a
// "---" or "..." below others, or a second "---" (the decoder would read
// the first, possibly empty, document and leave the rest unread without a
// word), as PyYAML's safe_load refuses them. Read from the text: a
// document marker is always at the start of a line, and the YAML parser
// loses the documents after an empty one. Directives (%YAML) and comments
// may come before the one "---".
func OneYAMLDocument(b []byte) error {
	markers, content, ended := 0, false, false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, " \t\r")
		marker := line == "---" || strings.HasPrefix(line, "--- ") || strings.HasPrefix(line, "---\t")
		switch {
		case marker && (markers > 0 || content || ended):
			return errors.New("more than one YAML document (a second ---, or settings after another document): a file of settings is one")
		case marker:
			markers++
			rest := strings.TrimSpace(strings.TrimPrefix(line, "---"))
			content = rest != "" && !strings.HasPrefix(rest, "#") // --- {epochs: 1}
		case line == "..." || strings.HasPrefix(line, "... "):
			ended = true
		case line == "" || strings.HasPrefix(strings.TrimSpace(line), "#") || strings.HasPrefix(line, "%"):
		case ended:
			return errors.New("settings after the end of the YAML document (...): a file of settings is one document")
		default:
			content = true
		}
	}
	return nil
}

// ReadConfigFile reads a file of settings (a configuration, kiln tune's
// search space) for parsing: a regular file of at most MaxConfigBytes whose
// collections nest at most MaxConfigDepth deep (JSON by the extension .json,
// YAML otherwise). Errors name the file and the limit.
func ReadConfigFile(path string) ([]byte, error) {
	b, err := userfile.ReadFile(path, MaxConfigBytes)
	if err != nil {
		var ue *userfile.Error
		if errors.As(err, &ue) {
			return nil, fmt.Errorf("%w (a file of settings is a regular file of at most %d KiB)", err, MaxConfigBytes>>10)
		}
		return nil, err
	}
	if err := checkNesting(b, MaxConfigDepth, strings.EqualFold(filepath.Ext(path), ".json")); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// YAML renders the configuration as config.yaml records it.
func (c Config) YAML() ([]byte, error) { return yaml.Marshal(c) }

// SettingError is a setting the configuration cannot take. Key is its
// configuration key (min_delta); Name, when set, is how the user gave it (a
// flag, --min-delta), and the message uses it instead.
type SettingError struct {
	Key, Name string
	Value     string // as given
	Problem   string // what is wrong, with the valid range: "must be in [0, 1)"
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("%s %s: %s", cmp.Or(e.Name, e.Key), e.Value, e.Problem)
}

func settingErr(key string, value any, format string, args ...any) *SettingError {
	return &SettingError{Key: key, Value: fmt.Sprint(value), Problem: fmt.Sprintf(format, args...)}
}

// Validate checks every value and says which one is wrong and why,
// including that the model and data set are ones Kiln knows by name.
func (c Config) Validate() error {
	if !slices.Contains(layers.ModelNames(), c.Model) {
		return settingErr("model", strconv.Quote(c.Model), "unknown (have %s)", strings.Join(layers.ModelNames(), ", "))
	}
	if !slices.Contains(data.Names(), c.Dataset) {
		return settingErr("dataset", strconv.Quote(c.Dataset), "unknown (have %s)", strings.Join(data.Names(), ", "))
	}
	if err := c.validateDataSettings(); err != nil {
		return err
	}
	for key, path := range map[string]string{"data_dir": c.DataDir, "run_dir": c.RunDir} {
		if !utf8.ValidString(path) {
			// config.yaml would keep it as U+FFFD, and a resume not find it.
			return settingErr(key, strconv.Quote(path), "is not UTF-8, which config.yaml cannot keep (a resume would not find it): rename it, or link to it under a UTF-8 name")
		}
	}
	if err := c.ValidateTraining(); err != nil {
		return err
	}
	// An image folder's val/ is a validation split whatever val_fraction
	// says; the other data sets have one from val_fraction only.
	if c.ValFraction == 0 && c.Dataset != "folder" {
		return c.refuseValidationReaders()
	}
	return nil
}

// ValidateTraining checks the training settings alone: what a program that
// brings its own model and data (the Go API) must get right. Every numeric
// setting is checked against its range (NaN and infinities included) here,
// before any work; errors are *SettingError.
func (c Config) ValidateTraining() error {
	for _, r := range numberRules {
		if v := r.value(&c); !r.ok(v) {
			return settingErr(r.key, r.format(&c), "must be %s", r.want)
		}
	}
	if c.StopAfterEpoch > c.Epochs {
		return settingErr("stop_after_epoch", c.StopAfterEpoch, "must be in [0, %d] (at most epochs)", c.Epochs)
	}
	if err := checkGlobalBatch(c.Batch, c.WorldSize); err != nil { // before a run directory is made
		return err
	}
	if err := c.validateLists(); err != nil {
		return err
	}
	switch c.Optimizer {
	case "sgd", "adam", "adamw":
	default:
		return settingErr("optimizer", strconv.Quote(c.Optimizer), "want sgd, adam or adamw")
	}
	// Momentum and Nesterov belong to SGD; the Adam family ignores them.
	if c.Nesterov && c.Optimizer == "sgd" && c.Momentum == 0 {
		return settingErr("nesterov", true, "needs momentum > 0")
	}
	if err := c.validateSchedule(); err != nil {
		return err
	}
	if err := c.validateWords(); err != nil {
		return err
	}
	return c.validateEarlyStop()
}

// validateWords checks the settings that are words or sizes.
func (c Config) validateWords() error {
	if c.ImageSize != "" {
		if _, _, err := ParseImageSize(c.ImageSize); err != nil {
			return settingErr("image_size", strconv.Quote(c.ImageSize), "%v", err)
		}
	}
	switch c.ImageFit {
	case "", "crop", "pad":
	default:
		return settingErr("image_fit", strconv.Quote(c.ImageFit), "want crop or pad")
	}
	switch strings.ToLower(c.LogLevel) { // as --model and --schedule take any case
	case "", "debug", "info", "warn":
	default:
		return settingErr("log_level", strconv.Quote(c.LogLevel), "want debug, info or warn")
	}
	if _, err := engine.ParsePrecision(c.Precision); err != nil {
		return settingErr("precision", strconv.Quote(c.Precision), "want fp32, tf32 or bf16")
	}
	return nil
}

// MaxImageSide bounds --image-size: a side the loaders and models take.
const MaxImageSide = 4096

// ParseImageSize reads --image-size: "HxW" (or one number for a square),
// each side in [1, MaxImageSide].
func ParseImageSize(s string) (h, w int, err error) {
	hs, ws, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "x")
	if !ok {
		ws = hs
	}
	h, errH := strconv.Atoi(hs)
	w, errW := strconv.Atoi(ws)
	if errH != nil || errW != nil || h < 1 || w < 1 || h > MaxImageSide || w > MaxImageSide {
		return 0, 0, fmt.Errorf("want HxW, e.g. 28x28, each side in [1, %d]", MaxImageSide)
	}
	return h, w, nil
}

func (c Config) validateLists() error {
	if c.Classes != nil && len(c.Classes) == 0 {
		return settingErr("classes", "[]", "must list at least one class (leave it out to keep them all)")
	}
	for _, k := range c.Classes {
		if k < 0 {
			return settingErr("classes", k, "must be %s", SettingRange("classes"))
		}
	}
	for i, m := range c.Milestones {
		if m < 1 {
			return settingErr("milestones", m, "must be %s", SettingRange("milestones"))
		}
		if i > 0 && m <= c.Milestones[i-1] {
			return settingErr("milestones", fmt.Sprint(c.Milestones), "must be %s", SettingRange("milestones"))
		}
	}
	return nil
}

func (c Config) validateSchedule() error {
	kind := strings.ToLower(c.Schedule)
	if !slices.Contains(ScheduleKinds, kind) {
		return settingErr("schedule", strconv.Quote(c.Schedule), "unknown (have %s)", strings.Join(ScheduleKinds, ", "))
	}
	switch kind {
	case "step":
		if c.StepSize < 1 {
			return settingErr("step_size", c.StepSize, "must be at least 1 with the step schedule")
		}
	case "multistep":
		if len(c.Milestones) == 0 {
			return settingErr("milestones", "[]", "must list at least one step with the multistep schedule")
		}
	case "onecycle":
		if c.Warmup != 0 {
			return settingErr("warmup", c.Warmup, "must be 0 with the onecycle schedule, which has its own warm-up")
		}
	}
	return nil
}

// An inert setting is one nothing would read: a size setting the model
// lacks (lenet's width), a schedule's setting under another schedule.
// Given on the command line it is refused (CheckInert): config.yaml would
// say the run did what it did not. In a file of an older Kiln, which took
// such settings and ignored them, it is left out (DropInert), and so it is
// in a resume's comparison with its run.
type inertSetting struct {
	*SettingError
	clear func(*Config)
}

// inertSettings are c's inert settings, in a fixed order.
func (c Config) inertSettings() []inertSetting {
	var out []inertSetting
	clears := map[string]func(*Config){
		"hidden": func(c *Config) { c.Hidden = 0 }, "depth": func(c *Config) { c.Depth = 0 },
		"dropout": func(c *Config) { c.Dropout = 0 },
	}
	values := map[string]any{"hidden": c.Hidden, "depth": c.Depth, "dropout": c.Dropout}
	for _, k := range layers.InertKnobs(c.Model, layers.Spec{Hidden: c.Hidden, Depth: c.Depth, Dropout: c.Dropout}) {
		out = append(out, inertSetting{settingErr(k.Knob, values[k.Knob], "%s", k.Problem), clears[k.Knob]})
	}
	kind := strings.ToLower(c.Schedule)
	for _, o := range []struct {
		key   string
		value any
		set   bool
		kinds []string
		clear func(*Config)
	}{
		{"step_size", c.StepSize, c.StepSize != 0, []string{"step"}, func(c *Config) { c.StepSize = 0 }},
		{"milestones", fmt.Sprint(c.Milestones), len(c.Milestones) > 0, []string{"multistep"}, func(c *Config) { c.Milestones = nil }},
		{"gamma", c.Gamma, c.Gamma != 0, []string{"step", "multistep", "exp"}, func(c *Config) { c.Gamma = 0 }},
		{"plateau_factor", c.PlateauFactor, c.PlateauFactor != 0, []string{"plateau"}, func(c *Config) { c.PlateauFactor = 0 }},
		{"plateau_patience", c.PlateauPatience, c.PlateauPatience != 0, []string{"plateau"}, func(c *Config) { c.PlateauPatience = 0 }},
	} {
		if o.set && !slices.Contains(o.kinds, kind) {
			out = append(out, inertSetting{settingErr(o.key, o.value, "is for the %s schedule; this run's is %s", orList(o.kinds), kind), o.clear})
		}
	}
	out = append(out, c.inertWithoutReaders()...)
	if c.Optimizer == "adam" || c.Optimizer == "adamw" { // its betas stand for them
		if c.Momentum != 0 {
			out = append(out, inertSetting{settingErr("momentum", c.Momentum, "is SGD's; this run's optimizer is %s", c.Optimizer), func(c *Config) { c.Momentum = 0 }})
		}
		if c.Nesterov {
			out = append(out, inertSetting{settingErr("nesterov", true, "is SGD's; this run's optimizer is %s", c.Optimizer), func(c *Config) { c.Nesterov = false }})
		}
	}
	return out
}

// inertWithoutReaders are the settings whose reader c lacks: early
// stopping's without early_stop, the validation's without a validation
// split. An older Kiln took them and did nothing with them (the plateau
// schedule kept its rate: constant), so its runs resume without them; given
// now, Validate refuses them.
func (c Config) inertWithoutReaders() []inertSetting {
	var out []inertSetting
	if c.EarlyStop == "" {
		for _, o := range []struct {
			key   string
			value any
			set   bool
			clear func(*Config)
		}{
			{"restore_best", true, c.RestoreBest, func(c *Config) { c.RestoreBest = false }},
			{"patience", c.Patience, c.Patience != 0, func(c *Config) { c.Patience = 0 }},
			{"min_delta", c.MinDelta, c.MinDelta != 0, func(c *Config) { c.MinDelta = 0 }},
			{"target", c.Target, c.Target != 0, func(c *Config) { c.Target = 0 }},
		} {
			if o.set {
				out = append(out, inertSetting{settingErr(o.key, o.value, "needs early_stop"), o.clear})
			}
		}
	}
	if c.ValFraction != 0 || c.Dataset == "folder" { // a folder's val/ is a validation split
		return out
	}
	const need = "needs a validation split (val_fraction > 0, or an image folder's val/)"
	if strings.HasPrefix(c.EarlyStop, "val_") {
		out = append(out, inertSetting{settingErr("early_stop", c.EarlyStop, need), func(c *Config) { c.EarlyStop = "" }})
	}
	if strings.EqualFold(c.Schedule, "plateau") {
		out = append(out, inertSetting{settingErr("schedule", "plateau", "lowers the rate when the validation loss stalls: %s; the rate stays constant", need),
			func(c *Config) { c.Schedule = "constant" }})
	}
	if c.ValEvery > 0 {
		out = append(out, inertSetting{settingErr("val_every", c.ValEvery, need), func(c *Config) { c.ValEvery = 0 }})
	}
	return out
}

// CheckInert refuses c's first inert setting, naming it.
func (c Config) CheckInert() error { return c.CheckInertBut() }

// CheckInertBut is CheckInert leaving out the keys given (those a tune's
// trials may come to read: momentum under an optimizer the space chooses).
func (c Config) CheckInertBut(keys ...string) error {
	for _, in := range c.inertSettings() {
		if !slices.Contains(keys, in.Key) {
			return in.SettingError
		}
	}
	return nil
}

// DropInert leaves out c's inert settings but those keep says to keep
// (nil: none), and returns what it left out.
func (c *Config) DropInert(keep func(key string) bool) []*SettingError {
	return c.drop(Config.inertSettings, keep)
}

// DropUnread is DropInert for the settings whose reader c lacks alone
// (early stopping's, the validation's), which Validate refuses: a file's
// are left out before it, while an inert setting out of range is still an
// error, read or not.
func (c *Config) DropUnread(keep func(key string) bool) []*SettingError {
	return c.drop(Config.inertWithoutReaders, keep)
}

func (c *Config) drop(inert func(Config) []inertSetting, keep func(key string) bool) []*SettingError {
	var dropped []*SettingError
	for {
		// Leaving one out may leave others unread (early_stop's patience,
		// plateau's factor): again until none is.
		n := len(dropped)
		for _, in := range inert(*c) {
			if keep == nil || !keep(in.Key) {
				in.clear(c)
				dropped = append(dropped, in.SettingError)
			}
		}
		if len(dropped) == n {
			return dropped
		}
	}
}

// orList writes words as "a", "a or b", "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// validateDataSettings refuses one data set's settings given for another:
// kept in config.yaml, a setting nothing read would say that the run
// trained as it did not (at a size, on a column).
func (c Config) validateDataSettings() error {
	owned := []struct {
		dataset, kind, key string
		value              any
		set                bool
	}{
		{"csv", "a CSV file's", "csv_target", strconv.Quote(c.CSVTarget), c.CSVTarget != ""},
		{"csv", "a CSV file's", "csv_task", strconv.Quote(c.CSVTask), c.CSVTask != ""},
		{"csv", "a CSV file's", "csv_header", strconv.Quote(c.CSVHeader), c.CSVHeader != ""},
		{"folder", "an image folder's", "image_size", strconv.Quote(c.ImageSize), c.ImageSize != ""},
		{"folder", "an image folder's", "image_fit", strconv.Quote(c.ImageFit), c.ImageFit != ""},
		{"folder", "an image folder's", "strict", true, c.Strict},
	}
	for _, o := range owned {
		if o.set && c.Dataset != o.dataset {
			return settingErr(o.key, o.value, "is %s setting (--dataset %s); the %s set has its own", o.kind, o.dataset, c.Dataset)
		}
	}
	switch c.CSVHeader {
	case "", "auto", "yes", "no":
	default:
		return settingErr("csv_header", strconv.Quote(c.CSVHeader), "want auto, yes or no")
	}
	switch c.CSVTask {
	case "", "auto", "classification", "regression":
		return nil
	}
	return settingErr("csv_task", strconv.Quote(c.CSVTask), "want auto, classification or regression")
}

// DataOptions are the loading options of the data set c names.
func (c Config) DataOptions() data.Options {
	return data.Options{Dir: c.DataDir, Classes: c.Classes, Subset: c.Subset, ValFraction: c.ValFraction, Seed: c.Seed,
		Folder: data.FolderOptions{Size: c.ImageSize, Fit: c.ImageFit, Strict: c.Strict},
		CSV:    data.CSVOptions{Target: c.CSVTarget, Task: c.CSVTask, Header: c.CSVHeader}}
}

// TakeTask sets the task from the data, which decides it. A config file's
// regression: true on data that is a classification (an older best.yaml
// copied to another data set, a hand-written file) is refused rather than
// overruled, since the run would otherwise train another kind of model than
// the file asks for.
func (c *Config) TakeTask(t data.Task) error {
	if c.Regression && t != data.Regression {
		return settingErr("regression", true, "this data is a classification; the data decides the task (mnist-rotation, or a CSV file with csv_task: regression)")
	}
	c.Regression = t == data.Regression
	return nil
}

// ValidateTask checks the settings that depend on the task, known once the
// data set is (a CSV file's target decides): a classification metric or
// label smoothing on a regression head, and the reverse, would be read as
// something else or not at all.
func (c Config) ValidateTask() error {
	switch {
	case c.Regression && c.EarlyStop == "val_acc":
		return settingErr("early_stop", c.EarlyStop, "is a classification metric; this run is a regression (use val_rmse or val_loss)")
	case !c.Regression && c.EarlyStop == "val_rmse":
		return settingErr("early_stop", c.EarlyStop, "is a regression metric; this run is a classification (use val_acc or val_loss)")
	case c.Regression && c.LabelSmoothing > 0:
		return settingErr("label_smoothing", c.LabelSmoothing, "smooths class labels; this run is a regression")
	}
	return nil
}

// CheckAugment refuses --augment (pad, random crop, mirror: CIFAR's) where
// it would damage the data rather than vary it: a regression target that
// a mirror changes (a rotation's angle), digits that read otherwise
// mirrored, rows of a table (1×1 "pictures", which the crop replaces by the
// padding).
func CheckAugment(c Config, train *data.Dataset) error {
	const minSide = 16
	switch {
	case !c.Augment:
		return nil
	case c.Regression:
		return settingErr("augment", true, "mirrors and shifts the input, which would change a regression's target; it is for classifying pictures")
	case train.Name == "mnist": // the data's name, not the config's: a Go program's own data keeps DefaultConfig's "mnist"
		return settingErr("augment", true, "mirrors digits, which then read otherwise; it is for pictures whose classes survive a mirror (CIFAR-10, Fashion-MNIST, a folder)")
	case train.Height < minSide || train.Width < minSide:
		return settingErr("augment", true, "shifts by up to %d pixels and mirrors: for pictures of at least %d×%d, not this set's %d×%d inputs",
			data.AugmentPad, minSide, minSide, train.Height, train.Width)
	}
	return nil
}

// CheckValidation refuses, where the splits have no validation set, the
// settings that read one: they would do nothing (early stopping on a val_
// metric, validations every val_every steps), or worse, the plateau
// schedule would keep its rate for the whole run.
func CheckValidation(c Config, s *data.Splits) error {
	if s.Val != nil && s.Val.Len() > 0 {
		return nil
	}
	return c.refuseValidationReaders()
}

// refuseValidationReaders is CheckValidation's error for c without a
// validation split.
func (c Config) refuseValidationReaders() error {
	const need = "needs a validation split (val_fraction > 0, or an image folder's val/)"
	switch {
	case strings.HasPrefix(c.EarlyStop, "val_"):
		return settingErr("early_stop", c.EarlyStop, need)
	case strings.EqualFold(c.Schedule, "plateau"):
		return settingErr("schedule", "plateau", "lowers the rate when the validation loss stalls: %s", need)
	case c.ValEvery > 0:
		return settingErr("val_every", c.ValEvery, need)
	}
	return nil
}

func (c Config) validateEarlyStop() error {
	if c.EarlyStop != "" {
		if !slices.Contains(EarlyStopMetrics, c.EarlyStop) {
			return settingErr("early_stop", strconv.Quote(c.EarlyStop), "want one of %s", strings.Join(EarlyStopMetrics, ", "))
		}
		if c.EarlyStop == "val_acc" && c.Target > 1 {
			return settingErr("target", c.Target, "must be in [0, 1] for val_acc")
		}
	}
	if c.EarlyStop == "" {
		// Read only by early stopping: without it they would do nothing.
		switch {
		case c.RestoreBest:
			return settingErr("restore_best", true, "needs early_stop")
		case c.Patience != 0:
			return settingErr("patience", c.Patience, "needs early_stop")
		case c.MinDelta != 0:
			return settingErr("min_delta", c.MinDelta, "needs early_stop")
		case c.Target != 0:
			return settingErr("target", c.Target, "needs early_stop")
		}
	}
	return nil
}

// numberRule is the valid range of one numeric setting.
type numberRule struct {
	key   string
	value func(c *Config) float64
	ok    func(v float64) bool
	want  string
	whole bool // an integer setting
}

func (r numberRule) format(c *Config) string { return strconv.FormatFloat(r.value(c), 'g', -1, 64) }

// The predicates are false for NaN, and each bounds infinity out.
func atLeast(lo float64) func(float64) bool {
	return func(v float64) bool { return v >= lo && v <= math.MaxFloat64 }
}
func positive(v float64) bool { return v > 0 && v <= math.MaxFloat64 }
func closedOpen(lo, hi float64) func(float64) bool {
	return func(v float64) bool { return v >= lo && v < hi }
}
func closed(lo, hi float64) func(float64) bool {
	return func(v float64) bool { return v >= lo && v <= hi }
}

// MaxThreads bounds --threads: each thread is a worker the engine starts.
const MaxThreads = 1024

// numberRules lists every numeric setting but the lists (classes,
// milestones) in the order Config declares them.
var numberRules = []numberRule{
	{"subset", func(c *Config) float64 { return c.Subset }, closed(0, 1), "in [0, 1] (0 keeps everything)", false},
	{"val_fraction", func(c *Config) float64 { return c.ValFraction }, closedOpen(0, 1), "in [0, 1)", false},
	{"hidden", func(c *Config) float64 { return float64(c.Hidden) }, atLeast(0), "at least 0 (0: the model's default)", true},
	{"depth", func(c *Config) float64 { return float64(c.Depth) }, atLeast(0), "at least 0 (0: the model's default)", true},
	{"dropout", func(c *Config) float64 { return c.Dropout }, closedOpen(0, 1), "in [0, 1) (0: the model's default)", false},
	{"epochs", func(c *Config) float64 { return float64(c.Epochs) }, atLeast(1), "at least 1", true},
	{"batch", func(c *Config) float64 { return float64(c.Batch) }, atLeast(1), "at least 1", true},
	{"micro_batch", func(c *Config) float64 { return float64(c.MicroBatch) }, atLeast(-1), "at least -1 (0: chosen by Kiln; -1: the whole batch at once)", true},
	{"lr", func(c *Config) float64 { return c.LR }, positive, "a finite number > 0", false},
	{"momentum", func(c *Config) float64 { return c.Momentum }, closedOpen(0, 1), "in [0, 1)", false},
	{"weight_decay", func(c *Config) float64 { return c.WeightDecay }, atLeast(0), "a finite number ≥ 0", false},
	{"clip_norm", func(c *Config) float64 { return c.ClipNorm }, atLeast(0), "a finite number ≥ 0 (0: off)", false},
	{"label_smoothing", func(c *Config) float64 { return c.LabelSmoothing }, closedOpen(0, 1), "in [0, 1)", false},
	{"warmup", func(c *Config) float64 { return float64(c.Warmup) }, atLeast(0), "at least 0", true},
	{"step_size", func(c *Config) float64 { return float64(c.StepSize) }, atLeast(0), "at least 0", true},
	{"gamma", func(c *Config) float64 { return c.Gamma }, closed(0, 1), "in [0, 1] (0: the schedule's default)", false},
	{"plateau_factor", func(c *Config) float64 { return c.PlateauFactor }, closedOpen(0, 1), "in [0, 1) (0: 0.1)", false},
	{"plateau_patience", func(c *Config) float64 { return float64(c.PlateauPatience) }, atLeast(0), "at least 0 (0: 10)", true},
	{"patience", func(c *Config) float64 { return float64(c.Patience) }, atLeast(0), "at least 0", true},
	{"min_delta", func(c *Config) float64 { return c.MinDelta }, atLeast(0), "a finite number ≥ 0", false},
	{"target", func(c *Config) float64 { return c.Target }, atLeast(0), "a finite number ≥ 0 (0: none)", false},
	{"val_every", func(c *Config) float64 { return float64(c.ValEvery) }, atLeast(0), "at least 0 (0: at epoch ends only)", true},
	{"seed", func(c *Config) float64 { return float64(c.Seed) }, atLeast(0), "in [0, 18446744073709551615]", true},
	{"threads", func(c *Config) float64 { return float64(c.Threads) }, closed(0, MaxThreads), fmt.Sprintf("in [0, %d] (0: all cores)", MaxThreads), true},
	{"stop_after_epoch", func(c *Config) float64 { return float64(c.StopAfterEpoch) }, atLeast(0), "in [0, epochs] (0: run them all)", true},
	{"memory_limit_mb", func(c *Config) float64 { return float64(c.MemoryLimitMB) }, atLeast(0), "at least 0 (0: the memory available)", true},
	{"world_size", func(c *Config) float64 { return float64(c.WorldSize) }, atLeast(0), "at least 0 (set by the launcher)", true},
	{"log_every", func(c *Config) float64 { return float64(c.LogEvery) }, atLeast(0), "at least 0 (0: at epoch ends only)", true},
}

// SettingRange says what a numeric setting accepts, by its configuration
// key ("" for a key that is not a numeric setting).
func SettingRange(key string) string {
	switch key {
	case "classes":
		return "whole numbers, each at least 0"
	case "milestones":
		return "whole numbers, each at least 1, increasing"
	}
	for _, r := range numberRules {
		if r.key == key {
			if r.whole {
				return "a whole number " + r.want
			}
			return r.want
		}
	}
	return ""
}
