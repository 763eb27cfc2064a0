package plots

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

var (
	mnistOnce sync.Once
	mnist     *data.Splits
	mnistErr  error
)

// train runs a short real training into a new run directory: model on the
// first nTrain/nVal images of 2% of MNIST, validating every valEvery steps.
func train(t *testing.T, model string, nTrain, nVal, valEvery int, hidden, depth int) string {
	t.Helper()
	mnistOnce.Do(func() {
		if raceEnabled { // decompressing MNIST alone takes 15 s under the race detector
			mnist = &data.Splits{Train: strokes(t, 320, 1), Val: strokes(t, 64, 2)}
			return
		}
		mnist, mnistErr = data.Load("mnist", data.Options{Subset: 0.02, ValFraction: 0.1, Seed: 1})
	})
	var nf *data.NotFoundError
	if errors.As(mnistErr, &nf) {
		t.Skipf("MNIST not available: %v", mnistErr)
	}
	if mnistErr != nil {
		t.Fatal(mnistErr)
	}
	s := mnist
	cut := func(ds *data.Dataset, n int) *data.Dataset {
		c := *ds
		n = min(n, ds.Len())
		c.Images, c.Labels = ds.Images[:n*ds.SampleSize()], ds.Labels[:n]
		return &c
	}
	s = &data.Splits{Train: cut(s.Train, nTrain), Val: cut(s.Val, nVal)}
	c := trainer.DefaultConfigFor(model, "mnist")
	c.Model, c.Epochs, c.Batch, c.ValEvery, c.Hidden, c.Depth = model, 2, 32, valEvery, hidden, depth
	m, err := layers.Build(model, layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 1, Hidden: hidden, Depth: depth})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := trainer.NewTrainer(c, m)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run, err := trainer.OpenRunDir(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	tr.Run = run
	y, _ := c.YAML()
	if err := trainer.WriteFileAtomic(run.File(trainer.ConfigFile), y); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Fit(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return dir
}

// strokes is an MNIST-shaped stand-in: ten classes of 28×28 images, class k
// a bright bar at row 3+2k and column 3+2k over noise, normalised with
// MNIST's mean and deviation.
func strokes(t *testing.T, n int, seed uint64) *data.Dataset {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	x := engine.New(engine.Float32, n, 1, 28, 28)
	labels := make([]int32, n)
	for i := range labels {
		k := rng.IntN(10)
		labels[i] = int32(k)
		img := x.Float32()[i*784 : (i+1)*784]
		for p := range img {
			v := 0.2 * rng.Float64()
			if p/28 == 3+2*k || p%28 == 3+2*k {
				v = 0.7 + 0.3*rng.Float64()
			}
			img[p] = float32((v - 0.1307) / 0.3081)
		}
	}
	ds, err := data.NewClassification("strokes", x, labels, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"})
	if err != nil {
		t.Fatal(err)
	}
	ds.Mean, ds.Std = []float64{0.1307}, []float64{0.3081}
	return ds
}

func visuals(t *testing.T, dir string) *trainer.Visuals {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, trainer.VisualsFile))
	if err != nil {
		t.Fatal(err)
	}
	v := &trainer.Visuals{}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
	return v
}

func written(t *testing.T, rep *Report, want ...string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, p := range rep.Written {
		got[filepath.Base(p)] = p
	}
	for _, w := range want {
		if got[w] == "" {
			t.Errorf("%s not written; report:\n%s", w, rep)
		}
	}
	if len(got) != len(want) {
		t.Errorf("wrote %d files, want %d; report:\n%s", len(got), len(want), rep)
	}
	return got
}

func TestPlotsOfALeNetRun(t *testing.T) {
	dir := train(t, "lenet", 320, 64, 5, 0, 0)
	rep, err := WriteRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := written(t, rep, LossPNG, AccuracyPNG, LRPNG, FiltersPNG, SamplesPNG, ConfusionPNG, HistogramsPNG)
	for _, name := range []string{AttentionPNG, SGUPNG} {
		if _, err := os.Stat(filepath.Join(dir, "plots", name)); err == nil {
			t.Errorf("%s written for LeNet", name)
		}
	}
	for _, name := range []string{LossPNG, AccuracyPNG, LRPNG} {
		decodePNG(t, files[name], LineWidth, LineHeight)
	}
	v := visuals(t, dir)
	fw, fh := filtersSize(6, 5, 5)
	fw = max(fw, textWidth(fmt.Sprintf("conv1.weight: 6 filters 5x5, step %d", v.Step))+2*pad)
	decodePNG(t, files[FiltersPNG], fw, fh)
	sw, sh := samplesSize(64, 28, 28)
	if sw != pad+8*(84+pad) || sh != titleH+8*(84+captionH+pad) {
		t.Fatalf("samples layout %dx%d", sw, sh)
	}
	img := decodePNG(t, files[SamplesPNG], sw, sh)
	// A misclassified first sample (as after this short MNIST run) is framed in red.
	s0 := v.Samples[0]
	r, g, b, _ := img.At(pad-1, titleH+10).RGBA()
	if red := r>>8 == 200 && g>>8 == 30 && b>>8 == 30; red != (float64(*s0.Label) != s0.Pred) {
		t.Errorf("first sample (label %d, pred %v): frame colour (%d,%d,%d)", *s0.Label, s0.Pred, r>>8, g>>8, b>>8)
	}
	cw, ch := confusionSize(10, v.Classes)
	decodePNG(t, files[ConfusionPNG], max(cw, textWidth(fmt.Sprintf("confusion at step %d: rows true, columns predicted", v.Step))+2*pad), ch)
	hw, hh := histogramsSize(10)
	decodePNG(t, files[HistogramsPNG], hw, hh)

	// Drawing again replaces the files; nothing else appears in plots/.
	if _, err := WriteRun(dir); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, trainer.PlotsDir))
	if len(entries) != 7 {
		t.Errorf("%d entries in plots/", len(entries))
	}
}

func TestPlotsOfCBAMAndGMLPRuns(t *testing.T) {
	dir := train(t, "cbam", 64, 16, 0, 0, 0)
	rep, err := WriteRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := written(t, rep, LossPNG, AccuracyPNG, LRPNG, FiltersPNG, SamplesPNG, ConfusionPNG, HistogramsPNG, AttentionPNG)
	layers := []string{"cbam1.spatial", "cbam2.spatial"}
	aw, ah := attentionSize(8, layers, 28, 28)
	decodePNG(t, files[AttentionPNG], max(aw, textWidth("CBAM attention, step 4 (maps scaled to their range)")+2*pad), ah)

	dir = train(t, "gmlp", 64, 16, 0, 16, 2)
	rep, err = WriteRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	files = written(t, rep, LossPNG, AccuracyPNG, LRPNG, FiltersPNG, SamplesPNG, ConfusionPNG, HistogramsPNG, SGUPNG)
	gw, gh := sguSize(2, 49)
	decodePNG(t, files[SGUPNG], max(gw, textWidth("gMLP spatial gating weights at step 4 (rows: output token; blue < 0 < red)")+2*pad), gh)
}

func TestPlotsOfAnIncompleteRun(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteRun(dir); err == nil || !strings.Contains(err.Error(), "not a run directory") {
		t.Fatalf("empty directory: %v", err)
	}
	// A run that has recorded one training epoch and nothing else (as with
	// --no-visuals and no validation set): the curves only, the rest said.
	line := `{"time":"t","step":10,"epoch":1,"split":"train","loss":1.5,"accuracy":0.5,"lr":0.1,"wall_seconds":1}` + "\n"
	os.WriteFile(filepath.Join(dir, trainer.MetricsFile), []byte(line+`{"step":20,"ep`), 0o644)
	rep, err := WriteRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	written(t, rep, LossPNG, AccuracyPNG, LRPNG)
	// A picture's temporary file that a stopped kiln plot left goes at the
	// next (it stayed for good); a fresh one may be another kiln plot's.
	left, fresh := filepath.Join(dir, "plots", ".loss.png.tmp123"), filepath.Join(dir, "plots", ".lr.png.tmp456")
	os.WriteFile(left, []byte("half"), 0o644)
	os.WriteFile(fresh, []byte("half"), 0o644)
	long := time.Now().Add(-2 * leftTempAge)
	os.Chtimes(left, long, long)
	if _, err := WriteRun(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); err == nil {
		t.Error("a stopped kiln plot's temporary file stayed")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh temporary file (another kiln plot's?) was removed: %v", err)
	}
	for _, name := range []string{FiltersPNG, SamplesPNG, ConfusionPNG, HistogramsPNG} {
		if !strings.Contains(rep.Skipped[name], "no ") {
			t.Errorf("%s: skipped because %q", name, rep.Skipped[name])
		}
	}
	// A corrupt visuals.json is reported, not fatal.
	os.WriteFile(filepath.Join(dir, trainer.VisualsFile), []byte("{"), 0o644)
	rep, err = WriteRun(dir)
	if err != nil || !strings.Contains(rep.Skipped[SamplesPNG], trainer.VisualsFile) {
		t.Fatalf("corrupt visuals.json: %v\n%s", err, rep)
	}
}

// TestWrongCaptionKeepsTheTruth: a misclassified sample's caption shows both
// names in the tile's width, the true one after the slash even when both are
// long (a cut "circle/ci" hid whether the truth was circle or cross).
func TestWrongCaptionKeepsTheTruth(t *testing.T) {
	for _, tc := range []struct {
		pred, truth string
		n           int
		want        string
	}{
		{"7", "1", 9, "7/1"},
		{"circle", "cross", 9, "circ/cros"},
		{"cat", "hippopotamus", 9, "cat/hippo"},
		{"hippopotamus", "cat", 9, "hipp/cat"},
		{"sandal", "sneaker", 13, "sandal/sneake"},
		{"ab", "cd", 2, "a/c"},
	} {
		got := wrongCaption(tc.pred, tc.truth, tc.n)
		if got != tc.want {
			t.Errorf("wrongCaption(%q, %q, %d) = %q, want %q", tc.pred, tc.truth, tc.n, got, tc.want)
		}
	}
}

// TestConfusionColumnLabelsDoNotTouch: names wider than a column (less a
// character's gap) are staggered over two rows, and the picture is wide
// enough for the last one.
func TestConfusionColumnLabelsDoNotTouch(t *testing.T) {
	shapes := []string{"circle", "cross", "square"}
	if got := columnLabelRows(3, 44, shapes); got != 2 {
		t.Errorf("circle, cross, square in 44-pixel columns: %d label rows, want 2", got)
	}
	if got := columnLabelRows(10, 44, nil); got != 1 {
		t.Errorf("digits: %d label rows, want 1", got)
	}
	fashion := []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}
	cell, left, _ := confusionLayout(10, fashion)
	if w, _ := confusionSize(10, fashion); w < left+9*cell+2+textWidth("Ankle boot") {
		t.Errorf("width %d cuts the last column's name (it ends at %d)", w, left+9*cell+2+textWidth("Ankle boot"))
	}
}
