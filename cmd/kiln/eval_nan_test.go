package main

import (
	"math"
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
