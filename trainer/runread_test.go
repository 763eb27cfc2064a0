package trainer

import (
	"os"
	"path/filepath"
	"testing"
)

// RunWeights takes the weights the summary names; a summary it cannot read
// is an error, not a silent switch to best.safetensors (a summary of 3,000
// classes, over the size bound, made kiln eval score other weights).
func TestRunWeightsFollowsTheSummary(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{BestWeights, LastWeights} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	summary := filepath.Join(dir, SummaryFile)
	for _, tc := range []struct {
		summary string // "" for none
		want    string // "" for an error
	}{
		{"", BestWeights},
		{`{"weights":"last.safetensors"}`, LastWeights},
		{`{"weights":`, ""},
	} {
		os.Remove(summary)
		if tc.summary != "" {
			if err := os.WriteFile(summary, []byte(tc.summary), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := RunWeights(dir)
		if tc.want == "" {
			if err == nil {
				t.Errorf("summary %q: %s, want an error", tc.summary, got)
			}
		} else if err != nil || filepath.Base(got) != tc.want {
			t.Errorf("summary %q: %s, %v; want %s", tc.summary, got, err, tc.want)
		}
	}
}
