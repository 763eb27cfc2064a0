package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/tune"
)

// killingStrace is strace, when it is installed and may trace here: it
// SIGKILLs a process at the rename of a chosen file, that is at the moment
// that file was to appear.
func killingStrace(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed (apt-get install strace): this test kills kiln at a chosen rename with strace's fault injection")
	}
	if out, err := exec.Command(path, "-f", "-qq", "-o", "/dev/null", "true").CombinedOutput(); err != nil {
		t.Skipf("strace cannot trace here (%v): %s", err, out)
	}
	return path
}

// A halving tune SIGKILLed as a trial that successive halving stopped writes
// its end (the checkpoint at the stop, the weights, then after the test
// evaluation the summary) resumes to the records of the same tune run
// straight through: status, stop rung, every metric including the test
// figures, epochs and steps; and a time.
func TestTuneResumesAHalvingTrialKilledAsItEnds(t *testing.T) {
	needMNIST(t)
	strace := killingStrace(t)
	dir := t.TempDir()
	// Search seed 12 draws lr 0.042, then 1.5e-4: trial 002 is behind at
	// the first rung, step 4 of 30, mid-epoch.
	args := func(tuneDir string) []string {
		a := []string{"tune", "--param", "lr=1e-4..0.3:log", "--search-seed", "12", "--strategy", "halving", "--trials", "2",
			"--eta", "2", "--min-resource", "4", "--rung-unit", "steps", "--metric", "val_loss", "--run-dir", tuneDir}
		a = append(a, tinyTune...)
		return append(a, "--epochs", "2", "--threads", "1")
	}
	straight := filepath.Join(dir, "straight")
	mustRun(t, dir, args(straight)...)
	want, err := tune.LoadState(straight)
	if err != nil {
		t.Fatal(err)
	}
	if s := want.Trials[1]; s.Status != tune.Stopped || s.Steps != 4 {
		t.Fatalf("the straight tune's trial 002: %s after %d steps, want stopped after 4", s.Status, s.Steps)
	}
	for _, file := range []string{trainer.CheckpointFile, trainer.LastWeights, trainer.SummaryFile} {
		t.Run(file, func(t *testing.T) {
			tuneDir := filepath.Join(dir, "killed-at-"+file)
			target := filepath.Join(tuneDir, "trials", "002", file)
			cmd := exec.Command(strace, append([]string{"-f", "-qq", "-o", "/dev/null", "-e", "trace=renameat,renameat2",
				"-e", "inject=renameat,renameat2:error=EIO:signal=KILL", "-P", target, kilnBin}, args(tuneDir)...)...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("kiln was not killed at the rename of %s (%v):\n%s", target, err, out)
			}
			killed, err := tune.LoadState(tuneDir)
			if err != nil {
				t.Fatal(err)
			}
			if s := killed.Trials[1]; s.Status != tune.Running || s.StopAt != 1 {
				t.Fatalf("at the kill trial 002 is %s (stop_at %d), want running, stopped at rung 1", s.Status, s.StopAt)
			}
			r := mustRun(t, dir, "tune", "--run-dir", tuneDir, "--resume")
			got, err := tune.LoadState(tuneDir)
			if err != nil {
				t.Fatal(err)
			}
			// The resume (no --threads) runs trials on the tune's thread
			// count, not the machine's: the bits depend on it.
			for _, tr := range got.Trials {
				if cfg, err := os.ReadFile(filepath.Join(tuneDir, tr.Dir, "config.yaml")); err != nil || !strings.Contains(string(cfg), "\nthreads: 1\n") {
					t.Errorf("trial %s resumed with another thread count (%v):\n%s", tr.Name(), err, cfg)
				}
			}
			for i, g := range got.Trials {
				w := want.Trials[i]
				if x, y := trialFigures(t, g), trialFigures(t, w); x != y {
					t.Errorf("trial %s resumed to\n%s\nthe straight tune has\n%s", g.Name(), x, y)
				}
				if !(g.Seconds > 0) {
					t.Errorf("trial %s: %v seconds", g.Name(), g.Seconds)
				}
			}
			if !reflect.DeepEqual(got.Rungs, want.Rungs) {
				t.Errorf("rungs %s, want %s", mustJSON(t, got.Rungs), mustJSON(t, want.Rungs))
			}
			if !strings.Contains(r.stdout, "best: trial 001") {
				t.Errorf("stdout:\n%s", r.stdout)
			}
		})
	}
}

// trialFigures is what a trial's record says of its end, timings aside.
func trialFigures(t *testing.T, tr *tune.Trial) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"status": tr.Status, "metric": tr.Metric, "metrics": tr.Metrics,
		"epochs": tr.Epochs, "steps": tr.Steps, "rung": tr.Rung, "stop_at": tr.StopAt, "error": tr.Error})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
