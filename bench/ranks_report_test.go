package bench

import (
	"strings"
	"testing"
)

// The scaling section shows the ranks table: each model's 1- and 2-rank
// images/s, the speed-up, the 2-rank comm share and the all-reduce's bytes;
// a failed run is a footnote, a skipped scan says why.
func TestRanksTableInTheReport(t *testing.T) {
	sc := &Scaling{BatchModel: "lenet", BatchInput: "28x28x1", Ranks: []RankScaling{
		{Model: "lenet", Input: "28x28x1", Batch: 64, Points: []RankPoint{
			{Ranks: 1, Kiln: 10000}, {Ranks: 2, Kiln: 15000, CommShare: 0.25, AllreduceBytesPerStep: 246824}}},
		{Model: "gmlp", Input: "32x32x3", Batch: 128, Points: []RankPoint{
			{Ranks: 1, Kiln: 500}, {Ranks: 2, KilnError: "rank 1 died"}}},
	}}
	reportHas(t, &Report{Scaling: sc},
		"| model | input | global batch | 1 rank img/s | 2 ranks img/s | speed-up | comm share | all-reduce a step |",
		"| lenet | 28x28x1 | 64 | 10000 | 15000 | 1.50× | 25% | 241 KiB |",
		"| gmlp | 32x32x3 | 128 | 500 | n/a¹ | — | — | — |",
		"Kiln gmlp 2 ranks: rank 1 died")

	var md strings.Builder
	sc.Ranks, sc.RanksSkipped = nil, "no mpirun"
	writeMarkdown(&md, &Report{Scaling: sc}, "m", nil)
	if !strings.Contains(md.String(), "Ranks: not measured (no mpirun).") || strings.Contains(md.String(), "1 rank img/s") {
		t.Errorf("a skipped ranks scan:\n%s", md.String())
	}
}

// reportHas fails unless rep's Markdown report holds every line of wants.
func reportHas(t *testing.T, rep *Report, wants ...string) {
	t.Helper()
	var md strings.Builder
	writeMarkdown(&md, rep, "m", nil)
	for _, want := range wants {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
}
