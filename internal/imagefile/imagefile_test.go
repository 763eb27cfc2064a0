package imagefile

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/kiln-ml/kiln/internal/userfile/userfiletest"
)

func TestDecodePGM(t *testing.T) {
	plain := "P2\n# a comment\n3 2 # another\n15\n0 15 7\n 8 1 15\n"
	img, err := decodePGM([]byte(plain), predictLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint8{0, 255, 119, 136, 17, 255} // v*255/15, rounded
	if img.Bounds().Dx() != 3 || img.Bounds().Dy() != 2 || !slices.Equal(img.Pix, want) {
		t.Errorf("P2: %v %v, want %v", img.Bounds(), img.Pix, want)
	}

	raw := append([]byte("P5 2 2 255\n"), 0, 10, 200, 255)
	if img, err = decodePGM(raw, predictLimits); err != nil || !slices.Equal(img.Pix, []uint8{0, 10, 200, 255}) {
		t.Errorf("P5: %v %v", img, err)
	}
	wide := append([]byte("P5\n2 1\n65535\n"), 0xff, 0xff, 0x80, 0x00)
	if img, err = decodePGM(wide, predictLimits); err != nil || !slices.Equal(img.Pix, []uint8{255, 128}) {
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
		if _, err := decodePGM([]byte(bad), predictLimits); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// pngSized is a real 1×1 PNG whose header claims w×h (the IHDR CRC
// recomputed, so the decoder believes it): what a corrupt or hostile file
// looks like.
func pngSized(t testing.TB, w, h uint32) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// Signature (8), IHDR length (4), "IHDR" (4), width, height, …, CRC.
	ihdr := b[12 : 12+4+13]
	binary.BigEndian.PutUint32(ihdr[4:], w)
	binary.BigEndian.PutUint32(ihdr[8:], h)
	binary.BigEndian.PutUint32(b[12+4+13:], crc32.ChecksumIEEE(ihdr))
	return b
}

// jpegSized is a real 16×16 JPEG whose SOF0 claims w×h.
func jpegSized(t testing.TB, w, h uint16) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewGray(image.Rect(0, 0, 16, 16)), nil); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	i := bytes.Index(b, []byte{0xff, 0xc0})
	if i < 0 {
		t.Fatal("no SOF0 in the encoded JPEG")
	}
	// FF C0, length (2), precision (1), height (2), width (2).
	binary.BigEndian.PutUint16(b[i+5:], h)
	binary.BigEndian.PutUint16(b[i+7:], w)
	return b
}

func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A small file whose header claims a huge image is refused from the header,
// before the decoder allocates the pixels, with the limit in the error.
func TestReadFileRefusesHugeImages(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"huge.png", pngSized(t, 100000, 100000), "at most 16384 pixels a side"},
		{"wide.png", pngSized(t, 16384, 16384), "33554432 pixels in all"},
		{"huge.jpg", jpegSized(t, 60000, 60000), "at most 16384 pixels a side"},
		{"huge.pgm", []byte("P5 32768 32768 255\n\x00"), "at most 16384 pixels a side"},
		{"wide.pgm", []byte("P2\n16384 16384 255\n0 0 0\n"), "33554432 pixels in all"},
	} {
		path := writeFile(t, c.name, c.b)
		var err error
		alloc, _ := userfiletest.Allocated(func() error {
			_, err = ReadFile(path)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s (%d bytes): %v, want an error naming the file and saying %q", c.name, len(c.b), err, c.want)
		}
		if alloc > 1<<20 {
			t.Errorf("%s (%d bytes): %d bytes allocated before the error", c.name, len(c.b), alloc)
		}
	}
}

// A PGM within the limits but with fewer bytes than its pixels need is
// refused before its pixels are allocated.
func TestReadFileRefusesShortPGM(t *testing.T) {
	for name, b := range map[string]string{
		"short.pgm":  "P5 4000 4000 255\n\x00\x01",
		"short2.pgm": "P5 4000 4000 65535\n" + strings.Repeat("\x00", 16e6),
		"plain.pgm":  "P2 4000 4000 255\n1 2 3\n",
	} {
		path := writeFile(t, name, []byte(b))
		var err error
		alloc, _ := userfiletest.Allocated(func() error {
			_, err = ReadFile(path)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
		if alloc > 1<<20+uint64(len(b)) {
			t.Errorf("%s: %d bytes allocated for a %d-byte file", name, alloc, len(b))
		}
	}
}

func TestReadFileRefusesWhatIsNotARegularFile(t *testing.T) {
	for _, s := range userfiletest.Specials(t) {
		err := userfiletest.Promptly(t, 5*time.Second, func() error {
			_, err := ReadFile(s.Path)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), s.Path) || !strings.Contains(err.Error(), s.Kind) {
			t.Errorf("ReadFile(%s) = %v, want an error naming it %s", s.Path, err, s.Kind)
		}
	}
	big := filepath.Join(t.TempDir(), "big.png")
	if err := os.WriteFile(big, pngSized(t, 1, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, MaxFileBytes+1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	if _, err := ReadFile(big); err == nil || !strings.Contains(err.Error(), fmt.Sprint(MaxFileBytes)) {
		t.Errorf("a file over %d bytes: %v", MaxFileBytes, err)
	}
}

// Images at the limits still decode.
func TestReadFileAtTheLimits(t *testing.T) {
	if err := predictLimits.check(MaxSide, MaxPixels/MaxSide); err != nil {
		t.Errorf("at both limits: %v", err)
	}
	if predictLimits.check(MaxSide+1, 1) == nil || predictLimits.check(MaxSide, MaxPixels/MaxSide+1) == nil {
		t.Error("past a limit: no error")
	}
	for _, r := range []image.Rectangle{image.Rect(0, 0, MaxSide, 1), image.Rect(0, 0, 1, MaxSide)} {
		var buf bytes.Buffer
		if err := png.Encode(&buf, image.NewGray(r)); err != nil {
			t.Fatal(err)
		}
		img, err := ReadFile(writeFile(t, "limit.png", buf.Bytes()))
		if err != nil || img.Bounds() != r {
			t.Errorf("a %v PNG: %v", r, err)
		}
	}
}

// predict's help states the limits: keep it in step.
func TestLimitsAsDocumented(t *testing.T) {
	if MaxSide != 16384 || MaxPixels != 33554432 || MaxFileBytes != 256<<20 {
		t.Errorf("limits %d a side, %d in all, %d-byte files: update kiln predict's help", MaxSide, MaxPixels, MaxFileBytes)
	}
}

// Every format the folder data set reads, predict reads too (GIF and BMP
// written here; WebP has no encoder in Go's libraries, so only that its
// decoder answers is checked); anything else is refused naming them.
func TestDecodeTheFolderFormats(t *testing.T) {
	src := image.NewGray(image.Rect(0, 0, 5, 3))
	for i := range src.Pix {
		src.Pix[i] = uint8(40 * i)
	}
	for _, f := range []struct {
		name   string
		encode func(*bytes.Buffer) error
	}{
		{"gif", func(b *bytes.Buffer) error { return gif.Encode(b, src, nil) }},
		{"bmp", func(b *bytes.Buffer) error { return bmp.Encode(b, src) }},
	} {
		var b bytes.Buffer
		if err := f.encode(&b); err != nil {
			t.Fatal(err)
		}
		img, err := Decode(b.Bytes())
		if err != nil || img.Bounds() != src.Bounds() {
			t.Errorf("%s: %v, %v", f.name, img, err)
		}
	}
	// A RIFF/WEBP header with no image in it: the WebP decoder's error, not
	// the unknown format's.
	if _, err := Decode([]byte("RIFF\x1a\x00\x00\x00WEBPVP8 \x0e\x00\x00\x00")); err == nil || strings.Contains(err.Error(), "unknown format") {
		t.Errorf("a broken WebP: %v, want the WebP decoder's error", err)
	}
	if _, err := Decode(nil); err == nil || !strings.Contains(err.Error(), "an empty file") {
		t.Errorf("an empty file: %v, want it called empty", err)
	}
	if _, err := Decode([]byte("hello\n")); err == nil || !strings.Contains(err.Error(), "PNG, JPEG, GIF, BMP, WebP or PGM") {
		t.Errorf("a text file: %v, want an error naming the formats", err)
	}
	// A file of a format read here, cut short in its header or its pixels,
	// is named damaged, not of an unknown kind.
	var b bytes.Buffer
	if err := png.Encode(&b, src); err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{20, b.Len() - 20} {
		_, err := Decode(b.Bytes()[:cut])
		if err == nil || !strings.Contains(err.Error(), "a damaged PNG file") {
			t.Errorf("a PNG cut at %d of %d bytes: %v, want it named a damaged PNG", cut, b.Len(), err)
		}
	}
}

// A TIFF, decodable once any package of the binary registers its decoder
// (the plots' library does), is refused as the folder sets refuse it: it
// was read by predict --image alone, its colours untested against Pillow.
func TestDecodeRefusesTIFF(t *testing.T) {
	var b bytes.Buffer
	if err := tiff.Encode(&b, image.NewRGBA(image.Rect(0, 0, 4, 4)), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(b.Bytes()); err == nil || !strings.Contains(err.Error(), "TIFF") || !strings.Contains(err.Error(), "PNG") {
		t.Fatalf("a TIFF: %v", err)
	}
}
