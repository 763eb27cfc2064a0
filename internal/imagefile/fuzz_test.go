package imagefile

import (
	"bytes"
	"image"
	"image/color"
	"image/color/palette"
	"image/jpeg"
	"image/png"
	"testing"
)

// fuzzLimits are small so that an input whose header claims a big image
// costs little: the real limits are tested in imagefile_test.go.
var fuzzLimits = limits{side: 1024, pixels: 1 << 16}

// FuzzDecode feeds arbitrary bytes to what predict decodes an image file
// with: it must return an error or an image within the limits whose every
// pixel can be read, never panic or allocate past the limits.
func FuzzDecode(f *testing.F) {
	for _, b := range seedImages(f) {
		f.Add(b)
	}
	f.Add([]byte("P2\n# a comment\n3 2 # another\n15\n0 15 7\n 8 1 15\n"))
	f.Add(append([]byte("P5 2 2 255\n"), 0, 10, 200, 255))
	f.Add(append([]byte("P5\n2 1\n65535\n"), 0xff, 0xff, 0x80, 0x00))
	f.Add([]byte("P5 32768 32768 255\n\x00"))
	f.Add([]byte("P2 4000 4000 255\n1 2 3\n"))
	f.Add(pngSized(f, 100000, 100000))
	f.Add(jpegSized(f, 60000, 60000))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := decode(b, fuzzLimits)
		if err != nil {
			return
		}
		r := img.Bounds()
		if r.Dx() < 1 || r.Dy() < 1 || fuzzLimits.check(r.Dx(), r.Dy()) != nil {
			t.Fatalf("decoded a %v image, limits %+v", r, fuzzLimits)
		}
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				img.At(x, y).RGBA()
			}
		}
	})
}

// seedImages are small real PNGs and JPEGs of the kinds predict meets: gray,
// colour with alpha, paletted, 16-bit.
func seedImages(t testing.TB) [][]byte {
	gray := image.NewGray(image.Rect(0, 0, 8, 6))
	rgba := image.NewRGBA(image.Rect(0, 0, 5, 7))
	pal := image.NewPaletted(image.Rect(0, 0, 4, 4), palette.Plan9)
	wide := image.NewGray16(image.Rect(0, 0, 3, 2))
	for i := range gray.Pix {
		gray.Pix[i] = uint8(i * 5)
	}
	for i := range rgba.Pix {
		rgba.Pix[i] = uint8(i * 7)
	}
	for i := range pal.Pix {
		pal.Pix[i] = uint8(i * 13)
	}
	wide.Set(1, 1, color.Gray16{Y: 0x8001})
	var out [][]byte
	for _, img := range []image.Image{gray, rgba, pal, wide} {
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Bytes())
	}
	for _, img := range []image.Image{gray, rgba} {
		var b bytes.Buffer
		if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 50}); err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Bytes())
	}
	return out
}
