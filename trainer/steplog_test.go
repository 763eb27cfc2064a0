package trainer

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// stepRecords are the train_step records of a run directory.
func stepRecords(t *testing.T, dir string) []MetricsRecord {
	var out []MetricsRecord
	for _, r := range readJSONLines[MetricsRecord](t, filepath.Join(dir, MetricsFile)) {
		if r.Split == StepSplit {
			out = append(out, r)
		}
	}
	return out
}

// --log-every 5 with 16 steps an epoch, 4 epochs: a record at every fifth
// step, whose loss and accuracy are those of its five steps; a run
// interrupted (at a validation, step 25) and resumed holds the same records
// once each, and the same TensorBoard scalars, as a straight run.
func TestStepRecordsEveryNStepsSurviveResume(t *testing.T) {
	c := blobConfig()
	c.ValEvery, c.LogEvery = 5, 5
	splits := blobSplits(t)
	straight := t.TempDir()
	var epochLoss []float64
	tr := newBlobTrainer(t, c, straight, false)
	tr.Callbacks.OnEpochEnd = func(r MetricsRecord) bool { epochLoss = append(epochLoss, r.Loss); return false }
	if _, err := tr.Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	recs := stepRecords(t, straight)
	if len(recs) != 12 {
		t.Fatalf("%d step records, want 12 (steps 5, 10, …, 60)", len(recs))
	}
	for i, r := range recs {
		if r.Step != 5*(i+1) || r.Accuracy == nil || *r.Accuracy < 0 || *r.Accuracy > 1 || r.ImagesPS <= 0 || r.LR <= 0 ||
			math.Abs(r.Epoch-float64(r.Step)/16) > 1e-12 {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	// Steps 1–15 are in records 5, 10, 15 (five steps of 32 each) and the
	// first epoch's mean is over its 16 steps: the three windows' mean is
	// within a step's share of it.
	first := (recs[0].Loss + recs[1].Loss + recs[2].Loss) / 3
	if math.Abs(first-epochLoss[0]) > 0.25*epochLoss[0] || recs[11].Loss >= recs[0].Loss {
		t.Errorf("windows' loss %v (first epoch %v), last %v", first, epochLoss[0], recs[11].Loss)
	}

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	tr = newBlobTrainer(t, c, dir, false)
	tr.Callbacks.OnValidation = func(r MetricsRecord) bool {
		if r.Step == 25 {
			cancel()
		}
		return false
	}
	if _, err := tr.Fit(ctx, splits); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v, want ErrInterrupted", err)
	}
	if _, err := newBlobTrainer(t, c, dir, true).Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	if want, got := metricsOf(t, straight), metricsOf(t, dir); !slices.Equal(want, got) {
		t.Fatalf("metrics.jsonl after resume:\n%s\nuninterrupted:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	scalars := scalarsOf(t, dir)
	if want := scalarsOf(t, straight); !slices.Equal(want, scalars) {
		t.Fatalf("TensorBoard scalars after resume:\n%v\nuninterrupted:\n%v", scalars, want)
	}
	if !slices.ContainsFunc(scalars, func(s string) bool { return strings.HasPrefix(s, "train_step/accuracy@60=") }) {
		t.Errorf("no train_step/accuracy scalar at step 60 in %v", scalars)
	}
}

func TestNoStepRecordsByDefault(t *testing.T) {
	c := blobConfig()
	c.Epochs = 1
	dir := t.TempDir()
	if _, err := newBlobTrainer(t, c, dir, false).Fit(context.Background(), blobSplits(t)); err != nil {
		t.Fatal(err)
	}
	if recs := stepRecords(t, dir); len(recs) != 0 {
		t.Errorf("%d step records without --log-every", len(recs))
	}
}

// Under three ranks the step records hold every rank's figures (summed by
// an all-reduce at each record), as one process's, and rank 0 alone writes.
func TestStepRecordsOfRanksAreGlobal(t *testing.T) {
	every := func(_ int, c *Config) { c.LogEvery = 4 }
	one, _, errs := fitRanks(t, []World{Solo{}}, every)
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	trs, _, errs := fitRanks(t, newMemWorlds(3), every)
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	want, got := stepRecords(t, one[0].Run.Path), stepRecords(t, trs[0].Run.Path)
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("%d step records under 3 ranks, %d in one process", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.Step != w.Step || math.Abs(g.Loss-w.Loss) > 1e-5*w.Loss || math.Abs(*g.Accuracy-*w.Accuracy) > 1e-9 {
			t.Errorf("record %d: step %d loss %v acc %v; one process: step %d loss %v acc %v",
				i, g.Step, g.Loss, *g.Accuracy, w.Step, w.Loss, *w.Accuracy)
		}
	}
}
