package imagefile

import (
	"image"
	"image/color"
	"math"
	"slices"
	"testing"

	"github.com/kiln-ml/kiln/trainer/data"
)

func TestResizePlane(t *testing.T) {
	src := []float32{1, 2, 3, 4}
	if got := resizePlane(src, 2, 2, 2, 2); &got[0] != &src[0] {
		t.Error("same size should return the plane itself")
	}
	// Upscaling is plain bilinear on pixel centres, edges clamped.
	if got := resizePlane([]float32{0, 255}, 1, 2, 1, 4); !slices.Equal(got, []float32{0, 63.75, 191.25, 255}) {
		t.Errorf("1×2 → 1×4: %v", got)
	}
	// Downscaling averages: a one-pixel line survives a 4× shrink.
	line := make([]float32, 8*8)
	for x := 0; x < 8; x++ {
		line[3*8+x] = 255
	}
	got := resizePlane(line, 8, 8, 2, 2)
	if got[0] < 20 || got[0] != got[1] || got[2] != 0 && got[2] >= got[0] {
		t.Errorf("thin line shrunk 8×8 → 2×2: %v", got)
	}
	// A constant plane stays constant either way.
	flat := make([]float32, 5*7)
	for i := range flat {
		flat[i] = 100
	}
	for _, sz := range [][2]int{{28, 28}, {3, 2}, {5, 7}, {1, 1}} {
		for _, v := range resizePlane(flat, 5, 7, sz[0], sz[1]) {
			if math.Abs(float64(v)-100) > 1e-3 {
				t.Fatalf("constant plane → %v: value %v", sz, v)
			}
		}
	}
}

func TestPixels(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 2, 1))
	img.Set(0, 0, color.RGBA{255, 0, 0, 255})
	img.Set(1, 0, color.RGBA{10, 20, 30, 255})
	gray, err := Pixels(img, 1, 1, 2, false)
	if err != nil || !slices.Equal(gray, []byte{76, 18}) { // luma 0.299 R + 0.587 G + 0.114 B
		t.Errorf("gray: %v %v", gray, err)
	}
	rgb, err := Pixels(img, 3, 1, 2, false)
	if err != nil || !slices.Equal(rgb, []byte{255, 10, 0, 20, 0, 30}) { // R plane, G plane, B plane
		t.Errorf("rgb planes: %v %v", rgb, err)
	}
	inv, err := Pixels(img, 1, 1, 2, true)
	if err != nil || !slices.Equal(inv, []byte{179, 237}) {
		t.Errorf("inverted: %v %v", inv, err)
	}
	if _, err := Pixels(img, 2, 1, 2, false); err == nil {
		t.Error("2 channels: no error")
	}
	if _, err := Pixels(image.NewGray(image.Rect(0, 0, 0, 3)), 1, 2, 2, false); err == nil {
		t.Error("empty image: no error")
	}
}

func TestLightBackground(t *testing.T) {
	if !LightBackground([]byte{255, 200, 0}) || LightBackground([]byte{255, 0}) || LightBackground([]byte{0, 10, 130}) {
		t.Error("light means more than half the pixels at 128 or above")
	}
}

// Input normalises the resized picture as the data set's images are.
func TestInput(t *testing.T) {
	mnist, err := data.Describe("mnist")
	if err != nil {
		t.Fatal(err)
	}
	white := image.NewGray(image.Rect(0, 0, 56, 40))
	for i := range white.Pix {
		white.Pix[i] = 255
	}
	x, light, err := Input(white, mnist, false)
	if err != nil || !x.SameShape(1, 1, 28, 28) || !light {
		t.Fatalf("a white 56×40 picture: %v, light %v, %v", x, light, err)
	}
	want := float32((1 - mnist.Mean[0]) / mnist.Std[0])
	if x.Float32()[0] != want || x.Float32()[28*28-1] != want {
		t.Errorf("white normalised to %v…%v, want %v", x.Float32()[0], x.Float32()[28*28-1], want)
	}
	if _, light, err := Input(white, mnist, true); err != nil || light {
		t.Errorf("inverted, the picture is dark: light %v, %v", light, err)
	}
	cifar, err := data.Describe("cifar10")
	if err != nil {
		t.Fatal(err)
	}
	if x, light, err := Input(white, cifar, false); err != nil || !x.SameShape(1, 3, 32, 32) || light {
		t.Errorf("for cifar10: %v, light %v (only grayscale models want light on dark), %v", x, light, err)
	}
}
