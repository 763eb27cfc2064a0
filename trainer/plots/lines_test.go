package plots

import (
	"bytes"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
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
