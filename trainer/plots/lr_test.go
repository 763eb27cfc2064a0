package plots

import (
	"os"
	"path/filepath"
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
