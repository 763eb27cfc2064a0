package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/trainer"
)

// `kiln train --run-dir DIR --resume` continues DIR's run as it was
// started, from its config.yaml: a run of a model and data set other than
// the defaults, stopped after its first epoch and resumed with no other
// flag, ends with the bytes of the straight run. A flag that changes what
// it trains is refused, naming the flags that may change, before and after
// the run has finished.
func TestResumeTakesTheRunsConfiguration(t *testing.T) {
	needMNIST(t)
	dir := t.TempDir()
	args := func(run string) []string {
		return []string{"train", "--model", "mlp", "--dataset", "mnist", "--subset", "0.02", "--epochs", "2", "--seed", "5",
			"--lr", "0.02", "--device", "cpu", "--run-dir", filepath.Join(dir, run)}
	}
	mustRun(t, dir, args("straight")...)
	mustRun(t, dir, append(args("stopped"), "--stop-after-epoch", "1")...)
	for _, c := range []struct{ flag, value, names string }{
		{"--lr", "0.1", "lr: 0.02 → 0.1"},
		{"--model", "cnn", `model: "mlp" → "cnn"`}, // named, not a weight of the wrong shape
	} {
		if r := kiln(t, dir, "train", "--run-dir", filepath.Join(dir, "stopped"), "--resume", c.flag, c.value); r.code != 2 ||
			!strings.Contains(r.stderr, "configuration differs") || !strings.Contains(r.stderr, c.names) {
			t.Errorf("a resume with another %s: exit %d, %q, want it to name %s", c.flag, r.code, r.stderr, c.names)
		}
	}
	// A flag that makes the run's valid settings invalid is named, with
	// what a resume may change (it blamed the run's config.yaml alone).
	if r := kiln(t, dir, "train", "--run-dir", filepath.Join(dir, "stopped"), "--resume", "--schedule", "step"); r.code != 2 ||
		!strings.Contains(r.stderr, "with --schedule given: a resume changes only --run-dir") {
		t.Errorf("a resume with --schedule step: exit %d, %q", r.code, r.stderr)
	}
	// A flag out of range is its own problem, not the other flags'.
	if r := kiln(t, dir, "train", "--run-dir", filepath.Join(dir, "stopped"), "--resume", "--lr", "0.02", "--stop-after-epoch", "7"); r.code != 2 ||
		!strings.Contains(r.stderr, "--stop-after-epoch 7") || strings.Contains(r.stderr, "with --lr given") {
		t.Errorf("a resume with --stop-after-epoch past the epochs: exit %d, %q", r.code, r.stderr)
	}
	// Without config.yaml the flags are the whole configuration: with none
	// given, the settings are unknown, and the refusal says so.
	bare := filepath.Join(dir, "bare")
	if err := os.CopyFS(bare, os.DirFS(filepath.Join(dir, "stopped"))); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(bare, "config.yaml"))
	if r := kiln(t, dir, "train", "--run-dir", bare, "--resume"); r.code == 0 || !strings.Contains(r.stderr, "has no config.yaml") ||
		!strings.Contains(r.stderr, "the checkpoint is there") {
		t.Errorf("a resume without config.yaml: exit %d, %q", r.code, r.stderr)
	}
	// An empty one (a power cut's) is no configuration either: its defaults
	// were taken for the run's, and the refusal blamed flags never given.
	os.WriteFile(filepath.Join(bare, "config.yaml"), nil, 0o644)
	if r := kiln(t, dir, "train", "--run-dir", bare, "--resume"); r.code != 2 || !strings.Contains(r.stderr, "config.yaml is empty") {
		t.Errorf("a resume with an empty config.yaml: exit %d, %q", r.code, r.stderr)
	}
	// Given the first command's flags, as the refusal says, the run goes on
	// and has its config.yaml again, which eval reads the data set from.
	os.Remove(filepath.Join(bare, "config.yaml"))
	mustRun(t, dir, append(args("bare"), "--resume")...)
	mustRun(t, dir, "eval", "--run", bare)
	// The console's level is not the run's: a resume may quiet it.
	mustRun(t, dir, "train", "--run-dir", filepath.Join(dir, "stopped"), "--resume", "--log-level", "warn")
	if !sameLastWeights(t, filepath.Join(dir, "straight"), filepath.Join(dir, "stopped")) {
		t.Error("the run resumed with no settings but --log-level ends with other weights than the straight run")
	}
	// Finished: a resume says so, and one asking for more epochs is refused
	// rather than answered as if it had trained them.
	if r := mustRun(t, dir, "train", "--run-dir", filepath.Join(dir, "stopped"), "--resume", "--threads", "1"); !strings.Contains(r.stdout, "nothing to resume") {
		t.Errorf("a finished run resumed: %q", r.stdout)
	}
	// It needs no data: a finished run whose data set has gone (or that
	// an older Kiln ran with settings refused since) still answers.
	if r := mustRun(t, dir, "train", "--run-dir", filepath.Join(dir, "stopped"), "--resume", "--data-dir", filepath.Join(dir, "gone")); !strings.Contains(r.stdout, "nothing to resume") {
		t.Errorf("a finished run resumed without its data: %q", r.stdout)
	}
	if r := kiln(t, dir, "train", "--run-dir", filepath.Join(dir, "stopped"), "--resume", "--epochs", "3"); r.code != 2 ||
		!strings.Contains(r.stderr, "a finished run is not continued") || !strings.Contains(r.stderr, "epochs: 2 → 3") {
		t.Errorf("a finished run resumed with --epochs 3: exit %d, %q", r.code, r.stderr)
	}
}

// sameLastWeights reports whether two run directories ended with the same
// last.safetensors, byte for byte.
func sameLastWeights(t *testing.T, a, b string) bool {
	t.Helper()
	want, err := os.ReadFile(filepath.Join(a, trainer.LastWeights))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(b, trainer.LastWeights))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(got, want)
}

// A run of an older Kiln, whose config.yaml keeps a setting nothing read
// (gamma under cosine, dropout on mlp), resumes: the file's inert
// settings are left out with a warning, where they were refused and the
// checkpoint could never be resumed; given as flags they are refused.
func TestResumeOfAnOlderRunWithInertSettings(t *testing.T) {
	csv := faultCSV(t)
	dir := filepath.Join(t.TempDir(), "run")
	args := append(faultArgs(csv, dir), "--schedule", "cosine", "--stop-after-epoch", "1")
	mustRun(t, "", args...)
	f, err := os.OpenFile(filepath.Join(dir, "config.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("gamma: 0.5\ndropout: 0.3\n")
	f.Close()
	r := mustRun(t, "", "train", "--run-dir", dir, "--resume")
	if !strings.Contains(r.stderr, "left out: nothing reads it") || !strings.Contains(r.stderr, "gamma") {
		t.Errorf("no warning that gamma was left out:\n%s", r.stderr)
	}
	if r := kiln(t, "", append(faultArgs(csv, filepath.Join(t.TempDir(), "new")), "--schedule", "cosine", "--gamma", "0.5")...); r.code != 2 {
		t.Errorf("--gamma under cosine as a flag: exit %d\n%s", r.code, r.stderr)
	}
}

// An Adam run (nesterov false, which config.yaml left out) resumes from
// its run directory alone, also from a config.yaml of an older Kiln
// without the key; an SGD run at momentum 0 reads back as it was.
func TestResumeOfARunWithoutNesterov(t *testing.T) {
	csv := faultCSV(t)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"adam", []string{"--optimizer", "adam"}},
		{"plain sgd", []string{"--momentum", "0", "--nesterov=false"}},
	} {
		for _, older := range []bool{false, true} {
			dir := filepath.Join(t.TempDir(), "run")
			mustRun(t, "", append(append(faultArgs(csv, dir), c.args...), "--stop-after-epoch", "1")...)
			cfg := filepath.Join(dir, "config.yaml")
			b, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "nesterov: false\n") {
				t.Errorf("%s: config.yaml does not say nesterov: false:\n%s", c.name, b)
			}
			if older {
				os.WriteFile(cfg, []byte(strings.ReplaceAll(string(b), "nesterov: false\n", "")), 0o644)
			}
			if r := kiln(t, "", "train", "--run-dir", dir, "--resume"); r.code != 0 {
				t.Errorf("%s (older config.yaml %v): resume exit %d\n%s", c.name, older, r.code, r.stderr)
			}
		}
	}
}

// The first command given again with --resume, its --config included (as a
// requeued job script does), continues the run: with an optimiser other
// than the model's recipe's, or SGD without momentum, it was refused ("lr:
// 0.001 → 0.05", "nesterov true: needs momentum > 0"), the optimiser's own
// defaults left out of the file's reading on every resume.
func TestResumeWithTheSameConfigFile(t *testing.T) {
	needMNIST(t)
	dir := t.TempDir()
	for name, yaml := range map[string]string{"adamw": "optimizer: adamw\n", "sgd0": "momentum: 0\n"} {
		cfg := filepath.Join(dir, name+".yaml")
		os.WriteFile(cfg, []byte("model: mlp\nsubset: 0.02\nepochs: 2\n"+yaml), 0o644)
		args := func(run string) []string {
			return []string{"train", "--config", cfg, "--device", "cpu", "--threads", "1", "--run-dir", filepath.Join(dir, name+run)}
		}
		mustRun(t, dir, args("-straight")...)
		mustRun(t, dir, append(args("-stopped"), "--stop-after-epoch", "1")...)
		mustRun(t, dir, append(args("-stopped"), "--resume")...)
		if !sameLastWeights(t, filepath.Join(dir, name+"-straight"), filepath.Join(dir, name+"-stopped")) {
			t.Errorf("%s: the run resumed with its --config ends with other weights than the straight run", name)
		}
	}
}
