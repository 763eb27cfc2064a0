package trainer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
	"github.com/kiln-ml/kiln/trainer/tbevents"
)

var (
	mnistOnce   sync.Once
	mnistSplits *data.Splits
	mnistErr    error
)

// smallMNIST is 2% of real MNIST (1080 training, 120 validation images),
// loaded once for the package's tests. Under the race detector, where
// decompressing MNIST alone takes 15 s, it is a generated set of the same
// shape and sizes.
func smallMNIST(t *testing.T) *data.Splits {
	t.Helper()
	mnistOnce.Do(func() {
		if raceEnabled {
			mnistSplits = &data.Splits{Train: strokes(t, 1080, 1), Val: strokes(t, 120, 2), Test: strokes(t, 200, 3)}
			return
		}
		mnistSplits, mnistErr = data.Load("mnist", data.Options{Subset: 0.02, ValFraction: 0.1, Seed: 1})
	})
	var nf *data.NotFoundError
	if errors.As(mnistErr, &nf) {
		t.Skipf("MNIST not available: %v", mnistErr)
	}
	if mnistErr != nil {
		t.Fatal(mnistErr)
	}
	return mnistSplits
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

// head keeps the first n samples of a classification set.
func head(t *testing.T, ds *data.Dataset, n int) *data.Dataset {
	t.Helper()
	c := *ds
	c.Images = ds.Images[:n*ds.SampleSize()]
	c.Labels = ds.Labels[:n]
	return &c
}

// trainRun trains model on splits into a fresh run directory.
func trainRun(t *testing.T, c Config, spec layers.Spec, s *data.Splits) (string, *Trainer) {
	t.Helper()
	model, err := layers.Build(c.Model, spec)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(c, model)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run, err := OpenRunDir(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Close() })
	tr.Run = run
	if _, err := tr.Fit(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return dir, tr
}

func mnistSpec(c Config) layers.Spec {
	return layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: c.Seed, Hidden: c.Hidden, Depth: c.Depth}
}

func readJSONLines[T any](t *testing.T, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<26)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, v)
	}
	return out
}

func readVisuals(t *testing.T, dir string) Visuals {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, VisualsFile))
	if err != nil {
		t.Fatal(err)
	}
	var v Visuals
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func eventFile(t *testing.T, dir string) []tbevents.Event {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, EventsPrefix+"*"))
	if len(files) != 1 {
		t.Fatalf("event files %v, want one", files)
	}
	host, _ := os.Hostname()
	if !strings.HasSuffix(files[0], "."+host) {
		t.Errorf("event file %s does not end in the host name %q", files[0], host)
	}
	ev, err := tbevents.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// near4 says whether a value written with 4 significant digits matches x.
func near4(got float32, x float64) bool {
	return math.Abs(float64(got)-x) <= 6e-4*math.Abs(x)+1e-12
}

func TestVisualsOfALeNetRun(t *testing.T) {
	full := smallMNIST(t)
	s := &data.Splits{Train: head(t, full.Train, 512), Val: full.Val, Test: full.Test}
	c := DefaultConfig()
	c.Epochs, c.Batch, c.ValEvery, c.Schedule = 1, 32, 4, "cosine"
	dir, tr := trainRun(t, c, mnistSpec(c), s)
	metrics := readJSONLines[MetricsRecord](t, filepath.Join(dir, MetricsFile))
	var val []MetricsRecord
	for _, m := range metrics {
		if m.Split == "val" {
			val = append(val, m)
		}
	}
	if len(val) < 4 {
		t.Fatalf("%d validations", len(val))
	}
	names, params := layers.Params(tr.Model)

	// histograms.jsonl: a line per validation, every parameter and its gradient.
	hist := readJSONLines[HistogramRecord](t, filepath.Join(dir, HistogramsFile))
	if len(hist) != len(val) {
		t.Fatalf("%d histogram lines for %d validations", len(hist), len(val))
	}
	for i, h := range hist {
		if h.Step != val[i].Step || h.Epoch != round3(val[i].Epoch) {
			t.Errorf("line %d: step %d epoch %v, validation at %d %v", i, h.Step, h.Epoch, val[i].Step, val[i].Epoch)
		}
		if len(h.Params) != 2*len(params) {
			t.Fatalf("line %d: %d histograms for %d parameters", i, len(h.Params), len(params))
		}
		for j, p := range h.Params {
			k := j / 2
			if p.Name != names[k] || p.Kind != []string{"weight", "grad"}[j%2] {
				t.Fatalf("histogram %d is %s %s, want %s", j, p.Name, p.Kind, names[k])
			}
			if len(p.Edges) != HistogramBins+1 || len(p.Counts) != HistogramBins {
				t.Fatalf("%s: %d edges, %d counts", p, len(p.Edges), len(p.Counts))
			}
			sum := 0
			for _, n := range p.Counts {
				sum += n
			}
			if sum != params[k].Value.Len() {
				t.Errorf("%s: counts sum to %d, parameter has %d values", p, sum, params[k].Value.Len())
			}
			if !slices.IsSorted(p.Edges) || p.Edges[0] > p.Min || p.Edges[HistogramBins] < p.Max || p.Min > p.Max {
				t.Errorf("%s: edges %v", p, p.Edges)
			}
			if p.Kind == "grad" && p.Min == 0 && p.Max == 0 && strings.HasSuffix(p.Name, "weight") {
				t.Errorf("%s: the gradient is all zero", p)
			}
		}
	}
	// The last line holds the final weights exactly.
	last := hist[len(hist)-1]
	w := params[0].Value
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := 0; i < w.Len(); i++ {
		lo, hi = min(lo, w.At(i)), max(hi, w.At(i))
	}
	if last.Params[0].Min != lo || last.Params[0].Max != hi {
		t.Errorf("conv1.weight range [%v, %v], histogram says [%v, %v]", lo, hi, last.Params[0].Min, last.Params[0].Max)
	}

	// visuals.json: the final state.
	v := readVisuals(t, dir)
	if v.Step != metrics[len(metrics)-1].Step || !slices.Equal(v.Classes, s.Val.Classes) {
		t.Errorf("step %d, classes %v", v.Step, v.Classes)
	}
	if v.Filters == nil || v.Filters.Name != "conv1.weight" || !slices.Equal(v.Filters.Shape, []int{6, 1, 5, 5}) || len(v.Filters.Data) != 150 {
		t.Fatalf("filters %+v", v.Filters)
	}
	for i, x := range v.Filters.Data {
		if !near4(x, w.At(i)) {
			t.Fatalf("filter value %d: %v, weight %v", i, x, w.At(i))
		}
	}
	r, err := tr.Evaluate(s.Val)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i := range r.Confusion {
		if !slices.Equal(v.Confusion[i], r.Confusion[i]) {
			t.Errorf("confusion row %d: %v, Evaluate gives %v", i, v.Confusion[i], r.Confusion[i])
		}
		for _, n := range v.Confusion[i] {
			total += n
		}
	}
	if total != s.Val.Len() || len(v.Confusion) != 10 {
		t.Errorf("confusion counts %d samples in %d rows, validation has %d", total, len(v.Confusion), s.Val.Len())
	}
	wrong := s.Val.Len() - int(math.Round(r.Accuracy*float64(s.Val.Len())))
	if len(v.Samples) != VisualSamples {
		t.Fatalf("%d samples, %d misclassified", len(v.Samples), wrong)
	}
	for i, smp := range v.Samples {
		if smp.Label == nil || smp.Prob == nil || smp.Target != nil {
			t.Fatalf("sample %d: %+v", i, smp)
		}
		miss := float64(*smp.Label) != smp.Pred
		if miss != (i < min(wrong, VisualSamples)) {
			t.Errorf("sample %d (index %d): misclassified %v, but %d are misclassified and come first", i, smp.Index, miss, wrong)
		}
		if int(s.Val.Labels[smp.Index]) != *smp.Label || *smp.Prob <= 0.1 || *smp.Prob > 1 {
			t.Errorf("sample %d: label %d (data set %d), prob %v", i, *smp.Label, s.Val.Labels[smp.Index], *smp.Prob)
		}
		if !slices.Equal(smp.Shape, []int{1, 28, 28}) || len(smp.Pixels) != 784 {
			t.Fatalf("sample %d: shape %v, %d pixels", i, smp.Shape, len(smp.Pixels))
		}
		img := s.Val.Image(smp.Index)
		for j, p := range smp.Pixels {
			raw := float64(img[j])*s.Val.Std[0] + s.Val.Mean[0]
			if p < 0 || p > 1 || math.Abs(float64(p)-raw) > 1e-3 {
				t.Fatalf("sample %d pixel %d: %v, un-normalised image %v", i, j, p, raw)
			}
		}
	}
	if len(v.Attention) != 0 || len(v.SGU) != 0 {
		t.Errorf("LeNet has no attention or SGU, got %d and %d", len(v.Attention), len(v.SGU))
	}

	// The event file: scalars matching metrics.jsonl, histograms matching
	// histograms.jsonl.
	ev := eventFile(t, dir)
	if ev[0].FileVersion != tbevents.FileVersion {
		t.Fatalf("first event %+v", ev[0])
	}
	scalars := map[string]map[int64]float32{}
	histos := map[string]int{}
	for _, e := range ev[1:] {
		for _, x := range e.Values {
			if x.HasScalar {
				if scalars[x.Tag] == nil {
					scalars[x.Tag] = map[int64]float32{}
				}
				scalars[x.Tag][e.Step] = x.Scalar
			}
			if x.Histogram != nil {
				histos[x.Tag]++
				if x.Tag == "weight/conv1.weight" && x.Histogram.Num != 150 {
					t.Errorf("%s: num %v", x.Tag, x.Histogram.Num)
				}
			}
		}
	}
	for _, tag := range []string{"train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr", "test/loss", "test/top5"} {
		if len(scalars[tag]) == 0 {
			t.Errorf("no %s scalars (have %v)", tag, scalars)
		}
	}
	for _, m := range val {
		if got := scalars["val/loss"][int64(m.Step)]; got != float32(m.Loss) {
			t.Errorf("val/loss at step %d: %v, metrics.jsonl %v", m.Step, got, m.Loss)
		}
	}
	for _, n := range names {
		if histos["weight/"+n] != len(val) || histos["grad/"+n] != len(val) {
			t.Errorf("%s: %d weight and %d grad histograms for %d validations", n, histos["weight/"+n], histos["grad/"+n], len(val))
		}
	}
}

func TestVisualsOfCBAMAndGMLP(t *testing.T) {
	s := smallMNIST(t)
	tiny := &data.Splits{Train: head(t, s.Train, 96), Val: head(t, s.Val, 24)}

	c := DefaultConfig()
	c.Model, c.Epochs, c.Batch, c.Schedule = "cbam", 1, 32, "constant"
	dir, tr := trainRun(t, c, mnistSpec(c), tiny)
	v := readVisuals(t, dir)
	if len(v.Samples) != 24 || len(v.Attention) != 2*AttentionSamples {
		t.Fatalf("%d samples, %d attention maps", len(v.Samples), len(v.Attention))
	}
	for i, a := range v.Attention {
		layer, side := "cbam1.spatial", 28
		if i >= AttentionSamples {
			layer, side = "cbam2.spatial", 14
		}
		if a.Layer != layer || a.Kind != "cbam_spatial" || a.Sample != v.Samples[i%AttentionSamples].Index ||
			!slices.Equal(a.Shape, []int{side, side}) || len(a.Data) != side*side {
			t.Fatalf("map %d: %s %s sample %d shape %v (%d values)", i, a.Layer, a.Kind, a.Sample, a.Shape, len(a.Data))
		}
		if slices.Min(a.Data) <= 0 || slices.Max(a.Data) >= 1 || slices.Min(a.Data) == slices.Max(a.Data) {
			t.Errorf("map %d: values in [%v, %v]", i, slices.Min(a.Data), slices.Max(a.Data))
		}
	}
	if v.Filters == nil || v.Filters.Name != "stem.conv.weight" {
		t.Errorf("filters %+v", v.Filters)
	}
	// The maps are those of the samples: run the first sample alone.
	x, _ := engine.FromFloat32(slices.Clone(tiny.Val.Image(v.Samples[0].Index)), 1, 1, 28, 28)
	tr.Model.SetTraining(false)
	if _, err := tr.Model.Forward(x); err != nil {
		t.Fatal(err)
	}
	spatial, _ := findVisualLayers(tr.Model)
	m := spatial[0].layer.Map()
	for j := 0; j < m.Len(); j++ {
		if !near4(v.Attention[0].Data[j], m.At(j)) {
			t.Fatalf("attention value %d: %v, the model gives %v", j, v.Attention[0].Data[j], m.At(j))
		}
	}

	c = DefaultConfigFor("gmlp", "mnist")
	c.Epochs, c.Batch, c.Hidden, c.Depth, c.Schedule = 1, 32, 16, 2, "constant"
	dir, tr = trainRun(t, c, mnistSpec(c), tiny)
	v = readVisuals(t, dir)
	if len(v.SGU) != 2 || len(v.Attention) != 0 {
		t.Fatalf("%d SGU matrices, %d attention maps", len(v.SGU), len(v.Attention))
	}
	state := layers.State(tr.Model)
	for i, sg := range v.SGU {
		want := state[sg.Layer+".proj.weight"]
		if sg.Layer != []string{"blocks.0.sgu", "blocks.1.sgu"}[i] || want == nil || !slices.Equal(sg.Shape, []int{49, 49}) {
			t.Fatalf("sgu %d: %s %v", i, sg.Layer, sg.Shape)
		}
		for j, x := range sg.Data {
			if !near4(x, want.At(j)) {
				t.Fatalf("%s value %d: %v, weight %v", sg.Layer, j, x, want.At(j))
			}
		}
	}
}

// ramp is a regression set: the target is the mean brightness of a noisy
// 1×8×8 image.
func ramp(t *testing.T, n int, seed uint64) *data.Dataset {
	t.Helper()
	ds := blobs(t, n, seed)
	targets := make([]float32, n)
	for i := range targets {
		s := float32(0)
		for _, v := range ds.Image(i) {
			s += v
		}
		targets[i] = s / 64
	}
	x, _ := ds.ImagesTensor()
	r, err := data.NewRegression("ramp", x, targets)
	if err != nil {
		t.Fatal(err)
	}
	r.TargetScale, r.TargetShift = 10, 5
	return r
}

func TestVisualsOfARegressionRun(t *testing.T) {
	c := blobConfig()
	c.Regression, c.Epochs, c.Optimizer, c.LR = true, 1, "adamw", 1e-3
	s := &data.Splits{Train: ramp(t, 128, 1), Val: ramp(t, 80, 2)}
	dir, _ := trainRun(t, c, layers.Spec{Channels: 1, Height: 8, Width: 8, Regression: true, Seed: 1, Hidden: 16}, s)
	v := readVisuals(t, dir)
	if v.Classes != nil || v.Confusion != nil || len(v.Samples) != VisualSamples {
		t.Fatalf("classes %v, confusion %v, %d samples", v.Classes, v.Confusion, len(v.Samples))
	}
	errs := make([]float64, len(v.Samples))
	for i, smp := range v.Samples {
		if smp.Target == nil || smp.Label != nil || smp.Prob != nil {
			t.Fatalf("sample %d: %+v", i, smp)
		}
		if want := s.Val.TargetValue(float64(s.Val.Targets[smp.Index])); math.Abs(*smp.Target-want) > 1e-9 {
			t.Errorf("sample %d: target %v, data set %v", i, *smp.Target, want)
		}
		errs[i] = math.Abs(smp.Pred - *smp.Target)
	}
	worst := errs[:VisualSamples/2]
	if !slices.IsSortedFunc(worst, func(a, b float64) int { return -cmpFloat(a, b) }) || slices.Max(errs[VisualSamples/2:]) > worst[len(worst)-1] {
		t.Errorf("the largest errors do not come first: %v", errs)
	}
	ev := eventFile(t, dir)
	found := false
	for _, e := range ev {
		for _, x := range e.Values {
			found = found || x.Tag == "val/rmse"
		}
	}
	if !found {
		t.Error("no val/rmse in the event file")
	}
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Pictures change nothing in training: a run without them ends with the
// same weights, and writes only the event file's scalars.
func TestNoVisualsSameWeights(t *testing.T) {
	c := blobConfig()
	c.Model, c.Epochs, c.ValEvery = "cnn", 1, 5
	splits := blobSplits(t)
	with := newBlobTrainer(t, c, t.TempDir(), false)
	if _, err := with.Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	c.NoVisuals = true
	dir := t.TempDir()
	without := newBlobTrainer(t, c, dir, false)
	if _, err := without.Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	a, b := layers.FullState(with.Model), layers.FullState(without.Model)
	for name, v := range a {
		for i := 0; i < v.Len(); i++ {
			if v.At(i) != b[name].At(i) {
				t.Fatalf("%s[%d]: %v with pictures, %v without", name, i, v.At(i), b[name].At(i))
			}
		}
	}
	for _, f := range []string{HistogramsFile, VisualsFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s written with NoVisuals", f)
		}
	}
	for _, e := range eventFile(t, dir) {
		for _, x := range e.Values {
			if x.Histogram != nil {
				t.Fatalf("histogram %s written with NoVisuals", x.Tag)
			}
		}
	}
}

// A resumed run drops the histogram lines past its checkpoint and goes on,
// so each validation step appears once.
func TestResumeKeepsHistogramsInStepOrder(t *testing.T) {
	c := blobConfig()
	c.ValEvery = 5
	splits := blobSplits(t)
	dir := t.TempDir()
	c1 := c
	c1.StopAfterEpoch = 1
	if _, err := newBlobTrainer(t, c1, dir, false).Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	// A line from beyond the checkpoint (a run killed after it) and a torn line.
	f, _ := os.OpenFile(filepath.Join(dir, HistogramsFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"step":999,"epoch":9,"params":[]}` + "\n" + `{"step":1000,"ep`)
	f.Close()
	if _, err := newBlobTrainer(t, c, dir, true).Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	hist := readJSONLines[HistogramRecord](t, filepath.Join(dir, HistogramsFile))
	var steps []int
	for _, h := range hist {
		steps = append(steps, h.Step)
	}
	if !slices.IsSorted(steps) || len(slices.Compact(slices.Clone(steps))) != len(steps) || steps[len(steps)-1] != 4*16 {
		t.Fatalf("histogram steps %v", steps)
	}
	events, _ := filepath.Glob(filepath.Join(dir, EventsPrefix+"*"))
	if len(events) != 2 {
		t.Fatalf("event files %v: want one per part of the run", events)
	}
	// Each part starts with a session start just past its first step, so
	// TensorBoard drops what the first part wrote beyond the checkpoint.
	for i, want := range []int64{1, 16 + 1} {
		ev, err := tbevents.ReadFile(events[i])
		if err != nil || len(ev) < 2 || ev[1].SessionStatus != 1 || ev[1].Step != want {
			t.Errorf("%s: %v, second event %+v; want a session start at step %d", events[i], err, ev[1], want)
		}
	}
}

func TestHistogramEdgeCases(t *testing.T) {
	x := engine.New(engine.Float32, 5)
	h, tb := histogram(x) // all zero: a narrow range around 0
	if h.Min != 0 || h.Max != 0 || h.Counts[HistogramBins/2] != 5 || tb.Num != 5 || len(tb.Limits) != HistogramBins {
		t.Errorf("zeros: %v %+v", h, tb)
	}
	for i, v := range []float64{-1, 2, math.NaN(), math.Inf(1), 2} {
		x.SetAt(i, v)
	}
	h, tb = histogram(x)
	if h.Min != -1 || h.Max != 2 || h.Counts[0] != 1 || h.Counts[HistogramBins-1] != 2 || tb.Num != 3 || tb.Sum != 3 || tb.SumSquares != 9 {
		t.Errorf("with NaN and Inf: %v %+v", h, tb)
	}
	if tbevents.FilePrefix != EventsPrefix {
		t.Errorf("event file prefixes differ: %q, %q", tbevents.FilePrefix, EventsPrefix)
	}
	b, _ := json.Marshal(Floats{0.50196, 1, 0, float32(math.NaN()), 1.5e-7, -12345})
	if string(b) != "[0.502,1,0,null,1.5e-07,-1.234e+04]" {
		t.Errorf("Floats JSON %s", b)
	}
}

// A regression whose validation targets are all alike trains to its end:
// its R² is 0 or 1, not a NaN that metrics.jsonl cannot hold.
func TestRegressionWithAlikeValidationTargetsTrains(t *testing.T) {
	c := blobConfig()
	c.Regression, c.Epochs, c.Optimizer, c.LR = true, 1, "adamw", 1e-3
	val := ramp(t, 16, 2)
	for i := range val.Targets {
		val.Targets[i] = 0.25
	}
	dir, _ := trainRun(t, c, layers.Spec{Channels: 1, Height: 8, Width: 8, Regression: true, Seed: 1, Hidden: 16},
		&data.Splits{Train: ramp(t, 64, 1), Val: val})
	b, err := os.ReadFile(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, `"split":"val"`) || !strings.Contains(last, `"r2":0`) {
		t.Errorf("last record %s: want the validation's, R² 0", last)
	}
}
