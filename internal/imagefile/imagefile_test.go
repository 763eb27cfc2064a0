package imagefile

import (
	"slices"
	"testing"
)

func TestDecodePGM(t *testing.T) {
	plain := "P2\n# a comment\n3 2 # another\n15\n0 15 7\n 8 1 15\n"
	img, err := decodePGM([]byte(plain))
	if err != nil {
		t.Fatal(err)
	}
	want := []uint8{0, 255, 119, 136, 17, 255} // v*255/15, rounded
	if img.Bounds().Dx() != 3 || img.Bounds().Dy() != 2 || !slices.Equal(img.Pix, want) {
		t.Errorf("P2: %v %v, want %v", img.Bounds(), img.Pix, want)
	}

	raw := append([]byte("P5 2 2 255\n"), 0, 10, 200, 255)
	if img, err = decodePGM(raw); err != nil || !slices.Equal(img.Pix, []uint8{0, 10, 200, 255}) {
		t.Errorf("P5: %v %v", img, err)
	}
	wide := append([]byte("P5\n2 1\n65535\n"), 0xff, 0xff, 0x80, 0x00)
	if img, err = decodePGM(wide); err != nil || !slices.Equal(img.Pix, []uint8{255, 128}) {
		t.Errorf("16-bit P5: %v %v", img, err)
	}

	for name, bad := range map[string]string{
		"truncated pixels": "P5 4 4 255\n\x00\x01",
		"truncated header": "P5 4",
		"bad magic":        "P7 1 1 255\n\x00",
		"zero width":       "P5 0 4 255\n",
		"maxval 0":         "P2 1 1 0\n0",
		"above maxval":     "P2 1 1 15\n16",
		"not a number":     "P2 1 x 15\n1",
	} {
		if _, err := decodePGM([]byte(bad)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
