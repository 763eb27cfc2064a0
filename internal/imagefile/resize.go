package imagefile

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/trainer/data"
)

// The conversion from a decoded image to a model's input lives beside the
// decoder: MaxPixels bounds what it allocates (the float planes below).

// Input is img as one sample of d, (1, C, H, W) float32: Pixels at d's
// shape, normalised exactly as d's images are. light reports a grayscale
// picture that is mostly light (LightBackground, after any invert), most
// likely dark ink on paper where d's images are light on dark.
func Input(img image.Image, d *data.Dataset, invert bool) (x *engine.Tensor, light bool, err error) {
	pixels, err := Pixels(img, d.Channels, d.Height, d.Width, invert)
	if err != nil {
		return nil, false, err
	}
	x = engine.New(engine.Float32, 1, d.Channels, d.Height, d.Width)
	if err := d.NormalizeImage(x.Float32(), pixels); err != nil {
		return nil, false, err
	}
	return x, d.Channels == 1 && LightBackground(pixels), nil
}

// Pixels converts img to c planes (1: grayscale luma, 3: RGB) of h×w bytes,
// resizing as needed; invert maps v to 255-v first. Transparent pixels count
// as black (the image package's premultiplied colours).
func Pixels(img image.Image, c, h, w int, invert bool) ([]byte, error) {
	if c != 1 && c != 3 {
		return nil, fmt.Errorf("the model takes %d channels; an image gives 1 (grayscale) or 3 (RGB)", c)
	}
	bnd := img.Bounds()
	sw, sh := bnd.Dx(), bnd.Dy()
	if sw < 1 || sh < 1 {
		return nil, errors.New("empty image")
	}
	planes := make([][]float32, c)
	for i := range planes {
		planes[i] = make([]float32, sw*sh)
	}
	for y := 0; y < sh; y++ {
		for x := 0; x < sw; x++ {
			px := img.At(bnd.Min.X+x, bnd.Min.Y+y)
			if c == 1 {
				planes[0][y*sw+x] = float32(color.GrayModel.Convert(px).(color.Gray).Y)
				continue
			}
			r, g, b, _ := px.RGBA()
			planes[0][y*sw+x], planes[1][y*sw+x], planes[2][y*sw+x] = float32(r>>8), float32(g>>8), float32(b>>8)
		}
	}
	out := make([]byte, 0, c*h*w)
	for _, p := range planes {
		if invert {
			for i, v := range p {
				p[i] = 255 - v
			}
		}
		for _, v := range resizePlane(p, sh, sw, h, w) {
			out = append(out, uint8(math.Round(math.Min(255, math.Max(0, float64(v))))))
		}
	}
	return out, nil
}

// LightBackground reports whether most pixels are light, as in a drawing in
// dark ink on paper: MNIST's digits are light on dark.
func LightBackground(pixels []byte) bool {
	light := 0
	for _, b := range pixels {
		if b >= 128 {
			light++
		}
	}
	return 2*light > len(pixels)
}

// resizePlane resamples an sh×sw plane to dh×dw with a triangle (bilinear)
// filter on pixel centres, widened by the scale when shrinking as PIL's
// BILINEAR is, so that downscaling averages instead of skipping pixels.
func resizePlane(src []float32, sh, sw, dh, dw int) []float32 {
	if sh == dh && sw == dw {
		return src
	}
	wx, wy := filterTaps(sw, dw), filterTaps(sh, dh)
	tmp := make([]float32, sh*dw)
	for y := 0; y < sh; y++ {
		row := src[y*sw : (y+1)*sw]
		for x, t := range wx {
			s := 0.0
			for j, wt := range t.w {
				s += wt * float64(row[t.first+j])
			}
			tmp[y*dw+x] = float32(s)
		}
	}
	out := make([]float32, dh*dw)
	for y, t := range wy {
		for x := 0; x < dw; x++ {
			s := 0.0
			for j, wt := range t.w {
				s += wt * float64(tmp[(t.first+j)*dw+x])
			}
			out[y*dw+x] = float32(s)
		}
	}
	return out
}

// tap lists the weights of source pixels first, first+1, … for one output.
type tap struct {
	first int
	w     []float64
}

func filterTaps(in, out int) []tap {
	scale := float64(in) / float64(out)
	support := math.Max(scale, 1)
	taps := make([]tap, out)
	for i := range taps {
		centre := (float64(i) + 0.5) * scale
		lo := max(int(math.Floor(centre-support)), 0)
		hi := min(int(math.Ceil(centre+support)), in)
		t := tap{first: lo}
		sum := 0.0
		for j := lo; j < hi; j++ {
			wt := math.Max(0, 1-math.Abs(float64(j)+0.5-centre)/support)
			t.w = append(t.w, wt)
			sum += wt
		}
		for j := range t.w {
			t.w[j] /= sum
		}
		taps[i] = t
	}
	return taps
}
