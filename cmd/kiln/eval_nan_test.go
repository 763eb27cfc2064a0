package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine/safetensors"
	"github.com/kiln-ml/kiln/trainer"
)

// Issue 12, item 11: weights holding NaN are an error of kiln eval, not
// "loss NaN top-5 100.00%".
func TestEvalOfNaNWeightsIsAnError(t *testing.T) {
	csv := faultCSV(t)
	dir := filepath.Join(t.TempDir(), "run")
	mustRun(t, "", faultArgs(csv, dir)...)
	path := filepath.Join(dir, trainer.LastWeights)
	tensors, meta, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range tensors {
		w.SetAt(0, math.NaN())
	}
	if err := safetensors.WriteFile(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"eval", "--run", dir}, {"eval", "--run", dir, "--json"}} {
		r := kiln(t, "", args...)
		if r.code == 0 || !strings.Contains(r.stderr, "not finite") {
			t.Fatalf("kiln %v: exit %d\nstdout %s\nstderr %s", args, r.code, r.stdout, r.stderr)
		}
	}
}

// And of kiln predict: no probabilities made of NaN.
func TestPredictWithNaNWeightsIsAnError(t *testing.T) {
	run := tinyRun(t)
	dir := t.TempDir()
	tensors, meta, err := safetensors.ReadFile(filepath.Join(run, trainer.LastWeights))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range tensors {
		w.SetAt(0, math.NaN())
	}
	weights := filepath.Join(dir, "nan.safetensors")
	if err := safetensors.WriteFile(weights, tensors, meta); err != nil {
		t.Fatal(err)
	}
	r := kiln(t, "", "predict", "--model", "lenet", "--weights", weights, "--dataset", "mnist", "--index", "0", "--count", "2")
	if r.code == 0 || !strings.Contains(r.stderr, "NaN or infinite") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
}

// Issue 12, item 8, for eval and predict: a model too wide for memory is
// refused before it is built.
func TestEvalOfATooWideModelIsRefused(t *testing.T) {
	needMNIST(t)
	weights := filepath.Join(t.TempDir(), "w.safetensors")
	if err := os.WriteFile(weights, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"eval"}, {"predict", "--index", "0"}} {
		r := kiln(t, "", append(args, "--model", "mlp", "--hidden", "100000000", "--dataset", "mnist", "--weights", weights)...)
		if r.code == 0 || !strings.Contains(r.stderr, "available") {
			t.Fatalf("kiln %v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
}

// An update that makes the weights NaN (a learning rate beyond float32, at
// an epoch's last step, with no validation to see it) stops the run before
// its checkpoint and last weights take them: they were written, and the
// run said "the last good checkpoint is kept".
func TestNaNWeightsAreNotCheckpointed(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	r := kiln(t, dir, "train", "--dataset", "csv", "--data-dir", faultCSV(t), "--model", "mlp", "--hidden", "8", "--epochs", "2",
		"--batch", "4096", "--val-fraction", "0", "--lr", "1e300", "--schedule", "constant", "--device", "cpu", "--no-visuals", "--run-dir", run)
	if r.code == 0 || !strings.Contains(r.stderr, "weights are not finite") {
		t.Fatalf("lr 1e300: exit %d, want the NaN weights named\n%s", r.code, r.stderr)
	}
	for _, name := range []string{"last.safetensors", "checkpoint.safetensors"} {
		if _, err := os.Stat(filepath.Join(run, name)); err == nil {
			t.Errorf("%s written with the NaN weights", name)
		}
	}
}
