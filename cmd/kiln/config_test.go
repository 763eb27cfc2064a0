package main

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kiln-ml/kiln/trainer"
)

// writeCSV writes a small classification csv (three features, classes
// 0..classes-1 in turn) as dir/name and returns its path.
func writeCSV(t *testing.T, dir, name string, rows, classes int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("a,b,c,label\n")
	for i := range rows {
		fmt.Fprintf(&b, "%d,%d,%d,%d\n", i%7, i%5, i%3, i%classes)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A model far too wide for memory is refused from its configuration, before
// it is built, by every command that builds one to train.
func TestTooWideAModelIsRefusedBeforeItIsBuilt(t *testing.T) {
	dir := t.TempDir()
	csv := writeCSV(t, dir, "small.csv", 40, 2)
	for _, cmd := range []string{"train", "lr-find"} {
		r := kiln(t, dir, cmd, "--model", "mlp", "--hidden", "100000000", "--dataset", "csv", "--data-dir", csv,
			"--device", "cpu", "--run-dir", filepath.Join(dir, cmd))
		lines := errorLines(r.stderr)
		if r.code == 0 || len(lines) != 1 {
			t.Fatalf("%s: exit %d, want one error line:\n%s", cmd, r.code, r.stderr)
		}
		for _, want := range []string{"--hidden 100000000", "parameters", "available"} {
			if !strings.Contains(lines[0], want) {
				t.Errorf("%s: %q does not mention %q", cmd, lines[0], want)
			}
		}
	}
}

// resolveArgs parses training flags (and --config) as kiln train does and
// resolves them.
func resolveArgs(args ...string) (trainer.Config, error) {
	f := pflag.NewFlagSet("train", pflag.ContinueOnError)
	f.SetOutput(io.Discard)
	cf := addConfigFlags(f)
	var configPath string
	f.StringVar(&configPath, "config", "", "")
	if err := f.Parse(args); err != nil {
		return trainer.Config{}, err
	}
	return cf.resolve(f, configPath)
}

// flagCases gives, for every numeric setting, a value out of its range and
// what the message must say of the range.
var flagCases = map[string]struct{ bad, want string }{
	"subset": {"1.5", "in [0, 1]"}, "val_fraction": {"1", "in [0, 1)"}, "hidden": {"-1", "at least 0"},
	"depth": {"-1", "at least 0"}, "dropout": {"1", "in [0, 1)"}, "epochs": {"0", "at least 1"},
	"batch": {"0", "at least 1"}, "micro_batch": {"-2", "at least -1"}, "lr": {"0", "> 0"}, "momentum": {"1", "in [0, 1)"},
	"weight_decay": {"-1", "≥ 0"}, "clip_norm": {"-1", "≥ 0"}, "label_smoothing": {"1", "in [0, 1)"},
	"warmup": {"-1", "at least 0"}, "step_size": {"-1", "at least 0"}, "gamma": {"2", "in [0, 1]"},
	"plateau_factor": {"1", "in [0, 1)"}, "plateau_patience": {"-1", "at least 0"},
	"patience": {"-1", "at least 0"}, "min_delta": {"-1", "≥ 0"}, "target": {"-1", "≥ 0"},
	"val_every": {"-1", "at least 0"}, "seed": {"-1", "in [0, 18446744073709551615]"},
	"threads": {"5000", "in [0, 1024]"}, "stop_after_epoch": {"9", "in [0, "},
	"memory_limit_mb": {"-1", "at least 0"}, "classes": {"-1", "at least 0"}, "milestones": {"0", "at least 1"},
	"log_every": {"-1", "at least 0"},
}

// Every numeric training flag refuses NaN, ±Inf and a value out of range
// at once, naming the flag and its range; the same setting from a
// configuration file is named by its key. Nothing is loaded or built first.
func TestEveryNumericSettingIsValidatedByName(t *testing.T) {
	typ := reflect.TypeFor[trainer.Config]()
	for i := range typ.NumField() {
		fld := typ.Field(i)
		key := strings.Split(fld.Tag.Get("yaml"), ",")[0]
		if k := fld.Type.Kind(); k == reflect.String || k == reflect.Bool || key == "world_size" {
			continue // world_size comes from mpirun, not a flag
		}
		c, ok := flagCases[key]
		if !ok {
			t.Errorf("numeric setting %s has no case", key)
			continue
		}
		flag := "--" + strings.ReplaceAll(key, "_", "-")
		extra := []string{"--early-stop", "val_loss"}
		for _, v := range []string{c.bad, "NaN", "+Inf", "-Inf"} {
			_, err := resolveArgs(append([]string{flag + "=" + v}, extra...)...)
			if err == nil || !strings.Contains(err.Error(), flag) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s=%s: %v; want it named with its range %q", flag, v, err, c.want)
			}
		}
		yv := map[string]string{"NaN": ".nan", "+Inf": ".inf", "-Inf": "-.inf"}
		for _, v := range []string{c.bad, "NaN", "+Inf", "-Inf"} {
			val := cmp.Or(yv[v], v)
			if key == "classes" || key == "milestones" {
				val = "[" + val + "]"
			}
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(key+": "+val+"\nearly_stop: val_loss\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := resolveArgs("--config", path)
			if err == nil || !strings.Contains(err.Error(), key+" ") || strings.Contains(err.Error(), flag) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %s in a file: %v; want it named %s with its range %q", key, val, err, key, c.want)
			}
		}
	}
}

// A list flag with nothing in it, or an empty entry, is an error: it must
// not quietly mean every class.
func TestEmptyListFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--classes", ",,,"}, {"--classes", ""}, {"--classes", "0,,1"}, {"--classes", " , "},
		{"--milestones", "100,,200", "--schedule", "multistep"}, {"--milestones", "", "--schedule", "multistep"},
	} {
		if c, err := resolveArgs(args...); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%q: classes %v, milestones %v, error %v", args, c.Classes, c.Milestones, err)
		}
	}
	if c, err := resolveArgs("--classes", "3, 5"); err != nil || !slices.Equal(c.Classes, []int{3, 5}) {
		t.Errorf("--classes '3, 5': %v, %v", c.Classes, err)
	}
}

// The original report: a NaN --min-delta trained a whole epoch, then failed
// writing the checkpoint. Now it, and lr-find's own numbers, stop kiln
// before it reads any data (the data directory here does not exist).
func TestNaNFlagsStopBeforeAnyWork(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such.csv")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"train", "--early-stop", "val_loss", "--min-delta", "NaN"}, "--min-delta NaN: must be a finite number ≥ 0"},
		{[]string{"train", "--momentum", "Inf"}, "--momentum +Inf: must be in [0, 1)"},
		{[]string{"train", "--epochs", "NaN"}, `invalid argument "NaN" for "--epochs" flag: must be a whole number at least 1`},
		{[]string{"lr-find", "--start", "NaN"}, "--start NaN"},
		{[]string{"lr-find", "--end", "Inf"}, "--end +Inf"},
		{[]string{"lr-find", "--steps", "0"}, "--steps 0"},
		{[]string{"tune", "--clip-norm", "-Inf", "--param", "lr=0.1,0.2"}, "--clip-norm -Inf"},
	} {
		r := kiln(t, dir, append(c.args, "--dataset", "csv", "--data-dir", missing)...)
		lines := errorLines(r.stderr)
		if r.code != 2 || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%q: exit %d, want 2 and one error line with %q:\n%s", c.args, r.code, c.want, r.stderr)
		}
	}
}

// A run on one class would report 100% accuracy; kiln train and lr-find
// refuse it, naming the class, whether the file has one class or --classes
// keeps one.
func TestOneClassIsRefused(t *testing.T) {
	dir := t.TempDir()
	one, four := writeCSV(t, dir, "one.csv", 40, 1), writeCSV(t, dir, "four.csv", 40, 4)
	for _, args := range [][]string{
		{"train", "--data-dir", one},
		{"lr-find", "--data-dir", one},
		{"train", "--data-dir", four, "--classes", "2"},
	} {
		if args[0] == "train" {
			args = append(args, "--epochs", "1")
		}
		r := kiln(t, dir, append(args, "--model", "mlp", "--dataset", "csv", "--device", "cpu", "--run-dir", filepath.Join(dir, "r"))...)
		lines := errorLines(r.stderr)
		if r.code != 2 || len(lines) != 1 || !strings.Contains(lines[0], "of class") || !strings.Contains(lines[0], "nothing to learn") {
			t.Errorf("%q: exit %d, want 2 and an error naming the one class:\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
}

// An --optimizer other than the model's recipe's takes that optimiser's own
// lr, momentum, Nesterov and weight decay where neither a flag nor the
// config file sets them (gMLP's AdamW recipe under SGD trained to 12%).
func TestAnotherOptimizerTakesItsOwnDefaults(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("momentum: 0.8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args                []string
		lr, momentum, decay float64
		nesterov            bool
	}{
		{[]string{"--model", "gmlp"}, 3e-3, 0, 0.05, false}, // the recipe
		{[]string{"--model", "gmlp", "--optimizer", "sgd"}, 0.05, 0.9, 5e-4, true},
		{[]string{"--model", "gmlp", "--optimizer", "sgd", "--lr", "0.1"}, 0.1, 0.9, 5e-4, true},
		{[]string{"--model", "gmlp", "--optimizer", "sgd", "--config", file}, 0.05, 0.8, 5e-4, true},
		{[]string{"--model", "lenet", "--optimizer", "adam"}, 1e-3, 0, 0, false},
		{[]string{"--model", "lenet", "--optimizer", "sgd"}, 0.05, 0.9, 5e-4, true}, // the recipe's own
	} {
		got, err := resolveArgs(c.args...)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if got.LR != c.lr || got.Momentum != c.momentum || got.WeightDecay != c.decay || got.Nesterov != c.nesterov {
			t.Errorf("%v: lr %v momentum %v weight decay %v nesterov %v; want %v %v %v %v", c.args,
				got.LR, got.Momentum, got.WeightDecay, got.Nesterov, c.lr, c.momentum, c.decay, c.nesterov)
		}
	}
}

// --momentum 0 is plain SGD, as in PyTorch: the recipe's Nesterov, which
// needs momentum, goes with it unless --nesterov is given too.
func TestMomentumZeroIsPlainSGD(t *testing.T) {
	c, err := resolveArgs("--momentum", "0")
	if err != nil || c.Momentum != 0 || c.Nesterov {
		t.Fatalf("--momentum 0: %v, momentum %v, nesterov %v", err, c.Momentum, c.Nesterov)
	}
	if _, err := resolveArgs("--momentum", "0", "--nesterov"); err == nil || !strings.Contains(err.Error(), "--nesterov true: needs momentum > 0") {
		t.Fatalf("--momentum 0 --nesterov: %v", err)
	}
}

// A whole configuration as an older Kiln wrote them (a run's config.yaml or
// a tune's best.yaml, nesterov left out when false) given to --config under
// any name trains without Nesterov, as its run did; a file of a few
// settings of the user's own keeps the recipe's Nesterov.
func TestConfigOfAnOlderKilnKeepsNesterovOff(t *testing.T) {
	dir := t.TempDir()
	older := filepath.Join(dir, "winner.yaml")
	mustWrite(t, older, "model: mlp\ndataset: mnist\nval_fraction: 0.1\nepochs: 3\nbatch: 32\ndrop_last: false\n"+
		"lr: 0.02\noptimizer: sgd\nmomentum: 0.9\nweight_decay: 0.0\nschedule: cosine\nseed: 1\ndevice: auto\n")
	own := filepath.Join(dir, "mine.yaml")
	mustWrite(t, own, "model: mlp\nlr: 0.02\nmomentum: 0.9\n")
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"--config", older}, false},
		{[]string{"--config", older, "--nesterov"}, true},
		{[]string{"--config", own}, true},
	} {
		c, err := resolveArgs(tc.args...)
		if err != nil {
			t.Fatal(tc.args, err)
		}
		if c.Nesterov != tc.want {
			t.Errorf("%v: nesterov %v, want %v", tc.args, c.Nesterov, tc.want)
		}
	}
}

// Early stopping or the plateau schedule in the user's file, made unread by
// a flag (no validation split), is refused, not dropped: only a resume of
// an older Kiln's run leaves such settings out.
func TestFileSettingsMadeUnreadByAFlagAreRefused(t *testing.T) {
	dir := t.TempDir()
	es := filepath.Join(dir, "es.yaml")
	mustWrite(t, es, "early_stop: val_acc\npatience: 2\n")
	pl := filepath.Join(dir, "pl.yaml")
	mustWrite(t, pl, "schedule: plateau\nplateau_patience: 2\n")
	for path, want := range map[string]string{es: "early_stop", pl: "schedule"} {
		if _, err := resolveArgs("--config", path, "--val-fraction", "0"); err == nil || !strings.Contains(err.Error(), want) ||
			!strings.Contains(err.Error(), "needs a validation split") {
			t.Errorf("%s with --val-fraction 0: %v, want %s refused", filepath.Base(path), err, want)
		}
	}
}

func mustWrite(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
