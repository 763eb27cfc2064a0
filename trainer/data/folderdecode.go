package data

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // the formats the folder set reads
	_ "image/jpeg"
	_ "image/png"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-isatty"
	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/webp"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/pillowrgb"
	"github.com/kiln-ml/kiln/internal/userfile"
)

// The largest image file the folder set decodes, as kiln predict's limits
// (internal/imagefile, which cannot be imported here: it imports this
// package): a larger one is refused from its header, before its pixels are
// allocated.
const (
	folderMaxSide      = 16384
	folderMaxPixels    = 1 << 25
	folderMaxFileBytes = 256 << 20
)

// imageHeader is what a file's header says: its size and whether it is grey.
type imageHeader struct {
	w, h int
	grey bool
}

// readHeader reads path's header and checks its dimensions.
func readHeader(path string) (imageHeader, error) {
	f, fi, err := userfile.Open(path)
	if err != nil {
		return imageHeader{}, unwrapPath(err)
	}
	defer f.Close()
	if fi.Size() == 0 {
		return imageHeader{}, fmt.Errorf("an empty file")
	}
	if fi.Size() > folderMaxFileBytes {
		return imageHeader{}, fmt.Errorf("%d bytes, more than the %d an image file may have", fi.Size(), folderMaxFileBytes)
	}
	head := make([]byte, 26)
	n, _ := io.ReadFull(f, head)
	cfg, format, err := image.DecodeConfig(io.LimitReader(io.MultiReader(bytes.NewReader(head[:n]), f), folderMaxFileBytes))
	if err != nil {
		return imageHeader{}, headerError(format, head[:n], err)
	}
	if err := checkDims(cfg.Width, cfg.Height); err != nil {
		return imageHeader{}, fmt.Errorf("%s %w", format, err)
	}
	return imageHeader{w: cfg.Width, h: cfg.Height, grey: greyModel(cfg.ColorModel) || pngGreyAlpha(format, head[:n])}, nil
}

// pngGreyAlpha reports a PNG of grey with alpha (IHDR colour type 4), which
// Go reads as NRGBA and Pillow as "LA": a grey picture, its alpha dropped.
func pngGreyAlpha(format string, head []byte) bool {
	return format == "png" && len(head) > 25 && head[25] == 4
}

// headerError is DecodeConfig's failure: a file of no format read here, or
// one of a format read here whose header is cut short or corrupt (format
// names it then).
func headerError(format string, head []byte, err error) error {
	if ns := pillowrgb.NotSupported(format, head, err); ns != nil {
		return ns
	}
	if errors.Is(err, image.ErrFormat) {
		return fmt.Errorf("not a PNG, JPEG, GIF, BMP or WebP image: %w", err)
	}
	return fmt.Errorf("a %s image whose header does not read (truncated or corrupt?): %w", format, err)
}

// checkDims refuses a zero-size image, and one too large to decode safely.
func checkDims(w, h int) error {
	if w < 1 || h < 1 {
		return fmt.Errorf("header says %d×%d pixels: an empty image", w, h)
	}
	if w > folderMaxSide || h > folderMaxSide || w*h > folderMaxPixels {
		return fmt.Errorf("header says %d×%d pixels: larger than the folder set takes (at most %d a side and %d in all); scale it down first",
			w, h, folderMaxSide, folderMaxPixels)
	}
	return nil
}

// greyModel reports whether images of model m are grey: grey models, and
// palettes of grey colours only.
func greyModel(m color.Model) bool {
	switch m {
	case color.GrayModel, color.Gray16Model:
		return true
	}
	if p, ok := m.(color.Palette); ok {
		for _, c := range p {
			r, g, b, _ := c.RGBA()
			if r != g || g != b {
				return false
			}
		}
		return true
	}
	return false
}

// decodeFile decodes path, checking its header first, and returns its c
// planes (grey or RGB) at its own size.
func decodeFile(path string, c int) (planes [][]byte, h, w int, err error) {
	b, err := userfile.ReadFile(path, folderMaxFileBytes)
	if err != nil {
		return nil, 0, 0, unwrapPath(err)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, 0, 0, headerError(format, b, err)
	}
	if err := checkDims(cfg.Width, cfg.Height); err != nil {
		return nil, 0, 0, err
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, 0, 0, cmp.Or(pillowrgb.NotSupported(format, b, err), fmt.Errorf("a %s image that does not decode (truncated or corrupt?): %w", format, err))
	}
	img = pillowrgb.Convert(img, format, cfg)
	r := img.Bounds()
	return toPlanes(img, c), r.Dy(), r.Dx(), nil
}

// toPlanes converts img to c byte planes: grey as Pillow's convert("L")
// computes it (ITU-R 601-2 luma), or RGB with any alpha dropped, as its
// convert("RGB") does.
func toPlanes(img image.Image, c int) [][]byte {
	r := img.Bounds()
	w, h := r.Dx(), r.Dy()
	planes := make([][]byte, c)
	for i := range planes {
		planes[i] = make([]byte, w*h)
	}
	if g, ok := img.(*image.Gray); ok && c == 1 {
		for y := range h {
			copy(planes[0][y*w:(y+1)*w], g.Pix[y*g.Stride:])
		}
		return planes
	}
	rgb := rgbFunc(img)
	for y := range h {
		for x := range w {
			cr, cg, cb := rgb(r.Min.X+x, r.Min.Y+y)
			if c == 1 {
				planes[0][y*w+x] = byte((uint32(cr)*19595 + uint32(cg)*38470 + uint32(cb)*7471 + 0x8000) >> 16)
				continue
			}
			planes[0][y*w+x], planes[1][y*w+x], planes[2][y*w+x] = cr, cg, cb
		}
	}
	return planes
}

// rgbFunc returns a pixel reader for img's colours, unpremultiplied, with
// the common decoders' types read directly (no interface call a pixel).
func rgbFunc(img image.Image) func(x, y int) (r, g, b byte) {
	switch m := img.(type) {
	case *image.Gray:
		return func(x, y int) (r, g, b byte) { v := m.GrayAt(x, y).Y; return v, v, v }
	case *image.RGBA:
		return func(x, y int) (r, g, b byte) {
			if c := m.RGBAAt(x, y); c.A == 0xff {
				return c.R, c.G, c.B
			}
			c := color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
			return c.R, c.G, c.B
		}
	case *image.NRGBA:
		return func(x, y int) (r, g, b byte) { c := m.NRGBAAt(x, y); return c.R, c.G, c.B }
	case *image.NRGBA64:
		// 16-bit PNGs with alpha (or a tRNS colour): Pillow keeps each
		// colour's high byte and drops the alpha; premultiplying through
		// NRGBAModel made transparent pixels black.
		return func(x, y int) (r, g, b byte) {
			c := m.NRGBA64At(x, y)
			return byte(c.R >> 8), byte(c.G >> 8), byte(c.B >> 8)
		}
	case *image.YCbCr:
		return func(x, y int) (r, g, b byte) {
			c := m.YCbCrAt(x, y)
			return color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
		}
	}
	return func(x, y int) (r, g, b byte) {
		c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
		return c.R, c.G, c.B
	}
}

// parallel runs do(i) for i in [0, n) on the engine's threads (--threads:
// every core by default, one under two one-thread ranks), showing a
// progress line on stderr when it is a terminal.
func parallel(n int, what string, do func(i int)) {
	var next, done atomic.Int64
	stop := make(chan struct{})
	var progress sync.WaitGroup
	if isatty.IsTerminal(os.Stderr.Fd()) && n > 1000 {
		progress.Add(1)
		go func() {
			defer progress.Done()
			showProgress(what, n, &done, stop)
		}()
	}
	var wg sync.WaitGroup
	for range engine.Threads() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				do(i)
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	progress.Wait()
}

func showProgress(what string, n int, done *atomic.Int64, stop <-chan struct{}) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			fmt.Fprintf(os.Stderr, "\r%s: %d/%d images, done\n", what, n, n)
			return
		case <-tick.C:
			d := done.Load()
			fmt.Fprintf(os.Stderr, "\r%s: %d/%d images (%.0f%%)", what, d, n, 100*float64(d)/float64(n))
		}
	}
}

// ImagePixels converts a decoded image as the folder set converts its
// files: c planes (1: grey, 3: RGB) of h×w bytes, made that size by a centred
// crop or, with pad, by padding with black, resized as Pillow's BILINEAR
// does. kiln predict gives a folder-trained model its images this way.
func ImagePixels(img image.Image, c, h, w int, pad bool) ([]byte, error) {
	if c != 1 && c != 3 {
		return nil, fmt.Errorf("the model takes %d channels; an image gives 1 (grey) or 3 (RGB)", c)
	}
	r := img.Bounds()
	if err := checkDims(r.Dx(), r.Dy()); err != nil {
		return nil, err
	}
	if err := checkFit(r.Dy(), r.Dx(), h, w, pad); err != nil {
		return nil, err
	}
	out := make([]byte, 0, c*h*w)
	for _, p := range toPlanes(img, c) {
		out = append(out, fitPlane(p, r.Dy(), r.Dx(), h, w, pad)...)
	}
	return out, nil
}
