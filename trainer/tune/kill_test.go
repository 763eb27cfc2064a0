package tune

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kiln-ml/kiln/trainer"
)

// A halving tune of two trials whose second (lr 1.5e-4 against 0.042,
// search seed 12) is stopped at the first rung, step 4 of 30: mid-epoch,
// so the checkpoint written at the stop is not one a run can continue from.
func stoppingTune(t *testing.T, dir string) *State {
	t.Helper()
	base := tinyBase(t)
	base.Epochs = 2
	set := Settings{Strategy: "halving", Trials: 2, Metric: "val_loss", Seed: 12, Eta: 2, MinResource: 4, Unit: "steps"}
	tu, err := Start(dir, base, mustSpace(t, "lr: {min: 1e-4, max: 0.3, scale: log}"), set)
	if err != nil {
		t.Fatal(err)
	}
	tu.Objective = realTrainer.Objective()
	st, err := tu.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Trials[0].Status != Done || st.Trials[1].Status != Stopped || st.Trials[1].Steps != 4 {
		t.Fatalf("the straight tune: trial 001 %s, trial 002 %s after %d steps; want done, then stopped after 4",
			st.Trials[0].Status, st.Trials[1].Status, st.Trials[1].Steps)
	}
	return cloneState(t, st)
}

func cloneState(t *testing.T, st *State) *State {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var c State
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// rewind puts trial 002 back where a SIGKILL leaves it while its run ends:
// tune.json says running (the stop rung recorded, no figures yet) and, unless
// the kill came after the run's summary.json, its run has no test record and
// no summary.
func rewind(t *testing.T, dir string, keepSummary bool) {
	t.Helper()
	st, err := LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	tr := st.Trials[1]
	tr.Status, tr.Metric, tr.Metrics, tr.Epochs, tr.Steps, tr.Seconds, tr.Finished = Running, nil, nil, 0, 0, 0, ""
	if err := st.save(dir); err != nil {
		t.Fatal(err)
	}
	if keepSummary {
		return
	}
	run := filepath.Join(dir, tr.Dir)
	if err := os.Remove(filepath.Join(run, trainer.SummaryFile)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(run, trainer.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var kept []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"split":"test"`)) {
			kept = append(kept, line...)
		}
	}
	if len(kept) == len(b) {
		t.Fatal("trial 002's metrics.jsonl has no test record to take away")
	}
	if err := os.WriteFile(filepath.Join(run, trainer.MetricsFile), kept, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(run, trainer.CheckpointFile)); err != nil {
		t.Fatalf("the stopped trial wrote no checkpoint at its stop: %v", err)
	}
}

// sameRecords fails t unless every trial of got ended as in want, timings
// aside (which must be there).
func sameRecords(t *testing.T, got, want *State) {
	t.Helper()
	for i, g := range got.Trials {
		if x, y := figures(t, g), figures(t, want.Trials[i]); x != y {
			t.Errorf("trial %s resumed to\n%s\nthe straight tune has\n%s", g.Name(), x, y)
		}
		if !(g.Seconds > 0) || g.Finished == "" {
			t.Errorf("trial %s: %v seconds, finished %q", g.Name(), g.Seconds, g.Finished)
		}
	}
	if !reflect.DeepEqual(got.Rungs, want.Rungs) {
		t.Errorf("rungs %s, want %s", mustMarshal(t, got.Rungs), mustMarshal(t, want.Rungs))
	}
}

// figures is what a trial's record says of its end, timings aside.
func figures(t *testing.T, tr *Trial) string {
	return mustMarshal(t, map[string]any{"status": tr.Status, "metric": tr.Metric, "metrics": tr.Metrics,
		"epochs": tr.Epochs, "steps": tr.Steps, "rung": tr.Rung, "stop_at": tr.StopAt, "error": tr.Error})
}

func resume(t *testing.T, dir string) *State {
	t.Helper()
	tu, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	tu.Objective = realTrainer.Objective()
	st, err := tu.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	disk, err := LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustMarshal(t, disk.Trials), mustMarshal(t, st.Trials); a != b {
		t.Errorf("tune.json holds\n%s\nbut the tune ended with\n%s", a, b)
	}
	return st
}

// A kill while a trial successive halving stopped runs its final evaluation
// leaves tune.json saying the trial stopped at a rung and its run directory
// without the run's end. --resume must not take that directory for the
// trial's result: it redoes the run to its stop, and ends with the figures
// of a tune that ran straight through. A kill after the run wrote its
// summary, before the tune recorded it, needs no run, only the record.
func TestResumeFinishesAStoppedTrialKilledBeforeItsEnd(t *testing.T) {
	dir := t.TempDir()
	want := stoppingTune(t, dir)
	for _, c := range []struct {
		name        string
		keepSummary bool
	}{{"killed before the tune recorded the end", true}, {"killed in the final evaluation", false}} {
		t.Run(c.name, func(t *testing.T) {
			rewind(t, dir, c.keepSummary)
			sameRecords(t, resume(t, dir), want)
		})
	}
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
