package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kiln-ml/kiln/trainer"
)

// The filter reads the level of zerolog's console lines, coloured or not.
func TestLevelFilter(t *testing.T) {
	for _, noColor := range []bool{false, true} {
		var out bytes.Buffer
		log := zerolog.New(zerolog.ConsoleWriter{Out: levelFilter{out: &out, min: zerolog.InfoLevel}, NoColor: noColor}).
			With().Timestamp().Logger()
		log.Debug().Msg("hidden")
		log.Info().Int("n", 1).Msg("shown")
		log.Warn().Msg("warned")
		log.Log().Msg("no level")
		got := out.String()
		if strings.Contains(got, "hidden") || !strings.Contains(got, "shown") || !strings.Contains(got, "warned") ||
			!strings.Contains(got, "no level") {
			t.Errorf("noColor %v: %q", noColor, got)
		}
	}
	if l := lineLevel([]byte("\x1b[90m04:52:00\x1b[0m \x1b[33mWRN\x1b[0m \x1b[1mx\x1b[0m\n")); l != zerolog.WarnLevel {
		t.Errorf("level %v, want warn", l)
	}
}

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
