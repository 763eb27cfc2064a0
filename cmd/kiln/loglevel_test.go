package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/trainer"
)

// kiln train: the layer table at the top and in model.json, a step line
// every --log-every steps, debug lines (visuals written) on the console only
// with --log-level debug, info lines hidden at warn, train.log keeping all.
func TestTrainConsoleLevelsAndStepLines(t *testing.T) {
	dir := t.TempDir()
	csv := writeCSV(t, dir, "s.csv", 200, 2)
	train := func(run string, extra ...string) string {
		t.Helper()
		args := append([]string{"train", "--dataset", "csv", "--data-dir", csv, "--model", "mlp", "--hidden", "8",
			"--epochs", "1", "--batch", "20", "--device", "cpu", "--threads", "1", "--run-dir", filepath.Join(dir, run)}, extra...)
		return mustRun(t, dir, args...).stderr
	}
	info := train("info", "--log-every", "3")
	// 144 training rows of 200 (val and test held out): 8 steps.
	n := 0
	for _, l := range strings.Split(info, "\n") {
		if strings.Contains(l, "train_loss") && !strings.Contains(l, "epoch done") {
			n++
		}
	}
	if n != 2 || !strings.Contains(info, "fc1 (Linear)") {
		t.Errorf("default console: %d step lines, table %v:\n%s", n, strings.Contains(info, "fc1 (Linear)"), info)
	}
	if strings.Contains(info, "visuals written") {
		t.Errorf("a debug line on the default console:\n%s", info)
	}
	for _, run := range []string{"info", "debug"} {
		if run == "debug" {
			if out := train(run, "--log-level", "debug"); !strings.Contains(out, "visuals written") {
				t.Errorf("--log-level debug: no debug line:\n%s", out)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(dir, run, trainer.LogFile)); !bytes.Contains(b, []byte("visuals written")) {
			t.Errorf("%s: train.log has no debug line", run)
		}
	}
	warn := train("warn", "--log-level", "warn")
	if strings.Contains(warn, "INF") || strings.Contains(warn, "Layer (type)") {
		t.Errorf("--log-level warn shows info:\n%s", warn)
	}
	m, err := trainer.ReadModelInfo(filepath.Join(dir, "warn"))
	if err != nil || m.Summary == nil || m.Summary.Params != 122 || len(m.Summary.Layers) != 7 {
		t.Errorf("model.json summary %+v (%v)", m.Summary, err)
	}
}
