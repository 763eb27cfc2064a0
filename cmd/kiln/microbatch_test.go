package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --micro-batch trains (config.yaml records it, kiln bench --json too); a
// negative one, or one for a model with batch norm, is refused with a
// message that names it.
func TestMicroBatchFlag(t *testing.T) {
	dir := t.TempDir()
	run := func(micro string, more ...string) []string {
		return append([]string{"train", "--dataset", "mnist", "--model", "gmlp", "--hidden", "16", "--depth", "1",
			"--subset", "0.01", "--epochs", "2", "--batch", "32", "--micro-batch", micro, "--device", "cpu", "--run-dir", "r"},
			more...)
	}
	mustRun(t, dir, run("8", "--stop-after-epoch", "1")...)
	if cfg, _ := os.ReadFile(filepath.Join(dir, "r", "config.yaml")); !strings.Contains(string(cfg), "micro_batch: 8\n") {
		t.Errorf("config.yaml does not record micro_batch: 8:\n%s", cfg)
	}
	// The same steps in other pieces: a run resumes with another micro-batch.
	if r := mustRun(t, dir, run("4", "--resume")...); !strings.Contains(r.stdout, "test accuracy") {
		t.Errorf("resumed with --micro-batch 4:\n%s", r.stdout)
	}
	r := mustRun(t, dir, "bench", "--model", "gmlp", "--batch", "8", "--micro-batch", "4", "--seconds", "0", "--steps", "1", "--json")
	if !strings.Contains(r.stdout, `"micro_batch":4`) {
		t.Errorf("kiln bench --json with --micro-batch 4:\n%s", r.stdout)
	}
	if r := kiln(t, dir, "train", "--dataset", "mnist", "--micro-batch", "-2", "--run-dir", "neg"); r.code != 2 ||
		!strings.Contains(r.stderr, "micro") {
		t.Errorf("--micro-batch -2: exit %d, %q", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"train", "--dataset", "mnist", "--model", "cnn", "--subset", "0.01", "--epochs", "1", "--micro-batch", "8", "--device", "cpu", "--run-dir", "bn"},
		{"bench", "--model", "cnn", "--micro-batch", "8", "--seconds", "0", "--steps", "1"},
	} {
		// Named as given: a flag, not micro_batch (bench said the key).
		if r := kiln(t, dir, args...); r.code == 0 || !strings.Contains(r.stderr, "batch norm") || !strings.Contains(r.stderr, "leave --micro-batch at 0") {
			t.Errorf("%s: exit %d, %q", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

// By default (--micro-batch 0) Kiln picks the micro-batch: gMLP at batch 128
// on 32×32×3 runs in pieces of 32, and says so; -1 runs the batch whole; a
// model with batch norm is left whole, not refused.
func TestAutoMicroBatchInBench(t *testing.T) {
	dir := t.TempDir()
	bench := func(model, micro string) result {
		return mustRun(t, dir, "bench", "--model", model, "--batch", "128", "--input", "32x32x3", "--micro-batch", micro,
			"--seconds", "0", "--steps", "1", "--warmup", "0", "--json")
	}
	if r := bench("gmlp", "0"); !strings.Contains(r.stdout, `"micro_batch":32`) {
		t.Errorf("gmlp b128 32x32x3 by default: %s", r.stdout)
	}
	if r := bench("gmlp", "-1"); strings.Contains(r.stdout, `"micro_batch"`) {
		t.Errorf("gmlp with --micro-batch -1: %s", r.stdout)
	}
	if r := bench("cnn", "0"); strings.Contains(r.stdout, `"micro_batch"`) {
		t.Errorf("cnn by default: %s", r.stdout)
	}
	r := mustRun(t, dir, "bench", "--model", "gmlp", "--batch", "128", "--input", "32x32x3", "--seconds", "0",
		"--steps", "1", "--warmup", "0")
	if !strings.Contains(r.stdout, "micro-batch 32") {
		t.Errorf("kiln bench's header does not name the micro-batch:\n%s", r.stdout)
	}
}
