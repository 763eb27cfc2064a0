package data

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readPlanes reads a fixture PNG (grey or RGB) as byte planes.
func readPlanes(t *testing.T, path string) (planes [][]byte, h, w int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	c := 3
	if _, ok := img.(*image.Gray); ok {
		c = 1
	}
	r := img.Bounds()
	return toPlanes(img, c), r.Dy(), r.Dx()
}

// TestFitPlaneMatchesPillow compares crop and pad with what Pillow 9.4's
// ImageOps.fit and ImageOps.pad (BILINEAR) made of the same pictures
// (testdata/pilresize/make.py): shrinking, enlarging, and changing the aspect
// ratio, grey and RGB. Pillow works in fixed point; so does fitPlane, and the
// bytes are equal.
func TestFitPlaneMatchesPillow(t *testing.T) {
	dir := filepath.Join("testdata", "pilresize")
	sources, _ := filepath.Glob(filepath.Join(dir, "*-[0-9]*x[0-9]*.png"))
	compared := 0
	for _, src := range sources {
		if strings.Contains(src, "-crop-") || strings.Contains(src, "-pad-") {
			continue
		}
		planes, h, w := readPlanes(t, src)
		for _, fit := range []string{"crop", "pad"} {
			for _, size := range [][2]int{{28, 28}, {32, 32}, {24, 16}, {40, 50}} {
				want := fmt.Sprintf("%s-%s-%dx%d.png", src[:len(src)-4], fit, size[0], size[1])
				wp, dh, dw := readPlanes(t, want)
				if dh != size[0] || dw != size[1] || len(wp) != len(planes) {
					t.Fatalf("%s: fixture is %d planes %dx%d", want, len(wp), dh, dw)
				}
				for c := range planes {
					got := fitPlane(planes[c], h, w, dh, dw, fit == "pad")
					if i := firstDiff(got, wp[c]); i >= 0 {
						t.Errorf("%s channel %d: pixel (%d, %d) is %d, Pillow's %d", want, c, i/dw, i%dw, got[i], wp[c][i])
					}
				}
				compared++
			}
		}
	}
	if compared < 100 {
		t.Fatalf("compared %d fixtures, want the 112 make.py writes", compared)
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return len(a)
	}
	return -1
}

// TestFitPlaneSameSizeIsACopy: an image already of the size is kept as is,
// crop or pad.
func TestFitPlaneSameSizeIsACopy(t *testing.T) {
	src := []byte{1, 2, 3, 4, 5, 6}
	for _, pad := range []bool{false, true} {
		got := fitPlane(src, 2, 3, 2, 3, pad)
		if firstDiff(got, src) >= 0 {
			t.Errorf("pad %v: %v, want %v", pad, got, src)
		}
	}
}
