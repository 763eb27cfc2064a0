package plots

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/kiln-ml/kiln/trainer"
)

// The PNG files WriteRun makes in a run's plots/ directory.
const (
	LossPNG       = "loss.png"
	AccuracyPNG   = "accuracy.png" // classification
	RMSEPNG       = "rmse.png"     // regression
	LRPNG         = "lr.png"
	FiltersPNG    = "filters.png"
	SamplesPNG    = "samples.png"
	ConfusionPNG  = "confusion.png"
	AttentionPNG  = "attention.png"
	SGUPNG        = "sgu.png"
	HistogramsPNG = "histograms.png"
)

// Report says what WriteRun made and what it could not, and why.
type Report struct {
	Written []string          // paths of the PNG files written
	Skipped map[string]string // file name → why it was not written
}

// WriteRun draws a run directory's pictures as PNG files in dir/plots: the
// curves from metrics.jsonl, the pictures in visuals.json, and the weight
// histograms from histograms.jsonl. A picture whose data the run does not
// have (yet) is skipped and said so; a directory with no metrics.jsonl is
// not a run directory and is an error.
func WriteRun(dir string) (*Report, error) {
	metrics, err := ReadMetrics(filepath.Join(dir, trainer.MetricsFile))
	if err != nil {
		return nil, fmt.Errorf("%s is not a run directory (or has not recorded anything yet): %w", dir, err)
	}
	out := filepath.Join(dir, trainer.PlotsDir)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	rep := &Report{Skipped: map[string]string{}}
	do := func(name string, draw func(path string) error) {
		path := filepath.Join(out, name)
		if err := draw(path); err != nil {
			rep.Skipped[name] = err.Error()
			return
		}
		rep.Written = append(rep.Written, path)
	}
	regression := slices.ContainsFunc(metrics, func(m trainer.MetricsRecord) bool { return m.RMSE != nil })
	do(LossPNG, func(p string) error { return lossPlot(p, metrics) })
	if regression {
		do(RMSEPNG, func(p string) error {
			return metricPlot(p, metrics, "RMSE", func(m trainer.MetricsRecord) *float64 { return m.RMSE })
		})
	} else {
		do(AccuracyPNG, func(p string) error {
			return metricPlot(p, metrics, "accuracy", func(m trainer.MetricsRecord) *float64 { return m.Accuracy })
		})
	}
	do(LRPNG, func(p string) error { return lrPlot(p, dir, metrics) })

	var vis *trainer.Visuals
	b, verr := os.ReadFile(filepath.Join(dir, trainer.VisualsFile))
	if verr == nil {
		vis = &trainer.Visuals{}
		if err := json.Unmarshal(b, vis); err != nil {
			verr = fmt.Errorf("%s: %w", trainer.VisualsFile, err)
			vis = nil
		}
	}
	needVis := func(name string, draw func(path string, v *trainer.Visuals) error) {
		if vis == nil {
			why := "no " + trainer.VisualsFile + " (trained with --no-visuals, or no validation yet)"
			if verr != nil && !os.IsNotExist(verr) {
				why = verr.Error()
			}
			rep.Skipped[name] = why
			return
		}
		do(name, func(p string) error { return draw(p, vis) })
	}
	needVis(FiltersPNG, filtersPicture)
	needVis(SamplesPNG, samplesPicture)
	if !regression {
		needVis(ConfusionPNG, confusionPicture)
	}
	if vis == nil || len(vis.Attention) > 0 {
		needVis(AttentionPNG, attentionPicture)
	}
	if vis == nil || len(vis.SGU) > 0 {
		needVis(SGUPNG, sguPicture)
	}
	do(HistogramsPNG, func(p string) error { return histogramsPicture(p, filepath.Join(dir, trainer.HistogramsFile)) })
	return rep, nil
}

// ReadMetrics reads metrics.jsonl, skipping a torn last line.
func ReadMetrics(path string) ([]trainer.MetricsRecord, error) {
	var out []trainer.MetricsRecord
	err := readLines(path, func(line []byte) error {
		var m trainer.MetricsRecord
		if err := json.Unmarshal(line, &m); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// ReadHistograms reads histograms.jsonl, skipping a torn last line.
func ReadHistograms(path string) ([]trainer.HistogramRecord, error) {
	var out []trainer.HistogramRecord
	err := readLines(path, func(line []byte) error {
		var h trainer.HistogramRecord
		if err := json.Unmarshal(line, &h); err != nil {
			return err
		}
		out = append(out, h)
		return nil
	})
	return out, err
}

// readLines calls parse on each complete line; a last line without its
// newline is still being written and is skipped.
func readLines(path string, parse func([]byte) error) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if i := bytes.LastIndexByte(b, '\n'); i < len(b)-1 {
		b = b[:i+1]
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, len(b)+1)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if err := parse(sc.Bytes()); err != nil {
			return fmt.Errorf("%s line %d: %w", path, n, err)
		}
	}
	return sc.Err()
}

func split(ms []trainer.MetricsRecord, split string, get func(trainer.MetricsRecord) *float64) Series {
	s := Series{Name: split}
	for _, m := range ms {
		if m.Split != split {
			continue
		}
		if v := get(m); v != nil {
			s.X = append(s.X, float64(m.Step))
			s.Y = append(s.Y, *v)
		}
	}
	return s
}

func nonEmpty(series ...Series) []Series {
	var out []Series
	for _, s := range series {
		if len(s.X) > 0 {
			out = append(out, s)
		}
	}
	return out
}

func lossPlot(path string, ms []trainer.MetricsRecord) error {
	loss := func(m trainer.MetricsRecord) *float64 { return &m.Loss }
	s := nonEmpty(split(ms, "train", loss), split(ms, "val", loss))
	if len(s) == 0 {
		return errors.New("no train or validation records yet")
	}
	return Lines(path, "loss (train: epoch mean; val: at each validation)", "step", "loss", false, s...)
}

func metricPlot(path string, ms []trainer.MetricsRecord, name string, get func(trainer.MetricsRecord) *float64) error {
	s := nonEmpty(split(ms, "train", get), split(ms, "val", get))
	if len(s) == 0 {
		return fmt.Errorf("no %s recorded yet", name)
	}
	return Lines(path, name, "step", name, false, s...)
}

// lrPlot draws the learning rate of every step, rebuilt from config.yaml's
// schedule and the steps per epoch seen in metrics.jsonl; a plateau
// schedule (which follows the losses) or a run without its config shows the
// recorded values instead.
func lrPlot(path, dir string, ms []trainer.MetricsRecord) error {
	var rec Series
	seen := map[int]bool{}
	for _, m := range ms {
		if m.Split != "test" && !seen[m.Step] && m.Step > 0 {
			seen[m.Step] = true
			rec.X = append(rec.X, float64(m.Step))
			rec.Y = append(rec.Y, m.LR)
		}
	}
	sort.Sort(byX(rec))
	if s, ok := rebuiltLR(dir, ms); ok {
		return Lines(path, "learning rate ("+s.Name+" schedule)", "step", "learning rate", false, s)
	}
	if len(rec.X) == 0 {
		return errors.New("no learning rate recorded yet")
	}
	rec.Name = "recorded"
	return Lines(path, "learning rate (as recorded)", "step", "learning rate", false, rec)
}

func rebuiltLR(dir string, ms []trainer.MetricsRecord) (Series, bool) {
	c, err := trainer.LoadConfigFile(filepath.Join(dir, trainer.ConfigFile), trainer.Config{})
	if err != nil || c.Schedule == "plateau" || c.Epochs < 1 {
		return Series{}, false
	}
	perEpoch := 0
	for _, m := range ms {
		if m.Split == "train" && m.Epoch == 1 {
			perEpoch = m.Step
		}
	}
	if perEpoch <= 0 {
		return Series{}, false
	}
	total := perEpoch * c.Epochs
	sched, err := trainer.NewSchedule(trainer.ScheduleConfig{Kind: c.Schedule, BaseLR: c.LR, Total: total, Warmup: c.Warmup,
		StepSize: c.StepSize, Milestones: c.Milestones, Gamma: c.Gamma})
	if err != nil {
		return Series{}, false
	}
	every := max(1, total/2000)
	s := Series{Name: c.Schedule}
	for step := 0; step < total; step += every {
		s.X = append(s.X, float64(step+1))
		s.Y = append(s.Y, sched.LR(step))
	}
	return s, true
}

type byX Series

func (s byX) Len() int           { return len(s.X) }
func (s byX) Less(i, j int) bool { return s.X[i] < s.X[j] }
func (s byX) Swap(i, j int) {
	s.X[i], s.X[j] = s.X[j], s.X[i]
	s.Y[i], s.Y[j] = s.Y[j], s.Y[i]
}

// filtersPicture draws the first convolution's filters, one cell each,
// grey (or RGB for three input channels) around 0 = mid grey.
func filtersPicture(path string, v *trainer.Visuals) error {
	f := v.Filters
	if f == nil || len(f.Shape) != 4 {
		return errors.New("the model has no convolution filters")
	}
	o, in, kh, kw := f.Shape[0], f.Shape[1], f.Shape[2], f.Shape[3]
	if o*in*kh*kw != len(f.Data) || o < 1 {
		return fmt.Errorf("filters: %d values for shape %v", len(f.Data), f.Shape)
	}
	w, h := filtersSize(o, kh, kw)
	title := fmt.Sprintf("%s: %d filters %dx%d, step %d", f.Name, o, kh, kw, v.Step)
	w = max(w, textWidth(title)+2*pad)
	img := newImage(w, h)
	text(img, pad, 4, title, black, 0)
	scale := scaleFor(max(kh, kw), filterBox)
	cols := gridCols(o)
	size := in * kh * kw
	for k := 0; k < o; k++ {
		data := f.Data[k*size : (k+1)*size]
		m := maxAbs(data)
		x0 := pad + (k%cols)*(filterBox+pad)
		y0 := titleH + (k/cols)*(filterBox+pad)
		blit(img, x0, y0, kw, kh, scale, func(x, y int) colorRGBA {
			at := func(c int) float64 { return 0.5 + 0.5*float64(data[c*kh*kw+y*kw+x])/m }
			if in == 3 {
				return rgb(byte01(at(0)), byte01(at(1)), byte01(at(2)))
			}
			return gray(at(0))
		})
	}
	return encodePNG(path, img)
}

// filtersSize is the picture size for o filters of kh×kw (before widening
// for the title).
func filtersSize(o, kh, kw int) (int, int) {
	cols := gridCols(o)
	rows := (o + cols - 1) / cols
	return pad + cols*(filterBox+pad), titleH + rows*(filterBox+pad)
}

func gridCols(n int) int { return max(1, int(math.Ceil(math.Sqrt(float64(n))))) }

// samplesPicture draws the validation samples 8 to a row, each with its
// prediction and truth under it; misclassified ones framed in red.
func samplesPicture(path string, v *trainer.Visuals) error {
	if len(v.Samples) == 0 {
		return errors.New("no samples in visuals.json")
	}
	s0 := v.Samples[0]
	if len(s0.Shape) != 3 {
		return fmt.Errorf("sample shape %v is not (c,h,w)", s0.Shape)
	}
	c, h, w := s0.Shape[0], s0.Shape[1], s0.Shape[2]
	scale := scaleFor(max(h, w), tileSize)
	cw, ch := w*scale, h*scale
	W, H := samplesSize(len(v.Samples), h, w)
	img := newImage(W, H)
	wrong := 0
	for _, s := range v.Samples {
		if s.Label != nil && float64(*s.Label) != s.Pred {
			wrong++
		}
	}
	title := fmt.Sprintf("validation samples at step %d: predicted / true", v.Step)
	if v.Classes != nil {
		title += fmt.Sprintf(", %d misclassified shown first (red)", wrong)
	} else {
		title += ", largest errors first"
	}
	text(img, pad, 4, title, black, W-2*pad)
	for i, s := range v.Samples {
		if len(s.Pixels) != c*h*w {
			return fmt.Errorf("sample %d: %d pixels for shape %v", s.Index, len(s.Pixels), s.Shape)
		}
		x0 := pad + (i%samplesCols)*(cw+pad)
		y0 := titleH + (i/samplesCols)*(ch+captionH+pad)
		blit(img, x0, y0, w, h, scale, sampleColor(s.Pixels, c, h, w))
		var caption string
		col := green
		if s.Label != nil {
			caption = className(v.Classes, int(s.Pred)) + "/" + className(v.Classes, *s.Label)
			if float64(*s.Label) != s.Pred {
				col = red
				border(img, image.Rect(x0, y0, x0+cw, y0+ch), 2, red)
			}
		} else if s.Target != nil {
			caption = short(s.Pred) + "/" + short(*s.Target)
			col = black
		}
		text(img, x0, y0+ch+1, caption, col, cw)
	}
	return encodePNG(path, img)
}

const samplesCols = 8

// samplesSize is the picture size for n samples of h×w.
func samplesSize(n, h, w int) (int, int) {
	scale := scaleFor(max(h, w), tileSize)
	cols := min(n, samplesCols)
	rows := (n + samplesCols - 1) / samplesCols
	return pad + cols*(w*scale+pad), titleH + rows*(h*scale+captionH+pad)
}

func className(classes []string, i int) string {
	if i >= 0 && i < len(classes) {
		return classes[i]
	}
	return strconv.Itoa(i)
}

func short(v float64) string { return strconv.FormatFloat(v, 'g', 3, 64) }

// confusionPicture draws the confusion matrix, rows the true class,
// shaded by the fraction of each true class, with the counts written in.
func confusionPicture(path string, v *trainer.Visuals) error {
	m := v.Confusion
	k := len(m)
	if k == 0 {
		return errors.New("no confusion matrix in visuals.json")
	}
	for _, row := range m {
		if len(row) != k {
			return fmt.Errorf("confusion matrix is not square (%d rows, a row of %d)", k, len(row))
		}
	}
	cell, left, top := confusionLayout(k, v.Classes)
	W, H := confusionSize(k, v.Classes)
	title := fmt.Sprintf("confusion at step %d: rows true, columns predicted", v.Step)
	W = max(W, textWidth(title)+2*pad)
	img := newImage(W, H)
	text(img, pad, 4, title, black, 0)
	for j := 0; j < k; j++ {
		if cell >= 14 {
			text(img, left+j*cell+2, titleH, className(v.Classes, j), grey, cell-2)
		}
	}
	for i, row := range m {
		sum := 0
		for _, n := range row {
			sum += n
		}
		text(img, pad, top+i*cell+(cell-13)/2, className(v.Classes, i), grey, left-2*pad)
		for j, n := range row {
			f := float64(n) / float64(max(sum, 1))
			bg := rgb(byte01(1-0.85*f), byte01(1-0.6*f), 255)
			if i == j {
				bg = rgb(byte01(1-0.8*f), 255, byte01(1-0.8*f))
			}
			r := image.Rect(left+j*cell, top+i*cell, left+(j+1)*cell-1, top+(i+1)*cell-1)
			fill(img, r, bg)
			if s := strconv.Itoa(n); textWidth(s)+2 <= cell && cell >= 14 {
				text(img, r.Min.X+(cell-textWidth(s))/2, r.Min.Y+(cell-13)/2, s, black, 0)
			}
		}
	}
	return encodePNG(path, img)
}

func confusionLayout(k int, classes []string) (cell, left, top int) {
	cell = min(max(480/max(k, 1), 6), 44)
	label := 0
	for i := 0; i < k; i++ {
		label = max(label, min(textWidth(className(classes, i)), 12*charW))
	}
	return cell, label + 2*pad, titleH + captionH + 2
}

func confusionSize(k int, classes []string) (int, int) {
	cell, left, top := confusionLayout(k, classes)
	return left + k*cell + pad, top + k*cell + pad
}

// attentionPicture draws, for each sample with maps, the input and each
// CBAM layer's spatial attention over it (heat colours blended with the
// image).
func attentionPicture(path string, v *trainer.Visuals) error {
	if len(v.Attention) == 0 {
		return errors.New("the model has no CBAM attention maps")
	}
	var layers []string
	var samples []int
	for _, a := range v.Attention {
		if !slices.Contains(layers, a.Layer) {
			layers = append(layers, a.Layer)
		}
		if !slices.Contains(samples, a.Sample) {
			samples = append(samples, a.Sample)
		}
	}
	byIndex := map[int]trainer.VisualSample{}
	for _, s := range v.Samples {
		byIndex[s.Index] = s
	}
	c, h, w := 1, 0, 0
	if len(v.Samples) > 0 && len(v.Samples[0].Shape) == 3 {
		c, h, w = v.Samples[0].Shape[0], v.Samples[0].Shape[1], v.Samples[0].Shape[2]
	}
	if h == 0 { // no inputs: draw the maps at their own size
		h, w = v.Attention[0].Shape[0], v.Attention[0].Shape[1]
	}
	scale := scaleFor(max(h, w), tileSize)
	cw, ch := w*scale, h*scale
	colW := attentionColumn(layers, h, w)
	W, H := attentionSize(len(samples), layers, h, w)
	title := fmt.Sprintf("CBAM attention, step %d (maps scaled to their range)", v.Step)
	W = max(W, textWidth(title)+2*pad)
	img := newImage(W, H)
	text(img, pad, 4, title, black, 0)
	text(img, pad, titleH, "input", grey, colW)
	for j, l := range layers {
		text(img, pad+(j+1)*(colW+pad), titleH, l, grey, colW)
	}
	for i, idx := range samples {
		y0 := titleH + captionH + i*(ch+pad)
		s, ok := byIndex[idx]
		hasImg := ok && len(s.Pixels) == c*h*w
		base := func(x, y int) colorRGBA { return colorRGBA{} }
		if hasImg {
			base = sampleColor(s.Pixels, c, h, w)
			blit(img, pad, y0, w, h, scale, base)
		}
		for j, l := range layers {
			for _, a := range v.Attention {
				if a.Layer != l || a.Sample != idx || len(a.Shape) != 2 || len(a.Data) != a.Shape[0]*a.Shape[1] || len(a.Data) == 0 {
					continue
				}
				ah, aw := a.Shape[0], a.Shape[1]
				lo, hi := float64(slices.Min(a.Data)), float64(slices.Max(a.Data))
				if hi <= lo {
					hi = lo + 1
				}
				blit(img, pad+(j+1)*(colW+pad), y0, w, h, scale, func(x, y int) colorRGBA {
					m := (float64(a.Data[min(y*ah/h, ah-1)*aw+min(x*aw/w, aw-1)]) - lo) / (hi - lo)
					hc, b := heat(m), base(x, y)
					if !hasImg {
						return hc
					}
					return rgb(uint8((int(hc.R)*3+int(b.R)*2)/5), uint8((int(hc.G)*3+int(b.G)*2)/5), uint8((int(hc.B)*3+int(b.B)*2)/5))
				})
			}
		}
	}
	_ = cw
	return encodePNG(path, img)
}

// attentionColumn is the width of a column: the map, or its layer's name.
func attentionColumn(layers []string, h, w int) int {
	cw := w * scaleFor(max(h, w), tileSize)
	for _, l := range layers {
		cw = max(cw, textWidth(l))
	}
	return cw
}

func attentionSize(samples int, layers []string, h, w int) (int, int) {
	scale := scaleFor(max(h, w), tileSize)
	return pad + (len(layers)+1)*(attentionColumn(layers, h, w)+pad), titleH + captionH + samples*(h*scale+pad)
}

// sguPicture draws each spatial gating unit's T×T token-mixing matrix,
// blue negative, red positive, scaled to its largest magnitude.
func sguPicture(path string, v *trainer.Visuals) error {
	if len(v.SGU) == 0 {
		return errors.New("the model has no spatial gating units")
	}
	t := 0
	for _, s := range v.SGU {
		if len(s.Shape) != 2 || s.Shape[0]*s.Shape[1] != len(s.Data) {
			return fmt.Errorf("%s: %d values for shape %v", s.Layer, len(s.Data), s.Shape)
		}
		t = max(t, s.Shape[0], s.Shape[1])
	}
	W, H := sguSize(len(v.SGU), t)
	title := fmt.Sprintf("gMLP spatial gating weights at step %d (rows: output token; blue < 0 < red)", v.Step)
	W = max(W, textWidth(title)+2*pad)
	img := newImage(W, H)
	text(img, pad, 4, title, black, 0)
	scale := scaleFor(t, sguBox)
	box := sguCell(t)
	cols := min(len(v.SGU), sguCols)
	for i, s := range v.SGU {
		x0 := pad + (i%cols)*(box+pad)
		y0 := titleH + (i/cols)*(box+captionH+pad)
		m := maxAbs(s.Data)
		text(img, x0, y0, fmt.Sprintf("%s |w|<=%.2g", s.Layer, m), grey, box)
		rows, cs := s.Shape[0], s.Shape[1]
		blit(img, x0, y0+captionH, cs, rows, scale, func(x, y int) colorRGBA {
			return diverging(float64(s.Data[y*cs+x]) / m)
		})
	}
	return encodePNG(path, img)
}

const (
	sguBox  = 192
	sguCols = 4
)

// sguCell is the side of one matrix's cell: T×T at its zoom, or wide
// enough for its caption.
func sguCell(t int) int { return max(t*scaleFor(t, sguBox), 24*charW) }

func sguSize(n, t int) (int, int) {
	cols := min(n, sguCols)
	rows := (n + sguCols - 1) / sguCols
	return pad + cols*(sguCell(t)+pad), titleH + rows*(sguCell(t)+captionH+pad)
}

// histogramsPicture draws, for each parameter (values, not gradients), its
// histogram at every recorded step as one row of a heat map: time flows
// down, the value axis runs across from the smallest to the largest value
// ever recorded for it.
func histogramsPicture(path, file string) error {
	recs, err := ReadHistograms(file)
	if os.IsNotExist(err) {
		return errors.New("no histograms.jsonl (trained with --no-visuals, or no validation yet)")
	}
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return errors.New("histograms.jsonl is empty")
	}
	var names []string
	lo, hi := map[string]float64{}, map[string]float64{}
	for _, r := range recs {
		for _, p := range r.Params {
			if p.Kind != "weight" {
				continue
			}
			if _, ok := lo[p.Name]; !ok {
				names = append(names, p.Name)
				lo[p.Name], hi[p.Name] = p.Min, p.Max
			}
			lo[p.Name], hi[p.Name] = min(lo[p.Name], p.Min), max(hi[p.Name], p.Max)
		}
	}
	if len(names) == 0 {
		return errors.New("histograms.jsonl holds no weights")
	}
	names = names[:min(len(names), histMaxPanels)]
	W, H := histogramsSize(len(names))
	img := newImage(W, H)
	text(img, pad, 4, fmt.Sprintf("weight histograms, steps %d to %d (time flows down)", recs[0].Step, recs[len(recs)-1].Step), black, W-2*pad)
	rowH := max(1, histPanelH/len(recs))
	for k, name := range names {
		x0 := pad + (k%histCols)*(histPanelW+2*pad)
		y0 := titleH + (k/histCols)*(histPanelH+2*captionH+2*pad)
		text(img, x0, y0, name, black, histPanelW)
		a, b := lo[name], hi[name]
		if b <= a {
			a, b = a-0.5, b+0.5
		}
		for i, r := range recs {
			var p *trainer.ParamHistogram
			for j := range r.Params {
				if r.Params[j].Name == name && r.Params[j].Kind == "weight" {
					p = &r.Params[j]
				}
			}
			if p == nil || len(p.Edges) != len(p.Counts)+1 {
				continue
			}
			row := rebin(p, a, b, histPanelW)
			top := 0.0
			for _, x := range row {
				top = max(top, x)
			}
			y := y0 + captionH + i*histPanelH/len(recs)
			for x, cnt := range row {
				col := heat(cnt / max(top, 1e-12))
				if cnt == 0 {
					col = rgb(245, 245, 245)
				}
				for dy := 0; dy < rowH; dy++ {
					img.SetRGBA(x0+x, y+dy, col)
				}
			}
		}
		axis := y0 + captionH + histPanelH + 1
		text(img, x0, axis, short(a), grey, histPanelW/2)
		hs := short(b)
		text(img, x0+histPanelW-textWidth(hs), axis, hs, grey, histPanelW/2)
	}
	return encodePNG(path, img)
}

const (
	histPanelW    = 240
	histPanelH    = 120
	histCols      = 4
	histMaxPanels = 32
)

func histogramsSize(panels int) (int, int) {
	cols := min(panels, histCols)
	rows := (panels + histCols - 1) / histCols
	return pad + cols*(histPanelW+2*pad), titleH + rows*(histPanelH+2*captionH+2*pad)
}

// rebin spreads a histogram's counts over n equal columns spanning [a, b],
// each bucket's count shared by the columns it covers.
func rebin(p *trainer.ParamHistogram, a, b float64, n int) []float64 {
	out := make([]float64, n)
	span := (b - a) / float64(n)
	for i, c := range p.Counts {
		if c == 0 {
			continue
		}
		l, r := p.Edges[i], p.Edges[i+1]
		c0 := min(max(int((l-a)/span), 0), n-1)
		c1 := min(max(int((r-a)/span), 0), n-1)
		share := float64(c) / float64(c1-c0+1)
		for x := c0; x <= c1; x++ {
			out[x] += share
		}
	}
	return out
}

// Names lists every PNG file name WriteRun may write, in order.
func Names() []string {
	return []string{LossPNG, AccuracyPNG, RMSEPNG, LRPNG, FiltersPNG, SamplesPNG, ConfusionPNG, AttentionPNG, SGUPNG, HistogramsPNG}
}

// String lists the report for a terminal.
func (r *Report) String() string {
	var b strings.Builder
	for _, p := range r.Written {
		fmt.Fprintf(&b, "wrote %s\n", p)
	}
	keys := make([]string, 0, len(r.Skipped))
	for k := range r.Skipped {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "skipped %s: %s\n", k, r.Skipped[k])
	}
	return b.String()
}
