// Package imagefile reads the image files a user gives kiln predict: PGM
// (P2 or P5) and what the image decoders registered here read (PNG, JPEG,
// GIF, BMP, WebP: the folder data set's formats), and turns
// them into a model's input planes (grayscale or RGB, resized). It lives
// apart from cmd/kiln so that its fuzz target runs without building the
// command, and apart from trainer/data, whose loaders read data sets, not
// single pictures, and need no image decoders.
package imagefile

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"slices"
	"strings"

	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/webp"

	"github.com/kiln-ml/kiln/internal/pillowrgb"
	"github.com/kiln-ml/kiln/internal/userfile"
)

// readFormats are the formats image.DecodeConfig names that predict reads.
var readFormats = []string{"png", "jpeg", "gif", "bmp", "webp"}

// notAnImage is the error of a file no decoder reads.
const notAnImage = "not an image predict reads (PNG, JPEG, GIF, BMP, WebP or PGM)"

// The largest image predict reads. The model sees a few dozen pixels a
// side, so a larger image only costs memory: its decoded pixels and the
// float planes of the resize, about 16 bytes a pixel, 512 MiB at the limit.
const (
	MaxSide   = 16384
	MaxPixels = 1 << 25 // 32 Mi pixels: a 12-megapixel photo fits, twice
	// MaxFileBytes bounds the file itself, before any decoding.
	MaxFileBytes = 256 << 20
)

// limits bounds the image a decoder may allocate: the real ones, or small
// ones for fuzzing, where every input allocating its 32 Mi pixels would
// make the search crawl.
type limits struct{ side, pixels int }

var predictLimits = limits{MaxSide, MaxPixels}

// check refuses a w×h image beyond l, saying what the limits are.
func (l limits) check(w, h int) error {
	if w > l.side || h > l.side || w*h > l.pixels {
		return fmt.Errorf("%d×%d pixels: larger than predict takes (at most %d pixels a side and %d pixels in all); scale it down first",
			w, h, l.side, l.pixels)
	}
	return nil
}

// ReadFile reads and decodes a PGM (P2 or P5), PNG, JPEG, GIF, BMP or WebP
// from a regular file of at most MaxFileBytes. An image
// larger than MaxSide a side or MaxPixels in all is an error, found from its
// header before any pixel is allocated. Errors name the file.
func ReadFile(path string) (image.Image, error) {
	b, err := userfile.ReadFile(path, MaxFileBytes)
	if err != nil {
		return nil, err
	}
	img, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// Decode decodes the bytes of an image file within the limits
// ReadFile applies.
func Decode(b []byte) (image.Image, error) { return decode(b, predictLimits) }

func decode(b []byte, lim limits) (image.Image, error) {
	if len(b) == 0 {
		return nil, errors.New("an empty file, not an image")
	}
	if len(b) >= 2 && b[0] == 'P' && (b[1] == '2' || b[1] == '5') {
		return decodePGM(b, lim)
	}
	// The decoders allocate every pixel the header declares before they
	// read one: check the declaration first.
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if errors.Is(err, image.ErrFormat) {
		return nil, fmt.Errorf(notAnImage+": %w", err)
	}
	if !slices.Contains(readFormats, format) {
		// A decoder another package of the binary registered (TIFF, by
		// the plots' library): not one a folder set reads, so a model
		// would see it here only, converted untested against Pillow.
		return nil, fmt.Errorf("a %s image, %s: convert it to PNG", strings.ToUpper(format), notAnImage)
	}
	if err == nil {
		if err := lim.check(cfg.Width, cfg.Height); err != nil {
			return nil, err
		}
		var img image.Image
		if img, _, err = image.Decode(bytes.NewReader(b)); err == nil {
			return pillowrgb.Convert(img, format, cfg), nil
		}
	}
	if ns := pillowrgb.NotSupported(format, b, err); ns != nil {
		return nil, ns
	}
	// A format we read (DecodeConfig names it even when it fails) whose
	// header or pixels do not read: cut short or corrupted.
	return nil, fmt.Errorf("a damaged %s file (truncated or corrupt): %w", strings.ToUpper(format), err)
}

// decodePGM reads a binary (P5) or plain (P2) PGM with any maxval up to
// 65535, scaling values to 8 bits.
func decodePGM(b []byte, lim limits) (*image.Gray, error) {
	r := bytes.NewReader(b)
	magic, _ := r.ReadByte()
	kind, _ := r.ReadByte()
	if magic != 'P' || (kind != '2' && kind != '5') {
		return nil, errors.New("PGM: bad magic number")
	}
	var hdr [3]int // width, height, maxval
	for i := range hdr {
		v, err := pgmInt(r)
		if err != nil {
			return nil, fmt.Errorf("PGM header: %w", err)
		}
		hdr[i] = v
	}
	w, h, maxval := hdr[0], hdr[1], hdr[2]
	if w < 1 || h < 1 || maxval < 1 || maxval > 65535 {
		return nil, fmt.Errorf("PGM: bad header %d×%d, maxval %d", w, h, maxval)
	}
	if err := lim.check(w, h); err != nil {
		return nil, fmt.Errorf("PGM: %w", err)
	}
	scale := func(v int) (uint8, error) {
		if v > maxval {
			return 0, fmt.Errorf("PGM: value %d above maxval %d", v, maxval)
		}
		return uint8((v*255 + maxval/2) / maxval), nil
	}
	if kind == '5' {
		return pgmBinary(b[len(b)-r.Len():], w, h, maxval > 255, scale)
	}
	// Each value takes a digit and all but the last a separator: a file
	// too short for that is refused before its pixels are allocated.
	if n := w * h; 2*n-1 > r.Len() {
		return nil, fmt.Errorf("PGM: %d×%d pixels need at least %d bytes, the file has %d after its header", w, h, 2*n-1, r.Len())
	}
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		v, err := pgmInt(r)
		if err != nil {
			return nil, fmt.Errorf("PGM pixel %d: %w", i, err)
		}
		if img.Pix[i], err = scale(v); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// pgmBinary decodes the pixels of a P5 file, raw being what follows the one
// whitespace byte after maxval (pgmInt consumed it): one byte a pixel, or
// two, big-endian, when wide.
func pgmBinary(raw []byte, w, h int, wide bool, scale func(int) (uint8, error)) (*image.Gray, error) {
	size := 1
	if wide {
		size = 2
	}
	if len(raw) < w*h*size {
		return nil, fmt.Errorf("PGM: %d×%d pixels need %d bytes, the file has %d after its header", w, h, w*h*size, len(raw))
	}
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		v := int(raw[i])
		if wide {
			v = int(raw[2*i])<<8 | int(raw[2*i+1])
		}
		p, err := scale(v)
		if err != nil {
			return nil, err
		}
		img.Pix[i] = p
	}
	return img, nil
}

// pgmInt reads a decimal number after whitespace and # comments, and the
// one whitespace byte that ends it.
func pgmInt(r *bytes.Reader) (int, error) {
	space := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	c, err := r.ReadByte()
	for err == nil && (space(c) || c == '#') {
		for err == nil && c == '#' { // a comment runs to the end of the line
			if c, err = r.ReadByte(); err == nil && c == '\n' {
				c = ' '
			} else {
				c = '#'
			}
		}
		if err == nil {
			c, err = r.ReadByte()
		}
	}
	if err != nil {
		return 0, errors.New("truncated")
	}
	if c < '0' || c > '9' {
		return 0, fmt.Errorf("unexpected %q", c)
	}
	n := 0
	for {
		n = n*10 + int(c-'0')
		if n > 1<<20 {
			return 0, errors.New("number too large")
		}
		c, err = r.ReadByte()
		switch {
		case err == io.EOF:
			return n, nil
		case err != nil:
			return 0, err
		case space(c):
			return n, nil
		case c < '0' || c > '9':
			return 0, fmt.Errorf("unexpected %q", c)
		}
	}
}
