package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// Per-class figures of a known confusion matrix (rows: true class), worked
// by hand: class 0 has 5 of its 6 samples right and 7 predictions, class 1
// has 3 of 6 and 4 predictions, class "c" has no samples and 1 prediction.
func TestEvalClassFigures(t *testing.T) {
	out := &evalOutput{}
	out.setClassFigures([][]int{{5, 1, 0}, {2, 3, 1}, {0, 0, 0}}, []string{"a", "b", "c"})
	want := []classFigures{
		{"a", 5.0 / 7, 5.0 / 6, 10.0 / 13, 6},
		{"b", 3.0 / 4, 3.0 / 6, 6.0 / 10, 6},
		{"c", 0, 0, 0, 0},
	}
	close := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
	for i, w := range want {
		g := out.PerClass[i]
		if g.Class != w.Class || g.Support != w.Support || !close(g.Precision, w.Precision) || !close(g.Recall, w.Recall) || !close(g.F1, w.F1) {
			t.Errorf("class %d: %+v, want %+v", i, g, w)
		}
	}
	if !close(*out.MacroPrecision, (5.0/7+0.75)/3) || !close(*out.MacroRecall, (5.0/6+0.5)/3) || !close(*out.MacroF1, (10.0/13+0.6)/3) {
		t.Errorf("macro P %v R %v F1 %v", *out.MacroPrecision, *out.MacroRecall, *out.MacroF1)
	}
	b, err := json.Marshal(out)
	if err != nil || !strings.Contains(string(b), `"per_class":[{"class":"a","precision":0.714`) || !strings.Contains(string(b), `"macro_f1":0.45`) {
		t.Errorf("JSON %s (%v)", b, err)
	}
}

// kiln eval --json on a trained run: one figure set per class whose
// supports add up to the count, and the readable line's macro figures.
func TestEvalJSONPerClass(t *testing.T) {
	run := tinyRun(t)
	var out evalOutput
	if err := json.Unmarshal([]byte(mustRun(t, workDir, "eval", "--run", run, "--json").stdout), &out); err != nil {
		t.Fatal(err)
	}
	support, recall := 0, 0.0
	for _, c := range out.PerClass {
		support += c.Support
		recall += c.Recall
	}
	if len(out.PerClass) != 10 || support != out.Count || out.MacroRecall == nil || math.Abs(recall/10-*out.MacroRecall) > 1e-12 {
		t.Errorf("per_class %+v (count %d), macro recall %v", out.PerClass, out.Count, out.MacroRecall)
	}
	if line := mustRun(t, workDir, "eval", "--run", run).stdout; !strings.Contains(line, "macro P/R/F1") {
		t.Errorf("readable eval: %q", line)
	}
}
