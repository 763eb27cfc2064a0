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
