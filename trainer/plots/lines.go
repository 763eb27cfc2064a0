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
	"cmp"
	"errors"
	"fmt"
	"image/color"
	"math"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Size of a line chart, in pixels.
const (
	LineWidth  = 800
	LineHeight = 500
	lineDPI    = 96
)

// Series is one named line of a chart. X and Y have the same length; points
// where either is NaN or infinite (or X ≤ 0 on a log axis) are left out, and
// values past ±extreme are drawn at ±extreme.
type Series struct {
	Name string
	X, Y []float64
}

// Lines draws series as a LineWidth×LineHeight PNG at path (written
// atomically), with a legend when there is more than one series or the one
// series is named. logX puts X on a log scale (the LR range test). A line of
// more points than the chart has pixel columns is thinned to what can be
// seen (decimate), so the time to draw does not grow with the points.
func Lines(path, title, xlabel, ylabel string, logX bool, series ...Series) error {
	b, err := LinesPNG(title, xlabel, ylabel, logX, series...)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return writePicture(path, b)
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
	p.X.Tick.Marker, p.Y.Tick.Marker = plainTicks{}, plainTicks{}
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: 2} // 1e-05, not 9.999999999999999e-06
	}
	p.Add(plotter.NewGrid())
	drawn := 0
	for i, s := range series {
		if len(s.X) != len(s.Y) {
			return nil, fmt.Errorf("series %q: %d x values but %d y values", s.Name, len(s.X), len(s.Y))
		}
		pts := points(s, logX)
		if len(pts) == 0 {
			continue
		}
		pts = decimate(pts, LineWidth, logX)
		line, err := plotter.NewLine(pts)
		if err != nil {
			return nil, fmt.Errorf("series %q: %w", s.Name, err)
		}
		l := chunkedLine{line}
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
	widen(&p.X.Min, &p.X.Max, logX)
	widen(&p.Y.Min, &p.Y.Max, false)
	// A point on the frame's edge (a one-epoch run's one value) is drawn
	// whole, and the legend goes to the corner the curves end away from:
	// rising accuracy curves ran through it at the top right.
	pad := (p.Y.Max - p.Y.Min) * 0.04
	p.Y.Min, p.Y.Max = p.Y.Min-pad, p.Y.Max+pad
	p.Legend.Top = !endsHigh(series, p.Y.Min, p.Y.Max)
	return render(p, LineWidth, LineHeight)
}

// endsHigh reports whether most series end in the upper half of [lo, hi].
func endsHigh(series []Series, lo, hi float64) bool {
	high, n := 0, 0
	for _, s := range series {
		for j := len(s.Y) - 1; j >= 0; j-- {
			if finite(s.Y[j]) {
				n++
				if s.Y[j] > (lo+hi)/2 {
					high++
				}
				break
			}
		}
	}
	return 2*high > n
}

// extreme bounds the values drawn: gonum's tick marks loop for ever on a
// range wider than float64 can hold (from -1e308 to 1e308), so values past
// ±extreme are drawn at ±extreme, which no real curve reaches.
const extreme = math.MaxFloat64 / 4

// points are the series' finite points (positive X on a log axis), within
// ±extreme.
func points(s Series, logX bool) plotter.XYs {
	pts := make(plotter.XYs, 0, len(s.X))
	for j := range s.X {
		x, y := s.X[j], s.Y[j]
		if !finite(x) || !finite(y) || (logX && x <= 0) {
			continue
		}
		pts = append(pts, plotter.XY{X: min(max(x, -extreme), extreme), Y: min(max(y, -extreme), extreme)})
	}
	return pts
}

// widen makes a range of one value a range gonum can draw: it widens by ±1
// itself, which is lost past 2^53 and then panics ("illegal range").
func widen(lo, hi *float64, log bool) {
	if *lo < *hi {
		return
	}
	v := *lo
	if log {
		*lo, *hi = v/2, v*2
		return
	}
	pad := max(1, math.Abs(v)/10)
	*lo, *hi = v-pad, v+pad
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

// decimate thins a line of more points than the chart has pixel columns:
// of each of cols equal slices of X it keeps the lowest and the highest
// point, in their order, and the first and last points of all. The line
// through them covers the same pixels, give or take one, and the
// rasteriser's cost, which grows faster than the number of segments, stays
// that of a few thousand. Points are taken in X order (a line chart's).
func decimate(pts plotter.XYs, cols int, logX bool) plotter.XYs {
	if len(pts) <= 2*cols+2 {
		return pts
	}
	if !slices.IsSortedFunc(pts, byXY) {
		pts = slices.Clone(pts)
		slices.SortStableFunc(pts, byXY)
	}
	at := func(x float64) float64 {
		if logX {
			return math.Log(x)
		}
		return x
	}
	lo, hi := at(pts[0].X), at(pts[len(pts)-1].X)
	width := (hi - lo) / float64(cols)
	if !(width > 0) || math.IsInf(width, 0) {
		width = math.Inf(1) // one column: every X the same, or a span past float64
	}
	out := make(plotter.XYs, 0, 2*cols+2)
	out = append(out, pts[0])
	for i := 1; i < len(pts)-1; {
		col := math.Floor((at(pts[i].X) - lo) / width)
		low, high := i, i
		j := i + 1
		for ; j < len(pts)-1 && math.Floor((at(pts[j].X)-lo)/width) == col; j++ {
			if pts[j].Y < pts[low].Y {
				low = j
			}
			if pts[j].Y > pts[high].Y {
				high = j
			}
		}
		out = append(out, pts[min(low, high)])
		if low != high {
			out = append(out, pts[max(low, high)])
		}
		i = j
	}
	return append(out, pts[len(pts)-1])
}

// chunkedLine strokes its line in pieces of chunkPoints points. The
// rasteriser keeps each pixel row's cells in a list it searches linearly,
// so one stroke of a noisy line costs the square of its length; pieces
// keep that cost linear. Joins between pieces are one line width wide,
// which at this width is less than a pixel.
type chunkedLine struct{ *plotter.Line }

const chunkPoints = 32

func (l chunkedLine) Plot(c draw.Canvas, plt *plot.Plot) {
	trX, trY := plt.Transforms(&c)
	ps := make([]vg.Point, len(l.XYs))
	for i, p := range l.XYs {
		ps[i] = vg.Point{X: trX(p.X), Y: trY(p.Y)}
	}
	var pieces [][]vg.Point
	for _, line := range c.ClipLinesXY(ps) {
		for len(line) > chunkPoints {
			pieces = append(pieces, line[:chunkPoints])
			line = line[chunkPoints-1:] // the next piece starts where this one ends
		}
		if len(line) > 0 {
			pieces = append(pieces, line)
		}
	}
	c.StrokeLines(l.LineStyle, pieces...)
}

func byXY(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// plainTicks are gonum's default ticks labelled in the fewest digits: step
// 25, not "25.00" (its labels keep two decimals whenever the tick spacing is
// a multiple of 2.5).
type plainTicks struct{}

func (plainTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i, t := range ticks {
		switch {
		case t.Label == "":
		case t.Value == math.Trunc(t.Value) && math.Abs(t.Value) < 1e12: // steps: 1000000, not 1e+06
			ticks[i].Label = strconv.FormatFloat(t.Value, 'f', -1, 64)
		default:
			ticks[i].Label = strconv.FormatFloat(t.Value, 'g', 6, 64)
		}
	}
	return ticks
}
