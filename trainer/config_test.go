package trainer

import (
	"cmp"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/trainer/data"
)

func writeConfig(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A configuration is a flat map of a few hundred bytes: a file far larger,
// or nested deeper than a list in a map, is refused before the parser sees
// it (the parser's memory grows with both: 200 KB of brackets took it past
// 2 GB), with the limit in the message.
func TestLoadConfigFileBoundsSizeAndNesting(t *testing.T) {
	deep := func(open, close string, n int) string {
		return strings.Repeat(open, n) + strings.Repeat(close, n)
	}
	block := func(n int) string {
		var b strings.Builder
		for i := range n {
			b.WriteString(strings.Repeat(" ", 2*i) + "a:\n")
		}
		return b.String()
	}
	dashes := func(n int) string {
		var b strings.Builder
		for i := range n {
			b.WriteString(strings.Repeat("  ", i) + "- \n")
		}
		return b.String()
	}
	for _, c := range []struct{ name, file, content, want string }{
		{"large", "big.yaml", "epochs: 1\n" + strings.Repeat("# padding\n", 40_000), "256 KiB"},
		{"flow", "flow.yaml", "model: " + deep("[", "]", 20) + "\n", "nested deeper than 8"},
		{"flow maps", "maps.yaml", "model: " + deep("{a: ", "}", 20) + "\n", "nested deeper than 8"},
		{"block", "block.yaml", block(20), "nested deeper than 8"},
		{"sequences", "seq.yaml", "classes:\n" + dashes(20), "nested deeper than 8"},
		{"inline sequences", "seq2.yaml", "classes:\n" + strings.Repeat("- ", 20) + "1\n", "nested deeper than 8"},
		{"closers do not hide openers", "hide.yaml", "model: ]]]]]]]]]]]]\ndataset: " + deep("[", "]", 20) + "\n", "nested deeper than 8"},
		{"200 KB of brackets", "huge.yaml", "model: " + deep("[", "]", 100_000) + "\n", "nested deeper than 8"},
		{"json", "deep.json", `{"model": ` + deep("[", "]", 20) + `}`, "nested deeper than 8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, err := LoadConfigFile(writeConfig(t, c.file, c.content), DefaultConfig())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one mentioning %q", err, c.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v to refuse", d)
			}
		})
	}
	if _, err := LoadConfigFile(t.TempDir(), DefaultConfig()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
	// What a real configuration holds still loads, lists, quotes and
	// comments included.
	ok := "# a run\nmodel: mlp   # [not a list]\ndataset: csv\ndata_dir: \"data/[x]{y}.csv\"\nclasses: [0, 1, 2]\nmilestones:\n  - 100\n  - 200\nrun_dir: 'runs/a#b'\n"
	c, err := LoadConfigFile(writeConfig(t, "ok.yaml", ok), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "data/[x]{y}.csv" || !reflect.DeepEqual(c.Classes, []int{0, 1, 2}) || !reflect.DeepEqual(c.Milestones, []int{100, 200}) {
		t.Errorf("loaded %+v", c)
	}
}

// numericCase is one numeric setting with a value outside its range and
// what the message must say of the range.
type numericCase struct {
	key, bad, want string
}

// numericCases covers every numeric field of Config (TestEveryNumericField
// checks that none is missing).
var numericCases = []numericCase{
	{"subset", "1.5", "in [0, 1]"},
	{"val_fraction", "1", "in [0, 1)"},
	{"hidden", "-1", "at least 0"},
	{"depth", "-1", "at least 0"},
	{"dropout", "1", "in [0, 1)"},
	{"epochs", "0", "at least 1"},
	{"batch", "0", "at least 1"},
	{"micro_batch", "-2", "at least -1"},
	{"lr", "0", "> 0"},
	{"momentum", "1", "in [0, 1)"},
	{"weight_decay", "-1", "≥ 0"},
	{"clip_norm", "-1", "≥ 0"},
	{"label_smoothing", "1", "in [0, 1)"},
	{"warmup", "-1", "at least 0"},
	{"step_size", "-1", "at least 0"},
	{"gamma", "2", "in [0, 1]"},
	{"plateau_factor", "1", "in [0, 1)"},
	{"plateau_patience", "-1", "at least 0"},
	{"patience", "-1", "at least 0"},
	{"min_delta", "-1", "≥ 0"},
	{"target", "-1", "≥ 0"},
	{"val_every", "-1", "at least 0"},
	{"seed", "-1", "in [0, 18446744073709551615]"},
	{"threads", "5000", "in [0, 1024]"},
	{"stop_after_epoch", "9", "in [0, "},
	{"memory_limit_mb", "-1", "at least 0"},
	{"world_size", "-1", "at least 0"},
	{"log_every", "-1", "at least 0"},
	{"classes", "[-1]", "at least 0"},
	{"milestones", "[0]", "at least 1"},
}

func TestEveryNumericFieldHasACase(t *testing.T) {
	have := map[string]bool{}
	for _, c := range numericCases {
		have[c.key] = true
	}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		key := strings.Split(f.Tag.Get("yaml"), ",")[0]
		switch k := f.Type.Kind(); {
		case k == reflect.String || k == reflect.Bool:
		case !have[key]:
			t.Errorf("numeric setting %s (%v) has no case in numericCases", key, f.Type)
		}
	}
}

// Every numeric setting of a configuration file is checked when it is
// loaded and validated, before any work: NaN, ±Inf and a value out of range
// are refused with a message that names the key as the file spells it and
// says what the key accepts.
func TestEveryNumericSettingIsValidatedFromAFile(t *testing.T) {
	for _, c := range numericCases {
		values := []string{c.bad, ".nan", ".inf", "-.inf"}
		if strings.HasPrefix(c.bad, "[") {
			values = []string{c.bad, "[.nan]", "[.inf]", "[-.inf]"}
		}
		for _, v := range values {
			content := c.key + ": " + v + "\n"
			if c.key == "target" || c.key == "min_delta" || c.key == "patience" {
				content += "early_stop: val_loss\n"
			}
			conf, err := LoadConfigFile(writeConfig(t, "c.yaml", content), DefaultConfig())
			if err == nil {
				err = conf.Validate()
			}
			if err == nil {
				t.Errorf("%s: %s accepted", c.key, v)
				continue
			}
			msg := err.Error()
			if !strings.Contains(msg, c.key) || !strings.Contains(msg, c.want) {
				t.Errorf("%s: %s: %q does not name %s and its range %q", c.key, v, msg, c.key, c.want)
			}
			if strings.Contains(msg, "--") {
				t.Errorf("%s: %s: %q names a flag for a file's key", c.key, v, msg)
			}
		}
	}
}

// A list or a mapping where a key takes one value, and one value where it
// takes a list, are refused naming the key and what it takes, in YAML and
// JSON, not in the decoder's Go types.
func TestConfigValuesOfTheWrongShape(t *testing.T) {
	for _, c := range []struct{ name, content, want string }{
		{"c.yaml", "lr: [0.1]\n", "lr a list: must be a finite number > 0, one value"},
		{"c.yaml", "epochs: {n: 3}\n", "epochs a mapping: must be a whole number at least 1, one value"},
		{"c.yaml", "model: [lenet]\n", "model a list: must be a word, one value"},
		{"c.yaml", "nesterov: [true]\n", "nesterov a list: must be true or false, one value"},
		{"c.yaml", "classes: 3\n", "classes 3: must be a list of whole numbers"},
		{"c.json", `{"lr": [0.1]}`, "lr a list: must be a finite number > 0, one value"},
		{"c.json", `{"milestones": 5}`, "milestones 5: must be a list of whole numbers"},
	} {
		_, err := LoadConfigFile(writeConfig(t, c.name, c.content), DefaultConfig())
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "Go struct") {
			t.Errorf("%s %q: %v, want %q", c.name, c.content, err, c.want)
		}
	}
}

// What editors and hands write: a YAML file of comments alone sets nothing
// (the defaults stand), a byte-order mark is skipped, a JSON key given twice
// is refused (encoding/json would keep the last), and JSON's syntax errors
// and an empty JSON file say where and what.
func TestConfigFilesAsWritten(t *testing.T) {
	base := DefaultConfig()
	for _, c := range []struct{ name, content, want string }{
		{"e.yaml", "", ""},
		{"c.yaml", "# nothing yet\n\n", ""},
		{"bom.yaml", "\ufefflr: 0.2\n", "lr 0.2"},
		{"bom.json", "\ufeff{\"lr\": 0.2}", "lr 0.2"},
		{"dup.json", `{"lr": 0.1, "lr": 0.2}`, `line 1: "lr" is given twice`},
		{"dup2.json", "{\"classes\": [1, 2],\n \"lr\": 0.1, \"lr\": 0.2}", `line 2: "lr" is given twice`},
		{"nan.json", "{\n  \"lr\": NaN}", "line 2, column 9: invalid character 'N'"},
		{"e.json", " \n", "empty: want a JSON object of settings"},
	} {
		got, err := LoadConfigFile(writeConfig(t, c.name, c.content), base)
		switch {
		case strings.HasPrefix(c.want, "lr "):
			if err != nil || got.LR != 0.2 || got.Model != base.Model {
				t.Errorf("%s: lr %v, model %q, %v: want lr 0.2 over the defaults", c.name, got.LR, got.Model, err)
			}
		case c.want == "":
			if err != nil || !reflect.DeepEqual(got, base) {
				t.Errorf("%s: %+v, %v: want the defaults unchanged", c.name, got, err)
			}
		case err == nil || !strings.Contains(err.Error(), c.want):
			t.Errorf("%s %q: %v, want %q", c.name, c.content, err, c.want)
		}
	}
}

// The same checks reach a program that fills a Config itself, as a
// *SettingError naming the key.
func TestValidateTrainingNamesTheKey(t *testing.T) {
	c := DefaultConfig()
	c.MinDelta, c.EarlyStop = -0.5, "val_loss"
	err := c.ValidateTraining()
	var se *SettingError
	if !errors.As(err, &se) || se.Key != "min_delta" || !strings.Contains(err.Error(), "min_delta -0.5") {
		t.Errorf("min_delta -0.5: %v", err)
	}
	c = DefaultConfig()
	c.Classes = []int{}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "classes") {
		t.Errorf("an empty list of classes: %v", err)
	}
	c = DefaultConfig()
	c.StopAfterEpoch = 9
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "in [0, 3]") {
		t.Errorf("stop_after_epoch past epochs: %v", err)
	}
	c = DefaultConfig()
	c.Milestones, c.Schedule = []int{300, 200}, "multistep"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "increasing") {
		t.Errorf("decreasing milestones: %v", err)
	}
	c = DefaultConfig()
	c.Schedule = "bogus"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "schedule") {
		t.Errorf("an unknown schedule: %v", err)
	}
	c = DefaultConfig()
	c.Precision = "fp16"
	if err := c.ValidateTraining(); !errors.As(err, &se) || se.Key != "precision" {
		t.Errorf("precision fp16: %v", err)
	}
}

// The word and size settings refuse what they cannot use, naming the key.
func TestWordSettingsAreChecked(t *testing.T) {
	for _, c := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.ImageSize = "28" }, ""},
		{func(c *Config) { c.ImageSize = "32x24" }, ""},
		{func(c *Config) { c.ImageSize = "0x28" }, "image_size"},
		{func(c *Config) { c.ImageSize = "28xx" }, "image_size"},
		{func(c *Config) { c.ImageSize = "5000x5000" }, "image_size"},
		{func(c *Config) { c.ImageFit = "stretch" }, "image_fit"},
		{func(c *Config) { c.LogLevel = "trace" }, "log_level"},
		{func(c *Config) { c.LogLevel = "debug" }, ""},
		{func(c *Config) { c.LogLevel = "WARN" }, ""},
	} {
		cfg := DefaultConfig()
		cfg.Dataset = "folder" // whose settings the image ones are
		c.change(&cfg)
		err := cfg.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want an error naming %q", cfg, err, c.want)
		}
	}
	if h, w, err := ParseImageSize("24X32"); err != nil || h != 24 || w != 32 {
		t.Errorf("ParseImageSize(24X32) = %d, %d, %v", h, w, err)
	}
}

// An image folder's settings on a built-in data set are refused, naming the
// setting: nothing would read them, yet config.yaml would keep them.
func TestFolderSettingsNeedAFolder(t *testing.T) {
	for _, set := range []func(*Config){
		func(c *Config) { c.ImageSize = "64x64" },
		func(c *Config) { c.ImageFit = "pad" },
		func(c *Config) { c.Strict = true },
	} {
		c := DefaultConfig()
		set(&c)
		var se *SettingError
		if err := c.Validate(); !errors.As(err, &se) || !strings.Contains(se.Problem, "image folder's setting") {
			t.Errorf("%+v on mnist: %v, want it refused", c, err)
		}
		c.Dataset = "folder"
		if err := c.Validate(); err != nil {
			t.Errorf("on a folder: %v", err)
		}
	}
}

// Settings that belong to the other task are refused once the task is
// known: early stopping on the other task's metric (it read the loss, and
// restored the worst weights as the best), label smoothing on a regression.
func TestTaskSettingsAreChecked(t *testing.T) {
	for _, c := range []struct {
		regression bool
		set        func(*Config)
		key        string
	}{
		{true, func(c *Config) { c.EarlyStop = "val_acc" }, "early_stop"},
		{false, func(c *Config) { c.EarlyStop = "val_rmse" }, "early_stop"},
		{true, func(c *Config) { c.LabelSmoothing = 0.1 }, "label_smoothing"},
		{true, func(c *Config) { c.EarlyStop = "val_rmse" }, ""},
		{false, func(c *Config) { c.EarlyStop = "val_acc"; c.LabelSmoothing = 0.1 }, ""},
	} {
		cfg := DefaultConfig()
		cfg.Regression = c.regression
		c.set(&cfg)
		var se *SettingError
		err := cfg.ValidateTask()
		if c.key == "" && err != nil || c.key != "" && (!errors.As(err, &se) || se.Key != c.key) {
			t.Errorf("regression %v, %+v: %v, want %q", c.regression, cfg, err, c.key)
		}
	}
}

// --augment is refused where it would damage the data: a regression, MNIST's
// digits, a table's 1×1 rows; taken for 28×28 Fashion-MNIST and 32×32
// pictures.
func TestAugmentNeedsPictures(t *testing.T) {
	pics := func(name string, h, w int) *data.Dataset {
		return &data.Dataset{Name: name, Channels: 1, Height: h, Width: w}
	}
	for _, c := range []struct {
		dataset    string
		regression bool
		ds         *data.Dataset
		ok         bool
	}{
		{"mnist-rotation", true, pics("mnist-rotation", 28, 28), false},
		{"mnist", false, pics("mnist", 28, 28), false},
		{"csv", false, pics("csv", 1, 1), false},
		{"fashion-mnist", false, pics("fashion-mnist", 28, 28), true},
		{"folder", false, pics("folder", 32, 32), true},
		// A Go program's own pictures under DefaultConfig's dataset name.
		{"mnist", false, pics("own", 16, 16), true},
	} {
		cfg := DefaultConfig()
		cfg.Dataset, cfg.Regression, cfg.Augment = c.dataset, c.regression, true
		if err := CheckAugment(cfg, c.ds); (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", c.dataset, err, c.ok)
		}
		cfg.Augment = false
		if err := CheckAugment(cfg, c.ds); err != nil {
			t.Errorf("%s without --augment: %v", c.dataset, err)
		}
	}
}

// A CSV file's target and task are its settings: refused on another data
// set, and the task must be one of three.
func TestCSVSettings(t *testing.T) {
	c := DefaultConfig()
	c.CSVTarget = "y"
	var se *SettingError
	if err := c.Validate(); !errors.As(err, &se) || se.Key != "csv_target" {
		t.Errorf("csv_target on mnist: %v", err)
	}
	c.Dataset, c.CSVTask = "csv", "ranking"
	if err := c.Validate(); !errors.As(err, &se) || se.Key != "csv_task" {
		t.Errorf("csv_task ranking: %v", err)
	}
	c.CSVTask = "regression"
	if err := c.Validate(); err != nil {
		t.Errorf("a csv with its target and task: %v", err)
	}
	if o := c.DataOptions(); o.CSV.Target != "y" || o.CSV.Task != "regression" {
		t.Errorf("DataOptions %+v", o.CSV)
	}
}

// Early stopping's settings without --early-stop are refused, naming the
// setting: nothing would read them.
func TestEarlyStopSettingsNeedEarlyStop(t *testing.T) {
	for key, set := range map[string]func(*Config){
		"patience":  func(c *Config) { c.Patience = 3 },
		"min_delta": func(c *Config) { c.MinDelta = 0.01 },
		"target":    func(c *Config) { c.Target = 0.9 },
	} {
		c := DefaultConfig()
		set(&c)
		var se *SettingError
		if err := c.Validate(); !errors.As(err, &se) || se.Key != key || !strings.Contains(se.Problem, "needs early_stop") {
			t.Errorf("%s without early_stop: %v", key, err)
		}
		c.EarlyStop = "val_loss"
		if err := c.Validate(); err != nil {
			t.Errorf("%s with early_stop: %v", key, err)
		}
	}
}

// A size setting the model lacks (lenet's width), mlp's depth without its
// width, and a schedule's setting under another schedule are inert: refused
// by CheckInert, naming the setting (config.yaml would keep what the run
// never did), and left out by DropInert (an older Kiln's files hold them).
func TestSettingsOnlyWhereSomethingReadsThem(t *testing.T) {
	cases := []struct {
		key, want string
		set       func(*Config)
	}{
		{"hidden", "model lenet has no such setting (models with it: cnn, gmlp, mlp)", func(c *Config) { c.Hidden = 64 }},
		{"depth", "model cnn has no such setting", func(c *Config) { c.Model, c.Depth = "cnn", 3 }},
		{"dropout", "model gmlp has no such setting (models with it: cnn)", func(c *Config) { c.Model, c.Dropout = "gmlp", 0.5 }},
		{"depth", "mlp takes depth only with hidden", func(c *Config) { c.Model, c.Depth = "mlp", 3 }},
		{"gamma", "is for the step, multistep or exp schedule; this run's is onecycle", func(c *Config) { c.Gamma = 0.5 }},
		{"milestones", "is for the multistep schedule; this run's is cosine", func(c *Config) { c.Schedule, c.Milestones = "cosine", []int{10} }},
		{"step_size", "is for the step schedule; this run's is multistep", func(c *Config) { c.Schedule, c.Milestones, c.StepSize = "multistep", []int{10}, 5 }},
		{"gamma", "is for the step, multistep or exp schedule; this run's is plateau", func(c *Config) { c.Schedule, c.Gamma = "plateau", 0.5 }},
		{"plateau_patience", "is for the plateau schedule; this run's is cosine", func(c *Config) { c.Schedule, c.PlateauPatience = "cosine", 2 }},
		{"plateau_factor", "is for the plateau schedule; this run's is onecycle", func(c *Config) { c.PlateauFactor = 0.5 }},
		{"momentum", "is SGD's; this run's optimizer is adam", func(c *Config) { c.Optimizer, c.Momentum, c.Nesterov = "adam", 0.9, false }},
		{"nesterov", "is SGD's; this run's optimizer is adamw", func(c *Config) { c.Optimizer, c.Momentum, c.Nesterov = "adamw", 0, true }},
		// Early stopping's settings without early_stop, the validation's
		// without a split: an older Kiln took them (its runs resume).
		{"target", "needs early_stop", func(c *Config) { c.Target = 0.9 }},
		{"patience", "needs early_stop", func(c *Config) { c.Patience = 3 }},
		{"min_delta", "needs early_stop", func(c *Config) { c.MinDelta = 0.01 }},
		{"restore_best", "needs early_stop", func(c *Config) { c.RestoreBest = true }},
		{"val_every", "needs a validation split", func(c *Config) { c.ValFraction, c.ValEvery = 0, 5 }},
		{"schedule", "the rate stays constant", func(c *Config) { c.ValFraction, c.Schedule = 0, "plateau" }},
	}
	for _, k := range cases {
		c := DefaultConfig()
		k.set(&c)
		var se *SettingError
		if err := c.CheckInert(); !errors.As(err, &se) || se.Key != k.key || !strings.Contains(se.Problem, k.want) {
			t.Errorf("%s: %v, want %s: …%s", k.key, err, k.key, k.want)
		}
		// From an older Kiln's file it is left out, and a resume of such a
		// run compares equal to one without it.
		before := c
		if d := c.DropInert(nil); len(d) == 0 || d[0].Key != k.key || c.CheckInert() != nil {
			t.Errorf("%s: DropInert left out %v, then %v", k.key, d, c.CheckInert())
		}
		if string(resumeKey(before)) != string(resumeKey(c)) {
			t.Errorf("%s: the resume key of a run with it differs from one without", k.key)
		}
	}
	// Leaving one out leaves what only it read: val_acc early stopping
	// without a split takes its patience with it.
	c := DefaultConfig()
	c.ValFraction, c.EarlyStop, c.Patience = 0, "val_acc", 3
	if d := c.DropInert(nil); len(d) != 2 || c.EarlyStop != "" || c.Patience != 0 || c.Validate() != nil {
		t.Errorf("early stopping without a split: DropInert left out %v, then %v", d, c.Validate())
	}
	for name, set := range map[string]func(*Config){
		"cnn dropout":       func(c *Config) { c.Model, c.Dropout, c.Hidden = "cnn", 0.5, 64 },
		"gmlp width, depth": func(c *Config) { c.Model, c.Hidden, c.Depth = "gmlp", 32, 2 },
		"mlp width, depth":  func(c *Config) { c.Model, c.Hidden, c.Depth = "mlp", 32, 3 },
		"exp gamma":         func(c *Config) { c.Schedule, c.Gamma = "exp", 0.99 },
		"step":              func(c *Config) { c.Schedule, c.StepSize, c.Gamma = "step", 100, 0.5 },
	} {
		c := DefaultConfig()
		set(&c)
		if err := cmp.Or(c.Validate(), c.CheckInert()); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Without a validation split, the settings that read one are refused: the
// plateau schedule would keep its rate all run. An image folder may have
// val/ at val_fraction 0, so it is checked once the data is read
// (CheckValidation, which Fit calls too).
func TestValidationReadersNeedAValidationSplit(t *testing.T) {
	readers := map[string]func(*Config){
		"early_stop": func(c *Config) { c.EarlyStop = "val_acc" },
		"schedule":   func(c *Config) { c.Schedule = "plateau" },
		"val_every":  func(c *Config) { c.ValEvery = 100 },
	}
	for key, set := range readers {
		c := DefaultConfig()
		set(&c)
		c.ValFraction = 0
		var se *SettingError
		if err := c.Validate(); !errors.As(err, &se) || se.Key != key || !strings.Contains(se.Problem, "needs a validation split") {
			t.Errorf("%s at val_fraction 0: %v", key, err)
		}
		c.Dataset = "folder"
		if err := c.Validate(); err != nil {
			t.Errorf("%s on a folder at val_fraction 0: %v (its val/ decides)", key, err)
		}
		train := blobs(t, 64, 1)
		if err := CheckValidation(c, &data.Splits{Train: train}); !errors.As(err, &se) || se.Key != key {
			t.Errorf("%s, no validation split: %v", key, err)
		}
		if err := CheckValidation(c, &data.Splits{Train: train, Val: blobs(t, 16, 2)}); err != nil {
			t.Errorf("%s with a validation split: %v", key, err)
		}
	}
	c := blobConfig()
	c.Schedule, c.Warmup = "plateau", 0
	_, err := newBlobTrainer(t, c, "", false).Fit(context.Background(), &data.Splits{Train: blobs(t, 64, 1)})
	if err == nil || !strings.Contains(err.Error(), "needs a validation split") {
		t.Errorf("Fit of a plateau schedule without a validation split: %v", err)
	}
}

// ResumableSettings are exactly those a resume's comparison leaves out: a
// change to each keeps the resume key, a change to any other setting
// changes it.
func TestResumableSettingsAreThoseTheResumeKeyLeavesOut(t *testing.T) {
	base := DefaultConfig()
	var keys []string
	for f := range reflect.TypeFor[Config]().Fields() {
		keys = append(keys, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	changed := func(key string) Config {
		c := base
		v := reflect.ValueOf(&c).Elem()
		for i := range v.NumField() {
			if strings.Split(v.Type().Field(i).Tag.Get("json"), ",")[0] != key {
				continue
			}
			switch f := v.Field(i); f.Kind() {
			case reflect.String:
				f.SetString(f.String() + "x")
			case reflect.Bool:
				f.SetBool(!f.Bool())
			case reflect.Int, reflect.Uint64:
				if f.Kind() == reflect.Int {
					f.SetInt(f.Int() + 3)
				} else {
					f.SetUint(f.Uint() + 3)
				}
			case reflect.Float64:
				f.SetFloat(f.Float() + 0.25)
			case reflect.Slice:
				f.Set(reflect.ValueOf([]int{7}))
			}
		}
		return c
	}
	for _, key := range keys {
		if changed(key).CheckInert() != nil {
			continue // read by nothing under lenet and onecycle (DropInert)
		}
		same := string(resumeKey(changed(key))) == string(resumeKey(base))
		if resumable := slices.Contains(ResumableSettings, key); same != resumable && key != "world_size" {
			t.Errorf("%s: a change keeps the resume key: %v; listed as resumable: %v", key, same, resumable)
		}
	}
}

func TestTakeTaskRefusesRegressionOnClasses(t *testing.T) {
	c := DefaultConfig()
	c.Regression = true
	var se *SettingError
	if err := c.TakeTask(data.Classification); !errors.As(err, &se) || se.Key != "regression" {
		t.Fatalf("regression: true on a classification: %v, want a regression setting error", err)
	}
	if err := c.TakeTask(data.Regression); err != nil || !c.Regression {
		t.Fatalf("regression data: %v, Regression %v", err, c.Regression)
	}
	c.Regression = false
	if err := c.TakeTask(data.Regression); err != nil || !c.Regression {
		t.Fatalf("the data decides: %v, Regression %v", err, c.Regression)
	}
}

// A file of settings is one document: a second one (YAML after ---, or a
// second JSON object) is refused, not left unread.
func TestConfigOfTwoDocumentsIsRefused(t *testing.T) {
	for _, c := range []struct {
		text string
		json bool
		want string
	}{
		{"epochs: 1\n---\nepochs: 2\nbatch: 32\n", false, "more than one YAML document"},
		{"---\n---\nepochs: 1\n", false, "more than one YAML document"},
		{"# h\n---\n# c\n---\nepochs: 1\n", false, "more than one YAML document"},
		{"epochs: 1\n...\nbatch: 2\n", false, "after the end of the YAML document"},
		{`{"epochs": 1}` + "\n" + `{"epochs": 2}`, true, "more than one JSON value"},
	} {
		if _, err := ParseConfig([]byte(c.text), c.json, DefaultConfig()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.text, err, c.want)
		}
	}
	// One document with its markers, a directive or a comment is one.
	for _, text := range []string{"---\nepochs: 2\n...\n", "%YAML 1.2\n---\nepochs: 2\n", "# settings\n--- # the run\nepochs: 2\n", "epochs: 2\nnote: |\n  ---\n"} {
		got, err := ParseConfig([]byte(text), false, DefaultConfig())
		if (err != nil && !strings.Contains(text, "note")) || (err == nil && got.Epochs != 2) {
			t.Errorf("%q: %v, epochs %d", text, err, got.Epochs)
		}
	}
}

// JSON takes whole numbers written 2.0 or 1e2 for integer settings, as YAML
// does, rather than failing with encoding/json's Go error.
func TestJSONWholeNumbers(t *testing.T) {
	c, err := ParseConfig([]byte(`{"epochs": 2.0, "batch": 1e2, "milestones": [1.0e1], "seed": 7}`), true, DefaultConfig())
	if err != nil || c.Epochs != 2 || c.Batch != 100 || len(c.Milestones) != 1 || c.Milestones[0] != 10 || c.Seed != 7 {
		t.Fatalf("%v: epochs %d batch %d milestones %v seed %d", err, c.Epochs, c.Batch, c.Milestones, c.Seed)
	}
	if _, err := ParseConfig([]byte(`{"epochs": 1.5}`), true, DefaultConfig()); err == nil || !strings.Contains(err.Error(), "must be a whole number") {
		t.Fatalf("epochs 1.5: %v", err)
	}
}

// A JSON seed past 2^63 is read exactly (it went through a float64).
func TestJSONSeedPast2To63(t *testing.T) {
	for _, seed := range []uint64{18446744073709551615, 9223372036854775809} {
		c, err := ParseConfig([]byte(`{"seed": `+strconv.FormatUint(seed, 10)+`}`), true, DefaultConfig())
		if err != nil || c.Seed != seed {
			t.Errorf("seed %d: %v, read %d", seed, err, c.Seed)
		}
	}
}

// A data or run directory whose path is not UTF-8 is refused by name:
// config.yaml kept it as U+FFFD, so the run's --resume could not find its
// data.
func TestConfigRefusesPathsNotUTF8(t *testing.T) {
	for _, set := range []func(*Config){func(c *Config) { c.DataDir = "caf\xe9" }, func(c *Config) { c.RunDir = "runs/caf\xe9" }} {
		c := DefaultConfig()
		set(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "not UTF-8") {
			t.Errorf("a path not UTF-8: %v", err)
		}
	}
}

// A JSON setting of the wrong type is named in the file's words, not Go's
// ("cannot unmarshal number into Go struct field Config.precision of type
// string").
func TestJSONConfigOfTheWrongType(t *testing.T) {
	for body, want := range map[string]string{
		`{"precision": 16}`:   "precision: a JSON number where the setting is a string",
		`{"nesterov": "yes"}`: "nesterov: a JSON string where the setting is true or false",
	} {
		p := filepath.Join(t.TempDir(), "c.json")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfigFile(p, DefaultConfig()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

// A config file's paths are nobody's shell's: a leading ~ is the home
// directory (it made a folder named ~ in the working directory).
func TestConfigFilePathsExpandTheHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	c, err := ParseConfig([]byte("run_dir: ~/runs/a\ndata_dir: \"~/\"\n"), false, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if c.RunDir != home+"/runs/a" || c.DataDir != home+"/" {
		t.Fatalf("run_dir %q, data_dir %q; want them under %s", c.RunDir, c.DataDir, home)
	}
	if c, err = ParseConfig([]byte("run_dir: ~other/x\n"), false, DefaultConfig()); err != nil || c.RunDir != "~other/x" {
		t.Fatalf("~other/x: %q, %v", c.RunDir, err)
	}
	t.Setenv("HOME", "")
	if _, err := ParseConfig([]byte("run_dir: ~/x\n"), false, DefaultConfig()); err == nil || !strings.Contains(err.Error(), "run_dir") {
		t.Fatalf("~ without a home: %v", err)
	}
}
