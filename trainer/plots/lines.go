// Package plots draws a run's pictures as PNG files: line charts through
// gonum.org/v1/plot, and image grids (filters, samples, attention maps,
// confusion matrices, histograms) drawn pixel by pixel with image/png.
//
// Line charts are the one thing a plotting library does better than a few
// loops: axes, ticks, a legend and a log scale. Image grids are plain pixel
// blocks, so they need nothing beyond the standard library and stay exact
// (one weight, one block of pixels).
package plots

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/kiln-ml/kiln/trainer"
)

// Size of a line chart, in pixels.
const (
	LineWidth  = 800
	LineHeight = 500
	lineDPI    = 96
)

// Series is one named line of a chart. X and Y have the same length; points
// where either is NaN or infinite (or X ≤ 0 on a log axis) are left out.
type Series struct {
	Name string
	X, Y []float64
}

// Lines draws series as a LineWidth×LineHeight PNG at path (written
// atomically), with a legend when there is more than one series or the one
// series is named. logX puts X on a log scale (the LR range test).
func Lines(path, title, xlabel, ylabel string, logX bool, series ...Series) error {
	b, err := LinesPNG(title, xlabel, ylabel, logX, series...)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return trainer.WriteFileAtomic(path, b)
}

// LinesPNG is Lines returning the PNG bytes.
func LinesPNG(title, xlabel, ylabel string, logX bool, series ...Series) ([]byte, error) {
	if len(series) == 0 {
		return nil, errors.New("no series to draw")
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: 2} // 1e-05, not 9.999999999999999e-06
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	drawn := 0
	for i, s := range series {
		if len(s.X) != len(s.Y) {
			return nil, fmt.Errorf("series %q: %d x values but %d y values", s.Name, len(s.X), len(s.Y))
		}
		pts := make(plotter.XYs, 0, len(s.X))
		for j := range s.X {
			x, y := s.X[j], s.Y[j]
			if !finite(x) || !finite(y) || (logX && x <= 0) {
				continue
			}
			pts = append(pts, plotter.XY{X: x, Y: y})
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, fmt.Errorf("series %q: %w", s.Name, err)
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		if len(pts) == 1 { // a line of one point draws nothing: mark it
			sc, err := plotter.NewScatter(pts)
			if err == nil {
				sc.Color = l.Color
				sc.Shape = draw.CircleGlyph{}
				p.Add(sc)
			}
		}
		if s.Name != "" && (len(series) > 1 || s.Name != ylabel) {
			p.Legend.Add(s.Name, l)
		}
		drawn++
	}
	if drawn == 0 {
		return nil, errors.New("no finite points to draw")
	}
	return render(p, LineWidth, LineHeight)
}

// render draws p on a w×h pixel canvas and encodes it as PNG.
func render(p *plot.Plot, w, h int) ([]byte, error) {
	pt := func(px int) vg.Length { return vg.Length(float64(px) * vg.Inch.Points() / lineDPI) }
	c := vgimg.NewWith(vgimg.UseWH(pt(w), pt(h)), vgimg.UseDPI(lineDPI), vgimg.UseBackgroundColor(color.White))
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
