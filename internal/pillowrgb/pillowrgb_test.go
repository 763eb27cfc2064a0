package pillowrgb

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	_ "image/gif"
	_ "image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "golang.org/x/image/webp"
)

// diff is the largest and mean absolute difference of a's and b's RGB.
func diff(a, b image.Image) (largest int, mean float64) {
	r := a.Bounds()
	n, sum := 0, 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			p := color.NRGBAModel.Convert(a.At(x, y)).(color.NRGBA)
			q := color.NRGBAModel.Convert(b.At(x, y)).(color.NRGBA)
			for _, d := range []int{int(p.R) - int(q.R), int(p.G) - int(q.G), int(p.B) - int(q.B)} {
				d = max(d, -d)
				largest, sum, n = max(largest, d), sum+d, n+1
			}
		}
	}
	return largest, float64(sum) / float64(n)
}

// decodeFile decodes the image file at path: the picture, its format and
// its header (image.DecodeConfig's).
func decodeFile(t *testing.T, path string) (image.Image, string, image.Config) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	img, format, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img, format, cfg
}

// Pictures saved by Pillow as JPEG (4:2:0, 4:2:2, 4:4:4) and lossy WebP
// (testdata/make.py) convert to Pillow's own decoding of them (and a GIF
// whose frame lies inside a larger screen is placed on it, as Pillow does): the colour
// planes upsampled and converted as libjpeg-turbo and libwebp do them. WebP
// gives the same bits; JPEG a few levels at most, a tenth of a level on
// average (a quarter on the 2×3 picture), from Go's IDCT against libjpeg's. The nearest colour sample (what
// Go's YCbCr gives) is measured beside it and must be worse on subsampled
// colour (it was 30–50 levels off at most, 8 on average).
func TestConvertMatchesPillow(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.png")
	if len(files) < 20 {
		t.Fatalf("%d fixtures: run testdata/make.py", len(files))
	}
	for _, want := range files {
		src := strings.TrimSuffix(want, ".png")
		img, format, cfg := decodeFile(t, src)
		ref, _, _ := decodeFile(t, want)
		got := Convert(img, format, cfg)
		if format == "gif" {
			if got.Bounds() != ref.Bounds() {
				t.Errorf("%s: %v, want Pillow's %v", src, got.Bounds(), ref.Bounds())
			} else if largest, _ := diff(got, ref); largest != 0 {
				t.Errorf("%s: %d levels from Pillow's pixels, want the same", src, largest)
			}
			continue
		}
		if _, ok := got.(*image.RGBA); !ok {
			t.Errorf("%s: %T not converted", src, got)
			continue
		}
		largest, mean := diff(got, ref)
		goLargest, goMean := diff(img, ref)
		t.Logf("%s: largest %d, mean %.3f (Go's nearest sample: %d, %.3f)", filepath.Base(src), largest, mean, goLargest, goMean)
		limit, limitMean := 3, 0.25 // Go's IDCT against libjpeg's: a level here and there, more once converted
		if format == "webp" {
			limit, limitMean = 0, 0 // the same bits
		}
		if largest > limit || mean > limitMean {
			t.Errorf("%s: %d levels from Pillow's pixels (mean %.3f), want at most %d (mean %.2f)", src, largest, mean, limit, limitMean)
		}
		wide := img.Bounds().Dx() > 4 // narrower JPEG colour is repeated by libjpeg too
		if subsampled := !strings.Contains(src, "444"); subsampled && wide && goMean <= 2*mean {
			t.Errorf("%s: the nearest sample (mean %.3f) is no further from Pillow than the conversion (%.3f)", src, goMean, mean)
		}
	}
}

// A grey picture and a YCbCr of no known format come back as they were.
func TestConvertLeavesOthers(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 3, 3))
	if Convert(g, "jpeg", image.Config{}) != image.Image(g) {
		t.Error("a grey JPEG was converted")
	}
	y := image.NewYCbCr(image.Rect(0, 0, 4, 4), image.YCbCrSubsampleRatio420)
	if Convert(y, "tiff", image.Config{}) != image.Image(y) {
		t.Error("a YCbCr of another format was converted")
	}
	if _, ok := Convert(y, "jpeg", image.Config{}).(*image.RGBA); !ok {
		t.Error("a 4:2:0 JPEG was not converted")
	}
}

func init() { _ = png.Decode } // the fixtures are PNG

// A BMP of a kind Go's decoder does not read (RLE-compressed, which Pillow
// reads) is said to be that, not a damaged file.
func TestNotSupportedBMP(t *testing.T) {
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("BM")
	le(uint32(14 + 40 + 1024 + 4))
	le(uint32(0))
	le(uint32(14 + 40 + 1024))
	le(uint32(40))                       // BITMAPINFOHEADER
	le(int32(2))                         // width
	le(int32(2))                         // height
	le(uint16(1))                        // planes
	le(uint16(8))                        // bits per pixel
	le(uint32(1))                        // BI_RLE8
	le([5]uint32{4, 2835, 2835, 256, 0}) // image size, resolution, colours
	b.Write(make([]byte, 1024+4))
	_, format, err := image.DecodeConfig(bytes.NewReader(b.Bytes()))
	ns := NotSupported(format, b.Bytes(), err)
	if ns == nil || !strings.Contains(ns.Error(), "not a damaged file") {
		t.Fatalf("an RLE8 BMP (%v): %v", err, ns)
	}
}
