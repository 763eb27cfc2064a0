package plots

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/trainer"
)

// The rebuilt schedule ends where the run did (stopped early at step 20 of
// a planned 50), not at the configured end.
func TestRebuiltLREndsWithTheRun(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, trainer.ConfigFile), []byte("schedule: onecycle\nepochs: 5\nlr: 0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ms := []trainer.MetricsRecord{{Split: "train", Epoch: 1, Step: 10}, {Split: "val", Epoch: 2, Step: 20}, {Split: "train", Epoch: 2, Step: 20}}
	s, ok, err := rebuiltLR(dir, ms)
	if err != nil || !ok || len(s.X) == 0 {
		t.Fatalf("rebuiltLR: %v %v %d points", ok, err, len(s.X))
	}
	if last := s.X[len(s.X)-1]; last != 20 {
		t.Fatalf("the schedule is drawn to step %v; the run stopped at 20", last)
	}
}

// A regression sample's caption fits its cell whole, with fewer digits
// where it must.
func TestRegressionCaptionFits(t *testing.T) {
	for _, c := range []struct {
		pred, target float64
		want         string
	}{
		{-0.0113, -0.0199, "-0.011/-0.02"},
		{-0.979, -0.913, "-0.98/-0.91"},
		{1.5, 2, "1.5/2"},
	} {
		if got := regressionCaption(c.pred, c.target, 12); got != c.want {
			t.Errorf("%v/%v in 12 characters: %q, want %q", c.pred, c.target, got, c.want)
		}
	}
}

// The legend goes where the curves do not end: rising curves (accuracy)
// put it at the bottom, falling ones (loss) at the top.
func TestLegendAwayFromTheCurvesEnds(t *testing.T) {
	rising := []Series{{X: []float64{1, 2, 3}, Y: []float64{0.1, 0.5, 0.9}}, {X: []float64{1, 3}, Y: []float64{0.2, 0.85}}}
	falling := []Series{{X: []float64{1, 2, 3}, Y: []float64{2.3, 1, 0.3}}}
	if !endsHigh(rising, 0, 1) || endsHigh(falling, 0, 2.5) {
		t.Fatalf("endsHigh: rising %v, falling %v", endsHigh(rising, 0, 1), endsHigh(falling, 0, 2.5))
	}
}

// kiln plot of a tune directory points to its trials.
func TestWriteRunOfATunePointsToItsTrials(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tune.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteRun(dir); err == nil || !strings.Contains(err.Error(), "is a tune: plot one of its trials") {
		t.Fatalf("WriteRun of a tune: %v", err)
	}
}
