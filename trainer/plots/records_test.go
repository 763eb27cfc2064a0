package plots

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/trainer"
)

// Bad records in a run's files: each reader skips them, counts them and
// says so, and draws what is left.

func metricsJSON(step int, split string, loss float64) string {
	acc := 1 - loss/3
	b, _ := json.Marshal(trainer.MetricsRecord{Time: "t", Step: step, Epoch: float64(step) / 10, Split: split, Loss: loss, Accuracy: &acc, LR: 0.1, Wall: float64(step)})
	return string(b)
}

func writeRunFile(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWriteRunSkipsBadMetrics(t *testing.T) {
	dir := t.TempDir()
	lines := []string{
		metricsJSON(10, "train", 2),              // 1
		`null`,                                   // 2: not an object
		metricsJSON(20, "val", 1.5),              // 3
		`{"step":30,"split":"val",`,              // 4: garbage
		`{"step":"40","split":"val","loss":1}`,   // 5: wrong type
		`{"step":50,"split":"val","loss":NaN}`,   // 6: NaN is not JSON
		`{"step":60,"split":"val","loss":1e999}`, // 7: out of range
		`[1,2,3]`,                                // 8: not an object
		`{"loss":1}`,                             // 9: no step or split
		metricsJSON(30, "train", 1),              // 10
		`{"step":70,"split":"val","lo`,           // 11: torn, no newline
	}
	writeRunFile(t, dir, trainer.MetricsFile, strings.Join(lines, "\n"))
	rep, err := WriteRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	written(t, rep, LossPNG, AccuracyPNG, LRPNG)
	out := rep.String()
	for _, want := range []string{
		"metrics.jsonl: skipped 7 bad records (lines 2, 4, 5, 6, 7, 8, 9)",
		"the last line (11) cut short",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report does not say %q:\n%s", want, out)
		}
	}
}

func TestWriteRunSaysNothingOfAGoodFile(t *testing.T) {
	dir := t.TempDir()
	writeRunFile(t, dir, trainer.MetricsFile, metricsJSON(10, "train", 2)+"\n"+metricsJSON(10, "val", 2)+"\n")
	rep, err := WriteRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rep.String(), "bad record") {
		t.Errorf("notes for a good run:\n%s", rep)
	}
}

// histogramJSON is one histograms.jsonl line with one weight.
func histogramJSON(step int) string {
	edges := make([]float64, 5)
	for i := range edges {
		edges[i] = -1 + 0.5*float64(i)
	}
	b, _ := json.Marshal(trainer.HistogramRecord{Step: step, Epoch: 1, Params: []trainer.ParamHistogram{
		{Name: "w", Kind: "weight", Min: -1, Max: 1, Edges: edges, Counts: []int{1, 5, 5, 1}},
	}})
	return string(b)
}

func TestWriteRunSkipsBadHistograms(t *testing.T) {
	dir := t.TempDir()
	writeRunFile(t, dir, trainer.MetricsFile, metricsJSON(10, "train", 2)+"\n")
	p := `{"name":"w","kind":"weight","min":-1,"max":1,`
	lines := []string{
		histogramJSON(10),             // 1
		`null`,                        // 2
		`{"step":20,"params":[null]}`, // 3: a null parameter
		`{"step":20,"params":[` + p + `"edges":[0,1],"counts":[1,2,3]}]}`,    // 4: counts do not fit the edges
		`{"step":20,"params":[` + p + `"edges":[0,null,2],"counts":[1,2]}]}`, // 5: a null edge
		`{"step":20,"params":[` + p + `"edges":[2,1,0],"counts":[1,2]}]}`,    // 6: edges going down
		`{"step":20,"params":[` + p + `"edges":[0,1,2],"counts":[1,-2]}]}`,   // 7: a negative count
		`{"step":20,"params":"w"}`, // 8
		histogramJSON(30),          // 9
		`{"step":40,`,              // 10: torn
	}
	writeRunFile(t, dir, trainer.HistogramsFile, strings.Join(lines, "\n"))
	rep, err := WriteRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rep.Skipped[HistogramsPNG]; ok {
		t.Errorf("histograms.png skipped: %s", rep)
	}
	if out := rep.String(); !strings.Contains(out, "histograms.jsonl: skipped 7 bad records (lines 2, 3, 4, 5, 6, 7, 8); the last line (10) cut short") {
		t.Errorf("the report does not say which histograms it skipped:\n%s", out)
	}
}

// visualsDoc is a small visuals.json: two filters, samples of 1×4×4, a 2×2
// confusion matrix, attention maps and SGU weights; bad parts are added by
// the tests.
func visualsDoc() map[string]any {
	px := make([]float64, 16)
	for i := range px {
		px[i] = float64(i) / 15
	}
	sample := func(i, label, pred int) map[string]any {
		return map[string]any{"index": i, "label": label, "pred": pred, "prob": 0.9, "shape": []int{1, 4, 4}, "pixels": px}
	}
	att := map[string]any{"layer": "cbam1.spatial", "kind": "cbam_spatial", "sample": 0, "shape": []int{2, 2}, "data": []float64{0.1, 0.9, 0.5, 0.3}}
	sgu := map[string]any{"layer": "blocks.0.sgu", "shape": []int{4, 4}, "data": px}
	return map[string]any{
		"step": 7, "classes": []string{"a", "b"},
		"filters":   map[string]any{"name": "conv1.weight", "shape": []int{2, 1, 2, 2}, "data": []float64{1, -1, 0.5, 0, -0.2, 0.3, 1, 0}},
		"samples":   []any{sample(0, 0, 1), sample(1, 1, 1)},
		"confusion": [][]int{{3, 1}, {0, 4}},
		"attention": []any{att},
		"sgu":       []any{sgu},
	}
}

func writeVisuals(t *testing.T, dir string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	writeRunFile(t, dir, trainer.VisualsFile, string(b))
}

func TestWriteRunSkipsBadVisualParts(t *testing.T) {
	dir := t.TempDir()
	writeRunFile(t, dir, trainer.MetricsFile, metricsJSON(10, "train", 2)+"\n")
	v := visualsDoc()
	good := v["samples"].([]any)
	v["samples"] = []any{good[0],
		map[string]any{"index": 2, "label": 0, "pred": 0, "shape": []int{1, 4, 4}, "pixels": []float64{1, 2, 3}}, // too few pixels
		map[string]any{"index": 3, "label": "cat", "pred": 0, "shape": []int{1, 4, 4}},                           // a label that is not a class
		nil,
		good[1]}
	v["attention"] = []any{map[string]any{"layer": "x", "sample": 0, "shape": []int{}, "data": []float64{}}, v["attention"].([]any)[0]}
	v["sgu"] = []any{map[string]any{"layer": "y", "shape": []int{2, 2}, "data": []float64{1, 2, 3}}, v["sgu"].([]any)[0]}
	writeVisuals(t, dir, v)
	rep, err := WriteRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{FiltersPNG, SamplesPNG, ConfusionPNG, AttentionPNG, SGUPNG} {
		if why, ok := rep.Skipped[name]; ok {
			t.Errorf("%s skipped: %s", name, why)
		}
	}
	want := "visuals.json: skipped 5 bad records (samples[1], samples[2], samples[3], attention[0], sgu[0])"
	if out := rep.String(); !strings.Contains(out, want) {
		t.Errorf("the report does not say %q:\n%s", want, out)
	}
	sw, sh := samplesSize(2, 4, 4)
	decodePNG(t, filepath.Join(dir, trainer.PlotsDir, SamplesPNG), sw, sh)
}

// Every part of visuals.json bad, and visuals.json not an object at all:
// the pictures are skipped and say why; nothing panics.
func TestWriteRunSurvivesABadVisualsFile(t *testing.T) {
	dir := t.TempDir()
	writeRunFile(t, dir, trainer.MetricsFile, metricsJSON(10, "train", 2)+"\n")
	for _, doc := range []string{
		`null`, `[]`, `"x"`, `{"step":`,
		`{"step":"x","classes":3,"filters":{"shape":[-1,-1,1,1],"data":[1]},"samples":{"a":1},"confusion":[[1,2],[3]],"attention":[{"shape":[1]}],"sgu":[{"shape":[4294967296,4294967296],"data":[]}]}`,
	} {
		writeRunFile(t, dir, trainer.VisualsFile, doc)
		rep, err := WriteRun(dir)
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		for _, name := range []string{FiltersPNG, SamplesPNG, ConfusionPNG} {
			if !strings.Contains(rep.Skipped[name], "visuals.json") && !strings.Contains(rep.Skipped[name], "no ") {
				t.Errorf("%s: %s skipped because %q", doc, name, rep.Skipped[name])
			}
		}
		if !strings.Contains(rep.String(), "visuals.json: ") {
			t.Errorf("%s: the report says nothing of visuals.json:\n%s", doc, rep)
		}
	}
}

// Kernels larger than a filter cell (and more of them than a real run
// keeps) still fit their picture.
func TestFiltersLargerThanACell(t *testing.T) {
	dir := t.TempDir()
	writeRunFile(t, dir, trainer.MetricsFile, metricsJSON(10, "train", 2)+"\n")
	v := visualsDoc()
	data := make([]float64, 3*100*60)
	for i := range data {
		data[i] = math.Sin(float64(i))
	}
	v["filters"] = map[string]any{"name": "big", "shape": []int{3, 1, 100, 60}, "data": data}
	writeVisuals(t, dir, v)
	rep, err := WriteRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if why, ok := rep.Skipped[FiltersPNG]; ok {
		t.Fatalf("filters skipped: %s", why)
	}
	w, h := filtersSize(3, 100, 60)
	w = max(w, textWidth(fmt.Sprintf("big: 3 filters 100x60, step %d", 7))+2*pad)
	decodePNG(t, filepath.Join(dir, trainer.PlotsDir, FiltersPNG), w, h)
}

// A config.yaml that cannot be read leaves the learning rate as recorded,
// and the report says why.
func TestWriteRunSaysWhyTheLRIsAsRecorded(t *testing.T) {
	dir := t.TempDir()
	writeRunFile(t, dir, trainer.MetricsFile, metricsJSON(10, "train", 2)+"\n"+metricsJSON(20, "train", 1)+"\n")
	writeRunFile(t, dir, trainer.ConfigFile, "epochs: [\n")
	rep, err := WriteRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	written(t, rep, LossPNG, AccuracyPNG, LRPNG)
	if out := rep.String(); !strings.Contains(out, "config.yaml") || !strings.Contains(out, "learning rate drawn as recorded") {
		t.Errorf("the report does not say why the learning rate is as recorded:\n%s", out)
	}
	// No config.yaml at all (a run copied without it) is no news.
	os.Remove(filepath.Join(dir, trainer.ConfigFile))
	if rep, err := WriteRun(dir); err != nil || len(rep.Notes) != 0 {
		t.Errorf("without config.yaml: %v\n%s", err, rep)
	}
}

// A run that diverged before its first epoch ended has only --log-every's
// step records (train_step): its loss and accuracy are drawn from them.
func TestWriteRunDrawsStepRecords(t *testing.T) {
	dir := t.TempDir()
	lines := []string{metricsJSON(5, "train_step", 2.3), metricsJSON(10, "train_step", 2.1), metricsJSON(15, "train_step", 5.9)}
	writeRunFile(t, dir, trainer.MetricsFile, strings.Join(lines, "\n")+"\n")
	rep, err := WriteRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	written(t, rep, LossPNG, AccuracyPNG, LRPNG)
}
