package plots

import (
	"bytes"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gonum.org/v1/plot/plotter"
)

// decodePNG reads a PNG and checks its size and that it is not one colour.
func decodePNG(t *testing.T, path string, w, h int) image.Image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if got := img.Bounds().Size(); got.X != w || got.Y != h {
		t.Fatalf("%s: %dx%d, want %dx%d", path, got.X, got.Y, w, h)
	}
	if distinctColours(img) < 3 {
		t.Fatalf("%s: fewer than 3 distinct colours", path)
	}
	return img
}

func distinctColours(img image.Image) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) > 16 {
				return len(seen)
			}
		}
	}
	return len(seen)
}

func TestLines(t *testing.T) {
	dir := t.TempDir()
	x := []float64{1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1}
	y := []float64{2.3, 2.2, 1.5, 0.8, math.NaN(), math.Inf(1)}
	p := filepath.Join(dir, "lr.png")
	if err := Lines(p, "LR range test", "learning rate", "loss", true, Series{Name: "loss", X: x, Y: y}); err != nil {
		t.Fatal(err)
	}
	decodePNG(t, p, LineWidth, LineHeight)

	p2 := filepath.Join(dir, "loss.png")
	if err := Lines(p2, "loss", "step", "loss", false,
		Series{Name: "train", X: []float64{1, 2, 3}, Y: []float64{3, 2, 1}},
		Series{Name: "val", X: []float64{3}, Y: []float64{1.5}}); err != nil {
		t.Fatal(err)
	}
	decodePNG(t, p2, LineWidth, LineHeight)
}

func TestLinesErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]Series{
		"no series":      nil,
		"length":         {{Name: "a", X: []float64{1, 2}, Y: []float64{1}}},
		"nothing finite": {{Name: "a", X: []float64{1}, Y: []float64{math.NaN()}}},
	}
	for name, s := range cases {
		p := filepath.Join(dir, "x.png")
		if err := Lines(p, "t", "x", "y", false, s...); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s: file written despite the error", name)
		}
	}
	// Log axis: points at x ≤ 0 are left out, so only non-positive x fails.
	if err := Lines(filepath.Join(dir, "y.png"), "t", "x", "y", true, Series{X: []float64{0, -1}, Y: []float64{1, 2}}); err == nil {
		t.Error("log axis with no positive x: no error")
	}
}

// decimate keeps, per pixel column, the lowest and highest point, and the
// first and last of all, in X order; a short line is left alone.
func TestDecimate(t *testing.T) {
	const n, cols = 100_000, 800
	pts := make(plotter.XYs, n)
	for i := range pts {
		x := float64(n - i) // backwards: decimate sorts
		pts[i] = plotter.XY{X: x, Y: math.Sin(x) * x}
	}
	got := decimate(pts, cols, false)
	if len(got) > 2*cols+2 || len(got) < cols {
		t.Fatalf("%d points kept of %d for %d columns", len(got), n, cols)
	}
	if got[0].X != 1 || got[len(got)-1].X != n {
		t.Errorf("first %v, last %v", got[0], got[len(got)-1])
	}
	if !slices.IsSortedFunc(got, byXY) {
		t.Error("not in X order")
	}
	kept := map[plotter.XY]bool{}
	for _, p := range got {
		kept[p] = true
	}
	// Every column's extremes are kept.
	width := float64(n-1) / cols
	lo, hi := map[int]plotter.XY{}, map[int]plotter.XY{}
	for _, p := range pts[1 : n-1] {
		c := int((p.X - 1) / width)
		if l, ok := lo[c]; !ok || p.Y < l.Y {
			lo[c] = p
		}
		if h, ok := hi[c]; !ok || p.Y > h.Y {
			hi[c] = p
		}
	}
	for c := range lo {
		if !kept[lo[c]] || !kept[hi[c]] {
			t.Fatalf("column %d: min %v or max %v left out", c, lo[c], hi[c])
		}
	}
	short := pts[:2*cols]
	if got := decimate(short, cols, false); len(got) != len(short) {
		t.Errorf("a line of %d points thinned to %d", len(short), len(got))
	}
	// A log axis thins by columns of log X; a constant X is one column.
	if got := decimate(pts, cols, true); len(got) > 2*cols+2 {
		t.Errorf("log axis: %d points kept", len(got))
	}
	flat := make(plotter.XYs, 5000)
	for i := range flat {
		flat[i] = plotter.XY{X: 3, Y: float64(i % 7)}
	}
	if got := decimate(flat, cols, false); len(got) != 4 {
		t.Errorf("constant X: %d points kept, want first, min, max, last", len(got))
	}
}

// Values a diverged run can record: gonum's tick marks panicked on a range
// of one value past 2^53 and looped for ever on a range wider than float64.
func TestLinesOfExtremeValues(t *testing.T) {
	for name, s := range map[string]Series{
		"one huge loss":        {X: []float64{10}, Y: []float64{1e17}},
		"constant huge":        {X: []float64{1, 2, 3}, Y: []float64{1e300, 1e300, 1e300}},
		"a huge step":          {X: []float64{1e17}, Y: []float64{1}},
		"past float64's range": {X: []float64{1, 2}, Y: []float64{-1.7e308, 1.7e308}},
		"denormals":            {X: []float64{1, 2}, Y: []float64{5e-324, 1e-323}},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := LinesPNG("t", "x", "y", false, s)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s: still drawing after 20 s", name)
		}
	}
	if _, err := LinesPNG("t", "lr", "loss", true, Series{X: []float64{1e300}, Y: []float64{2}}); err != nil {
		t.Errorf("log axis, one point: %v", err)
	}
}

// TestPlainTicksLabelInFewestDigits: 25, 2.5 and 1000000, never "25.00" or
// "1e+06".
func TestPlainTicksLabelInFewestDigits(t *testing.T) {
	for _, tc := range []struct {
		min, max float64
		want     []string
	}{
		{10, 136, []string{"25", "75", "125"}},
		{0, 19, []string{"0", "8", "16"}},
		{0.5, 18.5, []string{"2.5", "10", "17.5"}},
		{0, 3e6, []string{"0", "1000000", "2000000", "3000000"}},
		{0.001, 0.0042, []string{"0.001", "0.002", "0.003", "0.004"}},
	} {
		var got []string
		for _, tk := range (plainTicks{}).Ticks(tc.min, tc.max) {
			if tk.Label != "" {
				got = append(got, tk.Label)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("ticks over [%v, %v]: %q, want %q", tc.min, tc.max, got, tc.want)
		}
	}
}
