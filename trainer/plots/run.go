package plots

import (
	"errors"
	"fmt"
	"image"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-ml/kiln/internal/durable"
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
	Skipped map[string]string // file name → why it was not drawn (no data for it yet)
	Failed  map[string]string // file name → why it could not be written (a full disk)
	Notes   []string          // what was wrong with the run's files: bad records skipped
}

// writeError is a picture drawn but not written: unlike missing data, a
// failure of the command.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// writePicture writes a picture's PNG bytes, its error a writeError.
func writePicture(path string, b []byte) error {
	if err := savePicture(path, b); err != nil {
		return &writeError{err}
	}
	return nil
}

func (r *Report) note(b Bad) {
	if s := b.String(); s != "" {
		r.Notes = append(r.Notes, s)
	}
}

// leftTempAge is how old a picture's temporary file is before it counts as
// left by a kiln plot that was stopped: a picture takes milliseconds, so
// a younger one may be another kiln plot's, still being written.
const leftTempAge = time.Minute

// removeLeftTemps removes the temporary files of pictures that a stopped
// kiln plot left in dir: the next kiln plot did not look, so they stayed.
func removeLeftTemps(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // at worst, left as they were
	}
	for _, e := range entries {
		base, ok := durable.TempOf(e.Name())
		if fi, err := e.Info(); ok && strings.HasSuffix(base, ".png") && err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > leftTempAge {
			_ = durable.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// WriteRun draws a run directory's pictures as PNG files in dir/plots: the
// curves from metrics.jsonl, the pictures in visuals.json, and the weight
// histograms from histograms.jsonl. A picture whose data the run does not
// have (yet) is skipped and said so; bad records are skipped and noted; a
// directory with no metrics.jsonl is not a run directory and is an error.
func WriteRun(dir string) (*Report, error) {
	metrics, bad, err := ReadMetrics(filepath.Join(dir, trainer.MetricsFile))
	if err != nil {
		if _, terr := os.Stat(filepath.Join(dir, "tune.json")); terr == nil {
			return nil, fmt.Errorf("%s is a tune: plot one of its trials, %s", dir, filepath.Join(dir, "trials", "NNN"))
		}
		return nil, fmt.Errorf("%s is not a run directory (or has not recorded anything yet): %w", dir, err)
	}
	out := filepath.Join(dir, trainer.PlotsDir)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	removeLeftTemps(out)
	rep := &Report{Skipped: map[string]string{}, Failed: map[string]string{}}
	rep.note(bad)
	do := func(name string, draw func(path string) error) {
		path := filepath.Join(out, name)
		if err := draw(path); err != nil {
			var we *writeError
			if errors.As(err, &we) {
				rep.Failed[name] = err.Error()
			} else {
				rep.Skipped[name] = err.Error()
			}
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
	do(LRPNG, func(p string) error { return lrPlot(p, dir, metrics, rep) })
	visualPictures(rep, dir, regression, do)
	hs, bad, herr := ReadHistograms(filepath.Join(dir, trainer.HistogramsFile))
	rep.note(bad)
	do(HistogramsPNG, func(p string) error { return histogramsPicture(p, hs, herr) })
	return rep, nil
}

// visualPictures draws the pictures of visuals.json, or says why not.
func visualPictures(rep *Report, dir string, regression bool, do func(string, func(string) error)) {
	vis, bad, verr := ReadVisuals(filepath.Join(dir, trainer.VisualsFile))
	rep.note(bad)
	if verr != nil && !errors.Is(verr, fs.ErrNotExist) {
		rep.Notes = append(rep.Notes, verr.Error()+" (its pictures skipped)")
	}
	needVis := func(name string, draw func(path string, v *trainer.Visuals) error) {
		if vis == nil {
			why := "no " + trainer.VisualsFile + " (trained with --no-visuals, or no validation yet)"
			if !errors.Is(verr, fs.ErrNotExist) {
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

// recordedSeries are a metric's lines: --log-every's step records
// (train_step), the epoch means (train) and the validations (val).
func recordedSeries(ms []trainer.MetricsRecord, get func(trainer.MetricsRecord) *float64) []Series {
	return nonEmpty(split(ms, "train_step", get), split(ms, "train", get), split(ms, "val", get))
}

func lossPlot(path string, ms []trainer.MetricsRecord) error {
	s := recordedSeries(ms, func(m trainer.MetricsRecord) *float64 { return &m.Loss })
	if len(s) == 0 {
		return errors.New("no train or validation records yet")
	}
	return Lines(path, "loss (train_step: every --log-every steps; train: epoch mean; val: at each validation)", "step", "loss", false, s...)
}

func metricPlot(path string, ms []trainer.MetricsRecord, name string, get func(trainer.MetricsRecord) *float64) error {
	s := recordedSeries(ms, get)
	if len(s) == 0 {
		return fmt.Errorf("no %s recorded yet", name)
	}
	return Lines(path, name, "step", name, false, s...)
}

// lrPlot draws the learning rate of every step, rebuilt from config.yaml's
// schedule and the steps per epoch seen in metrics.jsonl; a plateau
// schedule (which follows the losses) or a run without its config shows the
// recorded values instead.
func lrPlot(path, dir string, ms []trainer.MetricsRecord, rep *Report) error {
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
	s, ok, err := rebuiltLR(dir, ms)
	if ok {
		return Lines(path, "learning rate ("+s.Name+" schedule)", "step", "learning rate", false, s)
	}
	if err != nil { // one line: a YAML error draws the line it is on under it
		first, _, _ := strings.Cut(err.Error(), "\n")
		rep.Notes = append(rep.Notes, first+": learning rate drawn as recorded")
	}
	if len(rec.X) == 0 {
		return errors.New("no learning rate recorded yet")
	}
	rec.Name = "recorded"
	return Lines(path, "learning rate (as recorded)", "step", "learning rate", false, rec)
}

// rebuiltLR is the schedule of config.yaml over the steps the run took; false when
// there is none to rebuild, with an error when config.yaml is there but
// cannot be used (a missing one is a run copied without it: no news).
func rebuiltLR(dir string, ms []trainer.MetricsRecord) (Series, bool, error) {
	c, err := trainer.LoadConfigFile(filepath.Join(dir, trainer.ConfigFile), trainer.Config{})
	if errors.Is(err, fs.ErrNotExist) {
		return Series{}, false, nil
	}
	if err != nil {
		return Series{}, false, err
	}
	if c.Schedule == "plateau" || c.Epochs < 1 {
		return Series{}, false, nil
	}
	perEpoch := 0
	for _, m := range ms {
		if m.Split == "train" && m.Epoch == 1 {
			perEpoch = m.Step
		}
	}
	if perEpoch <= 0 || perEpoch > math.MaxInt32 || c.Epochs > math.MaxInt32 {
		return Series{}, false, nil // no schedule runs that long: a step that is not one
	}
	total := perEpoch * c.Epochs
	sched, err := trainer.NewSchedule(trainer.ScheduleConfig{Kind: c.Schedule, BaseLR: c.LR, Total: total, Warmup: c.Warmup,
		StepSize: c.StepSize, Milestones: c.Milestones, Gamma: c.Gamma})
	if err != nil {
		return Series{}, false, fmt.Errorf("%s: %w", trainer.ConfigFile, err)
	}
	ran := 0 // the steps the run took: early stopping, a halving tune or a kill ends it before total
	for _, m := range ms {
		ran = max(ran, m.Step)
	}
	end := min(total, ran)
	every := max(1, end/2000)
	s := Series{Name: c.Schedule}
	for step := 0; step < end; step += every {
		s.X = append(s.X, float64(step+1))
		s.Y = append(s.Y, sched.LR(step))
	}
	return s, true, nil
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
	if !shapeFits(f.Shape, 4, len(f.Data)) {
		return fmt.Errorf("filters: %d values for shape %v", len(f.Data), f.Shape)
	}
	o, in, kh, kw := f.Shape[0], f.Shape[1], f.Shape[2], f.Shape[3]
	w, h := filtersSize(o, kh, kw)
	title := fmt.Sprintf("%s: %d filters %dx%d, step %d", f.Name, o, kh, kw, v.Step)
	w = max(w, textWidth(title)+2*pad)
	img, err := newImage(w, h)
	if err != nil {
		return err
	}
	text(img, pad, 4, title, black, 0)
	scale := scaleFor(max(kh, kw), filterBox)
	cell := filterCell(kh, kw)
	cols := gridCols(o)
	size := in * kh * kw
	for k := 0; k < o; k++ {
		data := f.Data[k*size : (k+1)*size]
		m := maxAbs(data)
		x0 := pad + (k%cols)*(cell+pad)
		y0 := titleH + (k/cols)*(cell+pad)
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
	cell := filterCell(kh, kw)
	return pad + cols*(cell+pad), titleH + rows*(cell+pad)
}

// filterCell is the side of a filter's cell: filterBox, or a kernel larger
// than that at one pixel a weight.
func filterCell(kh, kw int) int { return max(filterBox, kh, kw) }

func gridCols(n int) int { return max(1, int(math.Ceil(math.Sqrt(float64(n))))) }

// samplesPicture draws the validation samples 8 to a row, each with its
// prediction and truth under it; misclassified ones framed in red.
func samplesPicture(path string, v *trainer.Visuals) error {
	if len(v.Samples) == 0 {
		return errors.New("no samples in visuals.json")
	}
	s0 := v.Samples[0]
	if !shapeFits(s0.Shape, 3, len(s0.Pixels)) {
		return fmt.Errorf("sample shape %v is not (c,h,w) of its %d pixels", s0.Shape, len(s0.Pixels))
	}
	c, h, w := s0.Shape[0], s0.Shape[1], s0.Shape[2]
	scale := scaleFor(max(h, w), tileSize)
	cw, ch := w*scale, h*scale
	W, H := samplesSize(len(v.Samples), h, w)
	img, err := newImage(W, H)
	if err != nil {
		return err
	}
	wrong := 0
	for _, s := range v.Samples {
		if s.Label != nil && float64(*s.Label) != s.Pred {
			wrong++
		}
	}
	title := fmt.Sprintf("validation samples at step %d: predicted / true, largest errors first", v.Step)
	if v.Classes != nil {
		title = fmt.Sprintf("validation, step %d: true class; %d wrong in red first: predicted/true", v.Step, wrong)
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
			caption = className(v.Classes, *s.Label)
			if float64(*s.Label) != s.Pred {
				caption = wrongCaption(className(v.Classes, int(s.Pred)), caption, cw/charW)
				col = red
				border(img, image.Rect(x0, y0, x0+cw, y0+ch), 2, red)
			}
		} else if s.Target != nil {
			caption = regressionCaption(s.Pred, *s.Target, cw/charW)
			col = black
		}
		text(img, x0, y0+ch+1, caption, col, cw)
	}
	return encodePNG(path, img)
}

const samplesCols = 8

// wrongCaption is "predicted/true" in at most n characters: when the names
// are too long, each keeps an equal share, so that the true class still
// shows after the slash.
func wrongCaption(pred, truth string, n int) string {
	p, t := []rune(pred), []rune(truth)
	if len(p)+1+len(t) <= n {
		return pred + "/" + truth
	}
	half := max(1, (n-1)/2)
	if len(p) < half { // a short prediction leaves its room to the truth
		return pred + "/" + string(t[:min(len(t), n-1-len(p))])
	}
	return string(p[:half]) + "/" + string(t[:min(len(t), max(1, n-1-half))])
}

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

// regressionCaption is "prediction/target" in at most n characters: with
// fewer significant digits where three do not fit, so that neither is cut
// (-0.0113/-0.0199 read -0.0113/-0.0).
func regressionCaption(pred, target float64, n int) string {
	var c string
	for digits := 3; digits >= 1; digits-- {
		c = strconv.FormatFloat(pred, 'g', digits, 64) + "/" + strconv.FormatFloat(target, 'g', digits, 64)
		if len(c) <= n {
			break
		}
	}
	return c
}

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
	img, err := newImage(W, H)
	if err != nil {
		return err
	}
	text(img, pad, 4, title, black, 0)
	rows := columnLabelRows(k, cell, v.Classes)
	for j := 0; j < k && cell >= 14; j++ {
		// Staggered over two rows when one does not fit its cell, so
		// neighbours never run into each other ("circlecross").
		text(img, left+j*cell+2, titleH+(j%rows)*captionH, className(v.Classes, j), grey, rows*cell-charW)
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
	return cell, label + 2*pad, titleH + columnLabelRows(k, cell, classes)*captionH + 2
}

// columnLabelRows is 1 when every class name fits its column with a
// character's gap, else 2.
func columnLabelRows(k, cell int, classes []string) int {
	for j := 0; j < k; j++ {
		if textWidth(className(classes, j))+2 > cell-charW {
			return 2
		}
	}
	return 1
}

func confusionSize(k int, classes []string) (int, int) {
	cell, left, top := confusionLayout(k, classes)
	w := left + k*cell + pad
	if rows := columnLabelRows(k, cell, classes); cell >= 14 {
		for j := 0; j < k; j++ { // a staggered name may reach past the last column
			w = max(w, left+j*cell+2+min(textWidth(className(classes, j)), rows*cell-charW)+pad)
		}
	}
	return w, top + k*cell + pad
}

// attentionPicture draws, for each sample with maps, the input and each
// CBAM layer's spatial attention over it (heat colours blended with the
// image).
func attentionPicture(path string, v *trainer.Visuals) error {
	if len(v.Attention) == 0 {
		return errors.New("the model has no CBAM attention maps")
	}
	// Layers and samples in order of appearance; one map per pair, the last.
	var layers []string
	var samples []int
	type key struct {
		layer  string
		sample int
	}
	maps := map[key]*trainer.AttentionMap{}
	seenLayer, seenSample := map[string]bool{}, map[int]bool{}
	for i := range v.Attention {
		a := &v.Attention[i]
		if len(a.Shape) != 2 || !shapeFits(a.Shape, 2, len(a.Data)) {
			continue
		}
		if !seenLayer[a.Layer] {
			seenLayer[a.Layer] = true
			layers = append(layers, a.Layer)
		}
		if !seenSample[a.Sample] {
			seenSample[a.Sample] = true
			samples = append(samples, a.Sample)
		}
		maps[key{a.Layer, a.Sample}] = a
	}
	if len(layers) == 0 {
		return errors.New("no attention map fits its shape")
	}
	byIndex := map[int]trainer.VisualSample{}
	for _, s := range v.Samples {
		byIndex[s.Index] = s
	}
	c, h, w := 1, 0, 0
	if len(v.Samples) > 0 && shapeFits(v.Samples[0].Shape, 3, len(v.Samples[0].Pixels)) {
		c, h, w = v.Samples[0].Shape[0], v.Samples[0].Shape[1], v.Samples[0].Shape[2]
	} else { // no inputs: draw the maps at the first one's size
		a := maps[key{layers[0], samples[0]}]
		if a == nil {
			for _, m := range maps {
				a = m
				break
			}
		}
		h, w = a.Shape[0], a.Shape[1]
	}
	scale := scaleFor(max(h, w), tileSize)
	colW := attentionColumn(layers, h, w)
	W, H := attentionSize(len(samples), layers, h, w)
	title := fmt.Sprintf("CBAM attention, step %d (maps scaled to their range)", v.Step)
	W = max(W, textWidth(title)+2*pad)
	img, err := newImage(W, H)
	if err != nil {
		return err
	}
	text(img, pad, 4, title, black, 0)
	text(img, pad, titleH, "input", grey, colW)
	for j, l := range layers {
		text(img, pad+(j+1)*(colW+pad), titleH, l, grey, colW)
	}
	for i, idx := range samples {
		y0 := titleH + captionH + i*(h*scale+pad)
		var base func(x, y int) colorRGBA
		if s, ok := byIndex[idx]; ok && len(s.Pixels) == c*h*w {
			base = sampleColor(s.Pixels, c, h, w)
			blit(img, pad, y0, w, h, scale, base)
		}
		for j, l := range layers {
			if a := maps[key{l, idx}]; a != nil {
				blit(img, pad+(j+1)*(colW+pad), y0, w, h, scale, attentionColor(a, h, w, base))
			}
		}
	}
	return encodePNG(path, img)
}

// attentionColor reads a map, scaled to its range, at pixel (x, y) of an
// h×w input, in heat colours blended with the input's own when there is one.
func attentionColor(a *trainer.AttentionMap, h, w int, base func(x, y int) colorRGBA) func(x, y int) colorRGBA {
	ah, aw := a.Shape[0], a.Shape[1]
	lo, hi := float64(slices.Min(a.Data)), float64(slices.Max(a.Data))
	if hi <= lo {
		hi = lo + 1
	}
	return func(x, y int) colorRGBA {
		m := (float64(a.Data[min(y*ah/h, ah-1)*aw+min(x*aw/w, aw-1)]) - lo) / (hi - lo)
		hc := heat(m)
		if base == nil {
			return hc
		}
		b := base(x, y)
		return rgb(uint8((int(hc.R)*3+int(b.R)*2)/5), uint8((int(hc.G)*3+int(b.G)*2)/5), uint8((int(hc.B)*3+int(b.B)*2)/5))
	}
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
		if !shapeFits(s.Shape, 2, len(s.Data)) {
			return fmt.Errorf("%s: %d values for shape %v", s.Layer, len(s.Data), s.Shape)
		}
		t = max(t, s.Shape[0], s.Shape[1])
	}
	W, H := sguSize(len(v.SGU), t)
	title := fmt.Sprintf("gMLP spatial gating weights at step %d (rows: output token; blue < 0 < red)", v.Step)
	W = max(W, textWidth(title)+2*pad)
	img, err := newImage(W, H)
	if err != nil {
		return err
	}
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
// ever recorded for it. err is the file's, when it could not be read.
func histogramsPicture(path string, recs []trainer.HistogramRecord, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return errors.New("no histograms.jsonl (trained with --no-visuals, or no validation yet)")
	}
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return errors.New("histograms.jsonl holds no records")
	}
	names, lo, hi := weightRanges(recs)
	if len(names) == 0 {
		return errors.New("histograms.jsonl holds no weights")
	}
	names = names[:min(len(names), histMaxPanels)]
	W, H := histogramsSize(len(names))
	img, err := newImage(W, H)
	if err != nil {
		return err
	}
	text(img, pad, 4, fmt.Sprintf("weight histograms, steps %d to %d (time flows down)", recs[0].Step, recs[len(recs)-1].Step), black, W-2*pad)
	for k, name := range names {
		x0 := pad + (k%histCols)*(histPanelW+2*pad)
		y0 := titleH + (k/histCols)*(histPanelH+2*captionH+2*pad)
		text(img, x0, y0, name, black, histPanelW)
		a, b := lo[name], hi[name]
		if b <= a {
			a, b = a-0.5, b+0.5
		}
		axis := y0 + captionH + histPanelH + 1
		text(img, x0, axis, short(a), grey, histPanelW/2)
		hs := short(b)
		text(img, x0+histPanelW-textWidth(hs), axis, hs, grey, histPanelW/2)
	}
	histogramRows(img, recs, names, lo, hi)
	return encodePNG(path, img)
}

// weightRanges lists the weights' names in order of appearance, with the
// smallest and largest value each ever had.
func weightRanges(recs []trainer.HistogramRecord) (names []string, lo, hi map[string]float64) {
	lo, hi = map[string]float64{}, map[string]float64{}
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
	return names, lo, hi
}

// histogramRows draws each panel's rows. A panel has histPanelH pixel rows:
// with more records than that, each row shows the last record that falls on
// it (the others would be drawn over), so the cost does not grow with the
// number of records beyond reading them.
func histogramRows(img *image.RGBA, recs []trainer.HistogramRecord, names []string, lo, hi map[string]float64) {
	rows := min(len(recs), histPanelH)
	rowH := max(1, histPanelH/len(recs))
	for row := range rows {
		i := ((row+1)*len(recs) - 1) / rows // the last record on this row
		r := &recs[i]
		byName := make(map[string]*trainer.ParamHistogram, len(r.Params))
		for j := range r.Params {
			if r.Params[j].Kind == "weight" {
				byName[r.Params[j].Name] = &r.Params[j]
			}
		}
		for k, name := range names {
			p := byName[name]
			if p == nil {
				continue
			}
			a, b := lo[name], hi[name]
			if b <= a {
				a, b = a-0.5, b+0.5
			}
			x0 := pad + (k%histCols)*(histPanelW+2*pad)
			y := titleH + (k/histCols)*(histPanelH+2*captionH+2*pad) + captionH + row*histPanelH/rows
			histogramRow(img, x0, y, rowH, rebin(p, a, b, histPanelW))
		}
	}
}

func histogramRow(img *image.RGBA, x0, y, h int, row []float64) {
	top := 0.0
	for _, x := range row {
		top = max(top, x)
	}
	for x, cnt := range row {
		col := heat(cnt / max(top, 1e-12))
		if cnt == 0 {
			col = rgb(245, 245, 245)
		}
		for dy := 0; dy < h; dy++ {
			img.SetRGBA(x0+x, y+dy, col)
		}
	}
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
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "%s\n", n)
	}
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
	for _, k := range slices.Sorted(maps.Keys(r.Failed)) {
		fmt.Fprintf(&b, "failed %s: %s\n", k, r.Failed[k])
	}
	return b.String()
}
