package plots

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/kiln-ml/kiln/trainer"
)

// Pixel layout of the image grids, shared with the tests.
const (
	pad       = 4  // space between cells
	titleH    = 20 // the title bar on top of every grid picture
	captionH  = 14 // a caption line under a cell
	charW     = 7  // basicfont.Face7x13 advance
	tileSize  = 84 // samples and attention cells: 28×28 at ×3
	filterBox = 48 // a filter cell
)

type colorRGBA = color.RGBA

func rgb(r, g, b uint8) color.RGBA { return color.RGBA{R: r, G: g, B: b, A: 255} }

var (
	white = color.RGBA{255, 255, 255, 255}
	black = color.RGBA{0, 0, 0, 255}
	red   = color.RGBA{200, 30, 30, 255}
	green = color.RGBA{20, 120, 40, 255}
	grey  = color.RGBA{110, 110, 110, 255}
)

// maxPixels bounds a picture: 40 million pixels (160 MB) is past any real
// run's (1,000 classes make a 6,000×6,000 confusion matrix), and a
// visuals.json whose shapes ask for more is not drawn rather than taking
// the machine's memory.
const maxPixels = 40_000_000

// newImage is a white w×h picture, or an error when w×h is past maxPixels.
func newImage(w, h int) (*image.RGBA, error) {
	if w < 1 || h < 1 || w > maxPixels/h {
		return nil, fmt.Errorf("a picture of %d×%d pixels is too large to draw", w, h)
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)
	return img, nil
}

// text draws s with its top-left corner at (x, y), cut to maxW pixels.
func text(img *image.RGBA, x, y int, s string, c color.Color, maxW int) {
	if maxW > 0 {
		if n := maxW / charW; len([]rune(s)) > n {
			s = string([]rune(s)[:max(n, 0)])
		}
	}
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y+11)}
	d.DrawString(s)
}

func textWidth(s string) int { return charW * len([]rune(s)) }

// fill paints a rectangle.
func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

// border draws a rectangle's outline, t pixels thick, outside r.
func border(img *image.RGBA, r image.Rectangle, t int, c color.Color) {
	o := r.Inset(-t)
	fill(img, image.Rect(o.Min.X, o.Min.Y, o.Max.X, r.Min.Y), c)
	fill(img, image.Rect(o.Min.X, r.Max.Y, o.Max.X, o.Max.Y), c)
	fill(img, image.Rect(o.Min.X, r.Min.Y, r.Min.X, r.Max.Y), c)
	fill(img, image.Rect(r.Max.X, r.Min.Y, o.Max.X, r.Max.Y), c)
}

// blit draws a w×h picture given by at, each pixel a scale×scale block,
// with its top-left corner at (x0, y0).
func blit(img *image.RGBA, x0, y0, w, h, scale int, at func(x, y int) color.RGBA) {
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := at(x, y)
			for dy := 0; dy < scale; dy++ {
				o := img.PixOffset(x0+x*scale, y0+y*scale+dy)
				for dx := 0; dx < scale; dx++ {
					img.Pix[o], img.Pix[o+1], img.Pix[o+2], img.Pix[o+3] = c.R, c.G, c.B, 255
					o += 4
				}
			}
		}
	}
}

func byte01(v float64) uint8 {
	if math.IsNaN(v) {
		return 0
	}
	return uint8(math.Round(min(max(v, 0), 1) * 255))
}

func gray(v float64) color.RGBA {
	g := byte01(v)
	return color.RGBA{g, g, g, 255}
}

// heat maps [0,1] to a perceptual dark-blue → green → yellow scale (a
// coarse viridis).
func heat(v float64) color.RGBA {
	stops := [...][3]float64{{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}}
	if math.IsNaN(v) {
		return color.RGBA{255, 0, 255, 255}
	}
	v = min(max(v, 0), 1) * float64(len(stops)-1)
	i := min(int(v), len(stops)-2)
	f := v - float64(i)
	var c [3]uint8
	for k := range c {
		c[k] = uint8(math.Round(stops[i][k]*(1-f) + stops[i+1][k]*f))
	}
	return color.RGBA{c[0], c[1], c[2], 255}
}

// diverging maps [-1,1] to blue → white → red.
func diverging(v float64) color.RGBA {
	if math.IsNaN(v) {
		return color.RGBA{255, 0, 255, 255}
	}
	v = min(max(v, -1), 1)
	if v < 0 {
		a := byte01(1 + v)
		return color.RGBA{a, a, 255, 255}
	}
	a := byte01(1 - v)
	return color.RGBA{255, a, a, 255}
}

// sampleColor reads pixel (x, y) of a (c,h,w) image in [0,1]: RGB for three
// channels, grey otherwise (the first channel).
func sampleColor(px trainer.Floats, c, h, w int) func(x, y int) color.RGBA {
	return func(x, y int) color.RGBA {
		i := y*w + x
		if c == 3 {
			return color.RGBA{byte01(float64(px[i])), byte01(float64(px[h*w+i])), byte01(float64(px[2*h*w+i])), 255}
		}
		return gray(float64(px[i]))
	}
}

// scaleFor is the integer zoom that brings size closest to box (at least 1).
func scaleFor(size, box int) int { return max(1, box/max(size, 1)) }

func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		if a := math.Abs(float64(x)); a > m && !math.IsInf(a, 0) {
			m = a
		}
	}
	if m == 0 {
		return 1
	}
	return m
}

func encodePNG(path string, img image.Image) error {
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img); err != nil {
		return err
	}
	return writePicture(path, buf.Bytes())
}

// savePicture writes a picture's file. The fuzz targets swap it for one
// that keeps nothing: two fsyncs per input would slow them a hundredfold.
var savePicture = trainer.WriteFileAtomic
