package trainer

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/durable"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
	"github.com/kiln-ml/kiln/trainer/tbevents"
)

// What a run shows besides its metrics: weight and gradient histograms
// (histograms.jsonl and the TensorBoard event file) and the latest pictures
// (visuals.json). The rundir.go comment holds the file formats. All of it is
// gathered at validation time only, from the validation pass that runs
// anyway, and none of it touches the training random streams, so it neither
// slows the training step nor changes a resumed run's weights.

// Sizes of what visuals.json and histograms.jsonl hold.
const (
	HistogramBins    = 30 // buckets per histogram (HistogramBins+1 edges)
	VisualSamples    = 64 // validation images in visuals.json
	AttentionSamples = 8  // samples whose CBAM attention maps are kept
	MaxFilters       = 64 // first-layer filters kept
)

// HistogramRecord is one line of histograms.jsonl.
type HistogramRecord struct {
	Step   int              `json:"step"`
	Epoch  float64          `json:"epoch"`
	Params []ParamHistogram `json:"params"`
}

// ParamHistogram is the distribution of one parameter's values (Kind
// "weight") or of its last gradient (Kind "grad"). Edges holds
// HistogramBins+1 equally spaced edges from Min to Max; Counts[i] counts the
// values in [Edges[i], Edges[i+1]) (the last bucket includes Max). NaN and
// infinite values are left out of every count.
type ParamHistogram struct {
	Name   string    `json:"name"`
	Kind   string    `json:"kind"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Edges  []float64 `json:"edges"`
	Counts []int     `json:"counts"`
}

// Visuals is visuals.json: the latest pictures of a run.
type Visuals struct {
	Step      int             `json:"step"`
	Classes   []string        `json:"classes,omitempty"`
	Filters   *FilterWeights  `json:"filters,omitempty"`
	Samples   []VisualSample  `json:"samples"`
	Confusion [][]int         `json:"confusion,omitempty"`
	Attention []AttentionMap  `json:"attention,omitempty"`
	SGU       []SpatialWeight `json:"sgu,omitempty"`
}

// FilterWeights are the first convolution's weights, (out, in, kh, kw).
type FilterWeights struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
	Data  Floats `json:"data"`
}

// VisualSample is one validation image with the model's answer. A
// classifier's sample has Label, Pred (a class index) and Prob (the
// softmax probability of Pred); a regressor's has Target and Pred in the
// target's unit.
type VisualSample struct {
	Index  int      `json:"index"`
	Label  *int     `json:"label,omitempty"`
	Target *float64 `json:"target,omitempty"`
	Pred   float64  `json:"pred"`
	Prob   *float64 `json:"prob,omitempty"`
	Shape  []int    `json:"shape"`
	Pixels Floats   `json:"pixels"`
}

// AttentionMap is one CBAM spatial attention map of one sample, values in (0,1).
type AttentionMap struct {
	Layer  string `json:"layer"`
	Kind   string `json:"kind"`
	Sample int    `json:"sample"`
	Shape  []int  `json:"shape"`
	Data   Floats `json:"data"`
}

// SpatialWeight is one gMLP spatial gating unit's T×T token-mixing matrix.
type SpatialWeight struct {
	Layer string `json:"layer"`
	Shape []int  `json:"shape"`
	Data  Floats `json:"data"`
}

// Floats is a float32 array written with 4 significant digits, NaN and
// infinities as null: pictures need no more, and the files stay small.
type Floats []float32

// MarshalJSON writes the array compactly.
func (f Floats) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+7*len(f))
	b = append(b, '[')
	for i, v := range f {
		if i > 0 {
			b = append(b, ',')
		}
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			b = append(b, "null"...)
			continue
		}
		b = strconv.AppendFloat(b, float64(v), 'g', 4, 32)
	}
	return append(b, ']'), nil
}

// visualState is what Fit keeps for the pictures of a run.
type visualState struct {
	events   *tbevents.Writer
	pictures bool // histograms and visuals.json (off with NoVisuals)
	names    []string
	params   []*layers.Param
	filter   string // name of the first convolution's weight
	spatial  []namedLayer[layers.AttentionMapper]
	sgus     []namedLayer[layers.TokenMixer]
	lastLR   int // step of the last lr scalar

	// Collection during a validation pass over collect.
	collect    *data.Dataset
	collecting bool
	wrong      []VisualSample // misclassified (classifier) or worst (regressor)
	right      []VisualSample // the others, in data set order
	doneStep   int            // step of the last visuals.json (-1: none)
}

type namedLayer[T any] struct {
	name  string
	layer T
}

// openVisuals prepares the event file and the pictures of a run. Failures
// are logged: pictures never stop a training run.
func (t *Trainer) openVisuals(s *data.Splits, step int) {
	if t.Run == nil {
		return
	}
	v := &visualState{pictures: !t.Config.NoVisuals, lastLR: -1, doneStep: -1}
	t.vis = v
	ev, err := tbevents.Create(t.Run.Path)
	if err == nil {
		// TensorBoard drops what earlier event files hold past this step.
		if err = ev.SessionStart(int64(step) + 1); err != nil {
			ev.Close()
		}
	}
	if err != nil {
		t.writeFailed("tensorboard event file", err)
	} else {
		v.events = ev
	}
	if !v.pictures {
		return
	}
	v.names, v.params = layers.Params(t.Model)
	for i, p := range v.params {
		if p.Value.Rank() == 4 {
			v.filter = v.names[i]
			break
		}
	}
	v.spatial, v.sgus = findVisualLayers(t.Model)
	if s != nil {
		v.collect = s.Val
	}
}

// writeFailed logs a failed write of the pictures and makes it the run's
// error: pictures do not stop a run, but a disk that cannot take them will
// not take the next checkpoint either, and a gap in a file is a loss.
func (t *Trainer) writeFailed(what string, err error) {
	t.Log.Error().Err(err).Msg(what)
	t.Run.Fail(err)
}

// closeVisuals closes the event file.
func (t *Trainer) closeVisuals() {
	if t.vis == nil {
		return
	}
	if t.vis.events != nil {
		if err := t.vis.events.Close(); err != nil {
			t.Log.Error().Err(err).Msg("closing the tensorboard event file")
		}
	}
	t.vis = nil
}

// visualRecord writes a metrics record's scalars to the event file; with no
// validation set, a training record also brings a histogram line.
func (t *Trainer) visualRecord(r MetricsRecord) {
	v := t.vis
	if v == nil {
		return
	}
	if ev := v.events; ev != nil {
		step := int64(r.Step)
		put := func(tag string, x *float64) {
			if x != nil {
				if err := ev.Scalar(tag, step, *x); err != nil {
					t.writeFailed("tensorboard event file", err)
				}
			}
		}
		loss := r.Loss
		put(r.Split+"/loss", &loss)
		put(r.Split+"/accuracy", r.Accuracy)
		put(r.Split+"/top5", r.Top5)
		put(r.Split+"/rmse", r.RMSE)
		put(r.Split+"/mae", r.MAE)
		put(r.Split+"/r2", r.R2)
		if r.Split != "test" && r.Step != v.lastLR {
			lr := r.LR
			put("lr", &lr)
			v.lastLR = r.Step
		}
		if err := ev.Flush(); err != nil {
			t.writeFailed("tensorboard event file", err)
		}
	}
	if r.Split == "train" && v.collect == nil && v.pictures {
		t.writeHistograms(r.Step, r.Epoch)
		t.flushEvents()
	}
}

// observeEval sees each batch of an evaluation pass; during a validation
// pass it keeps the samples visuals.json shows. It allocates only while it
// fills its bounded lists.
func (t *Trainer) observeEval(ds *data.Dataset, b *data.Batch, out *engine.Tensor) {
	v := t.vis
	if v == nil || !v.pictures || ds != v.collect || ds == nil {
		return
	}
	if b.Index == 0 {
		v.collecting = true
		v.wrong, v.right = v.wrong[:0], v.right[:0]
	}
	if !v.collecting || out.Len() != b.Size()*max(out.Dim(-1), 1) || !hostReadable(out) {
		return
	}
	n := b.Size()
	if ds.Task == data.Regression {
		for i := 0; i < n; i++ {
			pred, target := ds.TargetValue(out.At(i)), ds.TargetValue(b.Targets.At(i))
			s := VisualSample{Index: b.Indices[i], Target: &target, Pred: pred}
			if len(v.right) < VisualSamples {
				v.right = append(v.right, s)
			}
			v.wrong = keepWorst(v.wrong, s)
		}
		return
	}
	k := out.Dim(-1)
	for i := 0; i < n; i++ {
		best, mx := 0, out.At(i*k)
		for j := 1; j < k; j++ {
			if x := out.At(i*k + j); x > mx {
				best, mx = j, x
			}
		}
		label := int(b.Labels[i])
		if (best == label && len(v.right) >= VisualSamples) || (best != label && len(v.wrong) >= VisualSamples) {
			continue
		}
		sum := 0.0
		for j := 0; j < k; j++ {
			sum += math.Exp(out.At(i*k+j) - mx)
		}
		prob := 1 / sum
		s := VisualSample{Index: b.Indices[i], Label: &label, Pred: float64(best), Prob: &prob}
		if best != label {
			if len(v.wrong) < VisualSamples {
				v.wrong = append(v.wrong, s)
			}
		} else if len(v.right) < VisualSamples {
			v.right = append(v.right, s)
		}
	}
}

// keepWorst keeps the VisualSamples/2 samples of largest absolute error,
// worst first.
func keepWorst(list []VisualSample, s VisualSample) []VisualSample {
	const keep = VisualSamples / 2
	e := math.Abs(s.Pred - *s.Target)
	if len(list) == keep && e <= math.Abs(list[keep-1].Pred-*list[keep-1].Target) {
		return list
	}
	i := sort.Search(len(list), func(i int) bool { return math.Abs(list[i].Pred-*list[i].Target) < e })
	if len(list) < keep {
		list = append(list, VisualSample{})
	}
	copy(list[i+1:], list[i:len(list)-1])
	list[i] = s
	return list
}

// visualValidation runs after each validation pass over ds: a histogram
// line, the event file's histograms, and visuals.json.
func (t *Trainer) visualValidation(ds *data.Dataset, step int, epoch float64, r EvalResult) {
	v := t.vis
	if v == nil {
		return
	}
	if v.pictures {
		start := time.Now()
		t.writeHistograms(step, epoch)
		if err := t.writeVisuals(ds, step, r); err != nil {
			t.writeFailed("writing visuals.json", err)
		}
		t.Log.Debug().Dur("took", time.Since(start)).Msg("visuals written")
	}
	t.flushEvents()
}

// finishVisuals brings visuals.json up to date with the final weights when
// the last validation did not show them (restored best weights, or no
// validation set: then the test set is used).
func (t *Trainer) finishVisuals(s *data.Splits, step int, restored bool) {
	v := t.vis
	if v == nil || !v.pictures || s == nil {
		return
	}
	if v.doneStep == step && !restored {
		return
	}
	ds := s.Val
	if ds == nil {
		ds = s.Test
	}
	var r EvalResult
	if ds != nil {
		v.collect = ds
		var err error
		// Rank 0's alone, when there are several: the others have ended.
		if r, err = t.evaluate(ds, Solo{}); err != nil {
			t.Log.Error().Err(err).Msg("final visuals")
			return
		}
	}
	if err := t.writeVisuals(ds, step, r); err != nil {
		t.Log.Error().Err(err).Msg("writing visuals.json")
	}
}

func (t *Trainer) flushEvents() {
	if t.vis != nil && t.vis.events != nil {
		if err := t.vis.events.Flush(); err != nil {
			t.writeFailed("tensorboard event file", err)
		}
	}
}

// syncEvents makes the event file durable before a checkpoint records its
// size.
func (t *Trainer) syncEvents() error {
	if t.vis == nil || t.vis.events == nil {
		return nil
	}
	return t.vis.events.Sync()
}

// writeHistograms appends a line to histograms.jsonl and the same
// histograms to the event file.
func (t *Trainer) writeHistograms(step int, epoch float64) {
	v := t.vis
	rec := HistogramRecord{Step: step, Epoch: round3(epoch), Params: make([]ParamHistogram, 0, 2*len(v.params))}
	for i, p := range v.params {
		for _, kind := range []string{"weight", "grad"} {
			x := p.Value
			if kind == "grad" {
				x = p.Grad
			}
			if x = hostCopy(x); x == nil {
				continue
			}
			h, tb := histogram(x)
			h.Name, h.Kind = v.names[i], kind
			rec.Params = append(rec.Params, h)
			if v.events != nil {
				if err := v.events.Histogram(kind+"/"+h.Name, int64(step), tb); err != nil {
					t.writeFailed("tensorboard event file", err)
				}
			}
		}
	}
	line, err := json.Marshal(rec)
	if err == nil {
		err = appendLine(t.Run.File(HistogramsFile), line)
	}
	if err != nil {
		t.writeFailed("writing histograms.jsonl", err)
	}
}

// appendLine appends line and a newline in one write, so a concurrent
// reader sees whole lines (or a last line still without its newline).
func appendLine(path string, line []byte) error {
	f, err := durable.Append(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// histogram bins a tensor's finite values into HistogramBins equal buckets.
func histogram(x *engine.Tensor) (ParamHistogram, tbevents.Histogram) {
	lo, hi := math.Inf(1), math.Inf(-1)
	n := x.Len()
	sum, sq, num := 0.0, 0.0, 0
	for i := 0; i < n; i++ {
		v := x.At(i)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		lo, hi = min(lo, v), max(hi, v)
		sum += v
		sq += v * v
		num++
	}
	if num == 0 {
		lo, hi = 0, 0
	}
	a, b := lo, hi
	if a == b { // a constant (zero biases): a narrow bucket range around it
		d := max(math.Abs(a)*1e-3, 1e-6)
		a, b = a-d, b+d
	}
	h := ParamHistogram{Min: lo, Max: hi, Edges: make([]float64, HistogramBins+1), Counts: make([]int, HistogramBins)}
	for i := range h.Edges {
		h.Edges[i] = a + (b-a)*float64(i)/HistogramBins
	}
	h.Edges[HistogramBins] = b
	scale := HistogramBins / (b - a)
	for i := 0; i < n; i++ {
		v := x.At(i)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		k := min(max(int((v-a)*scale), 0), HistogramBins-1)
		h.Counts[k]++
	}
	tb := tbevents.Histogram{Min: lo, Max: hi, Num: float64(num), Sum: sum, SumSquares: sq,
		Limits: slices.Clone(h.Edges[1:]), Counts: make([]float64, HistogramBins)}
	for i, c := range h.Counts {
		tb.Counts[i] = float64(c)
	}
	return h, tb
}

// writeVisuals writes visuals.json from the samples the last pass over ds
// collected and the model's current weights.
func (t *Trainer) writeVisuals(ds *data.Dataset, step int, r EvalResult) error {
	v := t.vis
	out := Visuals{Step: step, Samples: []VisualSample{}}
	if v.filter != "" {
		for i, name := range v.names {
			w := hostCopy(v.params[i].Value)
			if name != v.filter || w == nil {
				continue
			}
			shape := slices.Clone(w.Shape())
			shape[0] = min(shape[0], MaxFilters)
			out.Filters = &FilterWeights{Name: name, Shape: shape, Data: floatsOf(w, numel(shape))}
		}
	}
	if ds != nil && v.collecting && v.collect == ds {
		if ds.Task == data.Classification {
			out.Classes = ds.Classes
			out.Confusion = r.Confusion
		}
		samples := slices.Clone(v.wrong)
		for _, s := range v.right {
			if len(samples) >= VisualSamples {
				break
			}
			if !slices.ContainsFunc(samples, func(o VisualSample) bool { return o.Index == s.Index }) {
				samples = append(samples, s)
			}
		}
		if len(samples) > VisualSamples {
			samples = samples[:VisualSamples]
		}
		if ds.Height*ds.Width == 1 {
			samples = samples[:0] // a table's rows (a CSV file): no picture to show, only colour swatches
		}
		for i := range samples {
			samples[i].Shape = []int{ds.Channels, ds.Height, ds.Width}
			samples[i].Pixels = pixels(ds, samples[i].Index)
		}
		out.Samples = samples
		att, err := t.attentionMaps(ds, samples)
		if err != nil {
			t.Log.Error().Err(err).Msg("attention maps")
		}
		out.Attention = att
	}
	v.collecting = false
	for _, s := range v.sgus {
		w := hostCopy(s.layer.Mixing())
		if w == nil || w.Rank() != 2 {
			continue
		}
		out.SGU = append(out.SGU, SpatialWeight{Layer: s.name, Shape: slices.Clone(w.Shape()), Data: floatsOf(w, w.Len())})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	v.doneStep = step
	return WriteFileAtomic(t.Run.File(VisualsFile), append(b, '\n'))
}

// attentionMaps runs the first AttentionSamples samples through the model in
// evaluation mode and reads each CBAM spatial gate's map.
func (t *Trainer) attentionMaps(ds *data.Dataset, samples []VisualSample) ([]AttentionMap, error) {
	v := t.vis
	if len(v.spatial) == 0 || len(samples) == 0 {
		return nil, nil
	}
	n := min(len(samples), AttentionSamples)
	size := ds.SampleSize()
	x := make([]float32, n*size)
	for i := 0; i < n; i++ {
		copy(x[i*size:], ds.Image(samples[i].Index))
	}
	xt, err := engine.FromFloat32(x, n, ds.Channels, ds.Height, ds.Width)
	if err != nil {
		return nil, err
	}
	if len(v.params) > 0 {
		if p := v.params[0].Value; p.Device() != engine.CPU {
			if xt, err = xt.To(p.Device()); err != nil {
				return nil, err
			}
			defer xt.Release() // this function's upload
		} else if p.DType() != engine.Float32 {
			xt = xt.As(p.DType())
		}
	}
	restore := layers.Evaluating(t.Model)
	_, err = t.Model.Forward(xt)
	restore()
	if err != nil {
		return nil, err
	}
	var maps []AttentionMap
	for _, s := range v.spatial {
		m := hostCopy(s.layer.Map()) // (N,1,H,W)
		if m == nil || m.Rank() != 4 || m.Dim(0) != n {
			continue
		}
		h, w := m.Dim(2), m.Dim(3)
		for i := 0; i < n; i++ {
			d := make(Floats, h*w)
			for j := range d {
				d[j] = float32(m.At(i*h*w + j))
			}
			maps = append(maps, AttentionMap{Layer: s.name, Kind: s.layer.MapKind(), Sample: samples[i].Index, Shape: []int{h, w}, Data: d})
		}
	}
	return maps, nil
}

// pixels returns sample i's image un-normalised to [0,1].
func pixels(ds *data.Dataset, i int) Floats {
	img := ds.Image(i)
	hw := ds.Height * ds.Width
	out := make(Floats, len(img))
	for j, x := range img {
		c := j / max(hw, 1)
		v := float64(x)
		if c < len(ds.Std) {
			v = v*ds.Std[c] + ds.Mean[c]
		}
		out[j] = float32(min(max(v, 0), 1))
	}
	return out
}

func floatsOf(x *engine.Tensor, n int) Floats {
	out := make(Floats, min(n, x.Len()))
	for i := range out {
		out[i] = float32(x.At(i))
	}
	return out
}

// hostCopy returns x, or a copy of it in host memory when it lives on a GPU
// (nil if that fails or x is nil).
func hostCopy(x *engine.Tensor) *engine.Tensor {
	if x == nil || hostReadable(x) {
		return x
	}
	h, err := x.To(engine.CPU)
	if err != nil || !hostReadable(h) {
		return nil
	}
	return h
}

// hostReadable reports whether x's values are in host memory.
func hostReadable(x *engine.Tensor) bool {
	return x != nil && (len(x.Float32()) == x.Len() && x.DType() == engine.Float32 ||
		len(x.Float64()) == x.Len() && x.DType() == engine.Float64)
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// findVisualLayers lists the layers that show themselves (attention maps,
// token-mixing weights) with their names (cbam1.spatial, blocks.0.sgu): by
// interface, so a layer of one's own that implements one is drawn too.
func findVisualLayers(model layers.Layer) (maps []namedLayer[layers.AttentionMapper], mixers []namedLayer[layers.TokenMixer]) {
	layers.WalkLayers(model, func(name string, l layers.Layer) {
		if m, ok := l.(layers.AttentionMapper); ok {
			maps = append(maps, namedLayer[layers.AttentionMapper]{name, m})
		}
		if m, ok := l.(layers.TokenMixer); ok {
			mixers = append(mixers, namedLayer[layers.TokenMixer]{name, m})
		}
	})
	return maps, mixers
}

// String describes a histogram line briefly (for logs and test failures).
func (h ParamHistogram) String() string {
	return fmt.Sprintf("%s %s [%g, %g] %v", h.Name, h.Kind, h.Min, h.Max, h.Counts)
}
