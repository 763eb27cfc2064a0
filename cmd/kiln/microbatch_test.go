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
	if r := kiln(t, dir, "train", "--dataset", "mnist", "--micro-batch", "-1", "--run-dir", "neg"); r.code != 2 ||
		!strings.Contains(r.stderr, "micro") {
		t.Errorf("--micro-batch -1: exit %d, %q", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"train", "--dataset", "mnist", "--model", "cnn", "--subset", "0.01", "--epochs", "1", "--micro-batch", "8", "--device", "cpu", "--run-dir", "bn"},
		{"bench", "--model", "cnn", "--micro-batch", "8", "--seconds", "0", "--steps", "1"},
	} {
		if r := kiln(t, dir, args...); r.code == 0 || !strings.Contains(r.stderr, "batch norm") {
			t.Errorf("%s: exit %d, %q", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}
