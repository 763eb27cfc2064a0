package tune

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/trainer"
)

// A trial that kept its best weights (--restore-best) is ranked by their
// validation, not by the last one, which early stopping makes the worse:
// a trial whose accuracy fell off fast was ranked below one that kept a
// lesser best.
func TestOutcomeIsTheKeptWeightsValidation(t *testing.T) {
	metrics := `{"step":10,"epoch":1,"split":"val","loss":0.9,"accuracy":0.3}
{"step":20,"epoch":2,"split":"val","loss":1.2,"accuracy":0.2}
{"step":20,"epoch":2,"split":"test","loss":0.95,"accuracy":0.28}
`
	for weights, want := range map[string]float64{trainer.BestWeights: 0.3, trainer.LastWeights: 0.2} {
		dir := t.TempDir()
		summary := `{"weights":"` + weights + `","best_epoch":1,"best_step":10,"steps":20,"epochs_run":2}`
		for name, body := range map[string]string{trainer.MetricsFile: metrics, trainer.SummaryFile: summary} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, err := OutcomeFromRunDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if out.Metrics["val_acc"] != want || out.Metrics["test_acc"] != 0.28 {
			t.Errorf("weights %s: val_acc %v test_acc %v, want %v and 0.28", weights, out.Metrics["val_acc"], out.Metrics["test_acc"], want)
		}
	}
}

// Opening a tune to resume it removes the temporary files of tune.json,
// results.csv and best.yaml that a kill left (they piled up), and nothing
// else.
func TestOpenRemovesTheTemporaryFilesOfKills(t *testing.T) {
	dir := t.TempDir()
	if _, err := Start(dir, trainer.DefaultConfig(), mustSpace(t, "lr: [0.01, 0.02]"), Settings{Strategy: "grid", Metric: "val_acc"}); err != nil {
		t.Fatal(err)
	}
	left := []string{".tune.json.tmp123", ".results.csv.tmp4", ".best.yaml.tmp56"}
	for _, name := range append(left, ".notes.txt.tmp7") {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range left {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".notes.txt.tmp7")); err != nil {
		t.Errorf("a temporary file not the tune's was removed: %v", err)
	}
}

// Trials of other data options get their own data: the cache's key failed
// to encode, and every trial trained on the first one's (--param
// subset=0.02,0.05 gave both 1080 samples).
func TestTrialDataFollowsTheirOptions(t *testing.T) {
	var b strings.Builder
	b.WriteString("a,b,y\n")
	for i := range 200 {
		fmt.Fprintf(&b, "%d,%d,%d\n", i%7, i%5, i%2)
	}
	csv := filepath.Join(t.TempDir(), "d.csv")
	if err := os.WriteFile(csv, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	o := NewTrainer()
	sizes := map[float64]int{}
	for _, subset := range []float64{0.25, 1} {
		c := trainer.DefaultConfig()
		c.Dataset, c.DataDir, c.Subset = "csv", csv, subset
		s, err := o.data(c)
		if err != nil {
			t.Fatal(err)
		}
		sizes[subset] = s.Train.Len()
	}
	if sizes[0.25] >= sizes[1] {
		t.Errorf("training samples at subset 0.25 and 1: %v", sizes)
	}
}
