package bench

import (
	"bytes"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/plots"
)

// writePlots draws the report's PNGs beside base and returns their paths,
// and a message for each plot that could not be drawn.
func writePlots(base string, r *Report) (paths []string, errs []string) {
	try := func(suffix string, draw func(path string) error) {
		path := base + suffix
		if err := draw(path); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", suffix[1:], err))
			return
		}
		paths = append(paths, path)
	}
	// Ratio bars: every op and model with both sides measured.
	var labels []string
	var values []float64
	for _, o := range r.Ops {
		if o.Ratio != nil {
			labels, values = append(labels, o.Name+" "+passShort(o.Pass)), append(values, o.Ratio.Median)
		}
	}
	for _, t := range r.Train {
		if t.Ratio != nil {
			labels, values = append(labels, "train "+t.Model+" "+t.Input+" "+precisionCell(t.Precision)), append(values, t.Ratio.Median)
		}
	}
	if len(values) > 0 {
		try("-ratios.png", func(path string) error {
			return barChart(path, "Kiln speed / PyTorch speed (above 1: Kiln faster)", "ratio", labels, values, 1)
		})
	}
	// Kiln's ops against the machine's peaks.
	labels, values = nil, nil
	for _, o := range r.Ops {
		if o.KilnPeak > 0 {
			labels, values = append(labels, o.Name+" "+passShort(o.Pass)), append(values, 100*o.KilnPeak)
		}
	}
	if len(values) > 0 {
		try("-peak.png", func(path string) error {
			return barChart(path, "Kiln ops, effective rate: % of SGEMM peak (GFLOP/s ops) or of copy bandwidth (GB/s ops)", "% of peak", labels, values, 100)
		})
	}
	if sc := r.Scaling; sc != nil && len(sc.Batch) > 0 {
		var k, t plots.Series
		k.Name, t.Name = "Kiln", "PyTorch"
		for _, p := range sc.Batch {
			k.X, k.Y = append(k.X, float64(p.Batch)), append(k.Y, nanIfZero(p.Kiln))
			t.X, t.Y = append(t.X, float64(p.Batch)), append(t.Y, nanIfZero(p.Torch))
		}
		try("-scaling-batch.png", func(path string) error {
			return plots.Lines(path, fmt.Sprintf("Training images/s against batch size (%s, %s)", sc.BatchModel, sc.BatchInput),
				"batch size", "images/s", true, seriesWithData(k, t)...)
		})
	}
	if sc := r.Scaling; sc != nil && len(sc.Threads) > 0 && len(sc.Threads[0].Points) > 1 {
		// Speed-up over one thread, so models of any speed share the axis.
		var series []plots.Series
		for _, ts := range sc.Threads {
			k := plots.Series{Name: "Kiln " + ts.Model}
			t := plots.Series{Name: "PyTorch " + ts.Model}
			for _, p := range ts.Points {
				k.X, k.Y = append(k.X, float64(p.Threads)), append(k.Y, nanIfZero(p.Kiln)/nanIfZero(ts.Points[0].Kiln))
				t.X, t.Y = append(t.X, float64(p.Threads)), append(t.Y, nanIfZero(p.Torch)/nanIfZero(ts.Points[0].Torch))
			}
			series = append(series, seriesWithData(k, t)...)
		}
		try("-scaling-threads.png", func(path string) error {
			return plots.Lines(path, "Training speed-up over one thread", "threads", "speed-up", false, series...)
		})
	}
	for _, t := range r.TTA {
		var series []plots.Series
		for _, side := range []struct {
			name string
			res  *TTARun
		}{{"Kiln", t.Kiln}, {"PyTorch", t.Torch}} {
			if side.res == nil || len(side.res.Curve) == 0 {
				continue
			}
			s := plots.Series{Name: side.name}
			for _, p := range side.res.Curve {
				s.X, s.Y = append(s.X, p.Seconds), append(s.Y, p.Loss)
			}
			series = append(series, s)
		}
		if len(series) > 0 {
			try("-loss-"+t.ID+".png", func(path string) error {
				return plots.Lines(path, fmt.Sprintf("Training loss against wall time: %s (%s, target %.1f%%)", t.ID, t.Model, 100*t.Target),
					"seconds of training", "training loss", false, series...)
			})
		}
	}
	return paths, errs
}

func passShort(p string) string {
	switch p {
	case "forward":
		return "fwd"
	case "backward":
		return "bwd"
	}
	return p
}

func nanIfZero(v float64) float64 {
	if v > 0 {
		return v
	}
	return math.NaN()
}

// seriesWithData drops series with no finite point (a side that did not run).
func seriesWithData(ss ...plots.Series) []plots.Series {
	var out []plots.Series
	for _, s := range ss {
		for _, y := range s.Y {
			if !math.IsNaN(y) && !math.IsInf(y, 0) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// barChart draws horizontal bars, one per label, with a reference line at ref.
func barChart(path, title, xlabel string, labels []string, values []float64, ref float64) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	// Bars from the top down in the given order.
	rev := make(plotter.Values, len(values))
	names := make([]string, len(labels))
	for i := range values {
		rev[len(values)-1-i] = values[i]
		names[len(labels)-1-i] = labels[i]
	}
	bars, err := plotter.NewBarChart(rev, vg.Points(9))
	if err != nil {
		return err
	}
	bars.Horizontal = true
	bars.Color = color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff}
	bars.LineStyle.Width = 0
	p.Add(plotter.NewGrid(), bars)
	p.NominalY(names...)
	hi := ref
	for _, v := range values {
		hi = max(hi, v)
	}
	p.X.Min, p.X.Max = 0, hi*1.05
	line, err := plotter.NewLine(plotter.XYs{{X: ref, Y: -0.5}, {X: ref, Y: float64(len(values)) - 0.5}})
	if err != nil {
		return err
	}
	line.Color = color.RGBA{R: 0xc4, G: 0x4e, B: 0x52, A: 0xff}
	line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(line)
	height := 120 + 16*len(values)
	b, err := renderPNG(p, 900, height)
	if err != nil {
		return err
	}
	return trainer.WriteFileAtomic(path, b)
}

func renderPNG(p *plot.Plot, w, h int) ([]byte, error) {
	const dpi = 96
	pt := func(px int) vg.Length { return vg.Length(float64(px) * vg.Inch.Points() / dpi) }
	c := vgimg.NewWith(vgimg.UseWH(pt(w), pt(h)), vgimg.UseDPI(dpi), vgimg.UseBackgroundColor(color.White))
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
