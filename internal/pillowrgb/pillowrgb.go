// Package pillowrgb gives decoded pictures the pixels Pillow's decoders give
// them: YCbCr colour, and a GIF frame on its screen; and names the files
// Pillow reads that Go's decoders do not.
package pillowrgb

import (
	"errors"
	"fmt"
	"image"
	"image/jpeg"

	"golang.org/x/image/bmp"
)

// Pillow's colours of a YCbCr picture. Go's decoders hand back YCbCr with
// the colour planes at their stored resolution, and color.YCbCrToRGB reads
// the nearest colour sample; Pillow's libraries blend neighbouring samples
// ("fancy upsampling") and convert in their own fixed point: libjpeg-turbo
// for JPEG (full-range JFIF), libwebp for lossy WebP (VP8's video range).
// A model trained on pixels decoded here is then given, by a PIL pipeline,
// the colours it was trained on: on subsampled colour the nearest sample
// was up to 29 levels from Pillow's on a JPEG and 35 on a WebP.

// Convert converts img, decoded from a file of format (image.Decode's
// name), to the RGB Pillow's decoder gives it: a JPEG's YCbCr with its
// colour halved across (4:2:2), down (4:4:0: a 4:2:2 file turned a quarter
// by jpegtran) or both ways (4:2:0) as libjpeg-turbo's
// fancy upsampling and colour conversion do, the others at full colour
// resolution (4:4:4) by its conversion alone; a lossy WebP's as libwebp's
// does. Other images, and YCbCr this does not know, come back as they are.
//
// A GIF's first frame smaller than its screen (cfg, image.DecodeConfig's)
// is placed on the screen as Pillow places it, the rest of the screen palette
// colour 0 (or the frame's transparent index).
func Convert(img image.Image, format string, cfg image.Config) image.Image {
	if p, ok := img.(*image.Paletted); ok && format == "gif" {
		return onScreen(p, cfg)
	}
	if a, ok := img.(*image.NYCbCrA); ok && format == "webp" {
		img = &a.YCbCr // its alpha dropped, as Pillow's convert("RGB") drops it
	}
	m, ok := img.(*image.YCbCr)
	if !ok || m.Rect.Min != (image.Point{}) {
		return img
	}
	switch {
	case format == "jpeg" && m.SubsampleRatio == image.YCbCrSubsampleRatio444:
		return jpegRGB(m, m.Cb, m.Cr)
	case format == "jpeg" && m.Rect.Dx() <= 4 && (m.SubsampleRatio == image.YCbCrSubsampleRatio422 ||
		m.SubsampleRatio == image.YCbCrSubsampleRatio420):
		// libjpeg-turbo blends only colour rows of more than 2 samples
		// (jinit_upsampler); narrower ones it repeats, as Go's YCbCr reads.
		return jpegRGB(m, nearest(m, m.Cb), nearest(m, m.Cr))
	case format == "jpeg" && m.SubsampleRatio == image.YCbCrSubsampleRatio422:
		return jpegRGB(m, jpegH2V1(m, m.Cb), jpegH2V1(m, m.Cr))
	case format == "jpeg" && m.SubsampleRatio == image.YCbCrSubsampleRatio420:
		return jpegRGB(m, jpegH2V2(m, m.Cb), jpegH2V2(m, m.Cr))
	case format == "jpeg" && m.SubsampleRatio == image.YCbCrSubsampleRatio440:
		return jpegRGB(m, jpegH1V2(m, m.Cb), jpegH1V2(m, m.Cr))
	case format == "webp" && m.SubsampleRatio == image.YCbCrSubsampleRatio420:
		return webpRGB(m)
	}
	return img
}

// NotSupported says what a file of a format read here uses that Go's
// decoders do not (arithmetic-coded JPEG, animated WebP), which Pillow
// reads: the file is not damaged, as the error would otherwise say. nil
// for other errors.
func NotSupported(format string, head []byte, err error) error {
	var ue jpeg.UnsupportedError
	switch {
	case errors.As(err, &ue):
		return fmt.Errorf("a JPEG with a feature this decoder does not read (%s; arithmetic coding?), not a damaged file: save it again as a plain JPEG or a PNG", string(ue))
	case format == "webp" && len(head) > 20 && string(head[12:16]) == "VP8X" && head[20]&0x02 != 0:
		return errors.New("an animated WebP, which this decoder does not read (not a damaged file): save its first frame as a PNG")
	case errors.Is(err, bmp.ErrUnsupported):
		return errors.New("a BMP with a feature this decoder does not read (RLE compression or 16-bit colour?), not a damaged file: save it again as a 24-bit BMP or a PNG")
	}
	return nil
}

// onScreen is a GIF frame p on its cfg.Width×cfg.Height screen.
func onScreen(p *image.Paletted, cfg image.Config) image.Image {
	screen := image.Rect(0, 0, cfg.Width, cfg.Height)
	if p.Rect == screen || cfg.Width < 1 || cfg.Height < 1 {
		return p
	}
	out := image.NewPaletted(screen, p.Palette)
	fill := uint8(0) // Pillow's new "P" image, or its fill of the transparent index
	for i, c := range p.Palette {
		if _, _, _, a := c.RGBA(); a == 0 {
			fill = uint8(i)
			break
		}
	}
	for i := range out.Pix {
		out.Pix[i] = fill
	}
	r := p.Rect.Intersect(screen)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		copy(out.Pix[out.PixOffset(r.Min.X, y):out.PixOffset(r.Max.X, y)], p.Pix[p.PixOffset(r.Min.X, y):])
	}
	return out
}

// colourRow is row k of colour plane p of m, with the padding after it up
// to the next row (CStride apart).
func colourRow(m *image.YCbCr, p []byte, k int) []byte {
	start := k * m.CStride
	return p[start : start+min(m.CStride, len(p)-start)]
}

// colourAt is sample i of a colour plane's row (stride apart from the
// next), i past the plane's width reading the decoder's padding beyond it
// as libjpeg does (present in Go's MCU-sized planes), else the last sample.
func colourAt(row []byte, i, last int) int {
	if i >= len(row) {
		i = last
	}
	return int(row[i])
}

// nearest is plane p of m at full resolution, each output sample its
// nearest colour sample (libjpeg's plain h2v1_upsample and h2v2_upsample).
func nearest(m *image.YCbCr, p []byte) []byte {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	out := make([]byte, w*h)
	for y := range h {
		for x := range w {
			out[y*w+x] = p[m.COffset(x, y)]
		}
	}
	return out
}

// jpegH2V1 is libjpeg-turbo's h2v1_fancy_upsample of plane p of m: each
// output sample ¾ of the nearer input sample and ¼ of the farther, rounded
// alternately down and up.
func jpegH2V1(m *image.YCbCr, p []byte) []byte {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	cw := (w + 1) / 2
	out := make([]byte, w*h)
	row := make([]byte, 2*cw)
	for y := range h {
		in := colourRow(m, p, y)
		at := func(i int) int { return colourAt(in, i, cw-1) }
		row[0], row[1] = byte(at(0)), byte((at(0)*3+at(1)+2)>>2)
		for i := 1; i < cw; i++ {
			row[2*i] = byte((at(i)*3 + at(i-1) + 1) >> 2)
			row[2*i+1] = byte((at(i)*3 + at(i+1) + 2) >> 2)
		}
		if cw > 1 {
			row[2*cw-1] = byte(at(cw - 1))
		}
		copy(out[y*w:(y+1)*w], row)
	}
	return out
}

// jpegH1V2 is libjpeg-turbo's h1v2_fancy_upsample of plane p of m: each
// output sample ¾ of the nearer input row's and ¼ of the farther's, rounded
// down on the upper row of a pair and up on the lower; the rows above the
// first and below the last repeat them.
func jpegH1V2(m *image.YCbCr, p []byte) []byte {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	ch := (h + 1) / 2
	out := make([]byte, w*h)
	for y := range h {
		k := y / 2
		far, bias := min(k+1, ch-1), 2
		if y%2 == 0 {
			far, bias = max(k-1, 0), 1
		}
		near, next := colourRow(m, p, k), colourRow(m, p, far)
		for x := range w {
			out[y*w+x] = byte((int(near[x])*3 + int(next[x]) + bias) >> 2)
		}
	}
	return out
}

// jpegH2V2 is libjpeg-turbo's h2v2_fancy_upsample of plane p of m: each
// output sample 9/16, 3/16, 3/16 and 1/16 of its four nearest input
// samples; the rows above the first and below the last repeat them.
func jpegH2V2(m *image.YCbCr, p []byte) []byte {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	cw, ch := (w+1)/2, (h+1)/2
	out := make([]byte, w*h)
	sums := make([]int, cw+1)
	row := make([]byte, 2*cw)
	for y := range h {
		k := y / 2
		far := min(k+1, ch-1)
		if y%2 == 0 {
			far = max(k-1, 0)
		}
		near, next := colourRow(m, p, k), colourRow(m, p, far)
		for i := range sums {
			sums[i] = colourAt(near, i, cw-1)*3 + colourAt(next, i, cw-1)
		}
		row[0], row[1] = byte((sums[0]*4+8)>>4), byte((sums[0]*3+sums[1]+7)>>4)
		for i := 1; i < cw; i++ {
			row[2*i] = byte((sums[i]*3 + sums[i-1] + 8) >> 4)
			row[2*i+1] = byte((sums[i]*3 + sums[i+1] + 7) >> 4)
		}
		if cw > 1 {
			row[2*cw-1] = byte((sums[cw-1]*4 + 7) >> 4)
		}
		copy(out[y*w:(y+1)*w], row)
	}
	return out
}

// libjpeg's ycc_rgb_convert tables (jdcolor.c): 16-bit fixed point.
var jpegCrR, jpegCbB, jpegCrG, jpegCbG [256]int

func init() {
	fix := func(x float64) int { return int(x*(1<<16) + 0.5) }
	for i := range 256 {
		x := i - 128
		jpegCrR[i] = (fix(1.40200)*x + 1<<15) >> 16
		jpegCbB[i] = (fix(1.77200)*x + 1<<15) >> 16
		jpegCrG[i] = -fix(0.71414) * x
		jpegCbG[i] = -fix(0.34414)*x + 1<<15
	}
}

func clamp8(v int) uint8 { return uint8(min(max(v, 0), 255)) }

// jpegRGB converts m's luma with full-resolution colour planes cb and cr
// (m.CStride apart for 4:4:4, the width apart once upsampled) as
// libjpeg's ycc_rgb_convert does.
func jpegRGB(m *image.YCbCr, cb, cr []byte) *image.RGBA {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	cs := w
	if m.SubsampleRatio == image.YCbCrSubsampleRatio444 {
		cs = m.CStride
	}
	out := image.NewRGBA(m.Rect)
	for y := range h {
		for x := range w {
			l, b, r := int(m.Y[y*m.YStride+x]), cb[y*cs+x], cr[y*cs+x]
			o := out.Pix[y*out.Stride+4*x:]
			o[0] = clamp8(l + jpegCrR[r])
			o[1] = clamp8(l + (jpegCbG[b]+jpegCrG[r])>>16)
			o[2] = clamp8(l + jpegCbB[b])
			o[3] = 255
		}
	}
	return out
}

// webpRGB converts m as libwebp's fancy upsampler (UpsampleRgbLinePair)
// and VP8YUVToR/G/B do: output rows in pairs between two colour rows, the
// first and (for an even height) the last row between one colour row and
// itself.
func webpRGB(m *image.YCbCr) *image.RGBA {
	h := m.Rect.Dy()
	out := image.NewRGBA(m.Rect)
	uvRow := func(k int) ([]byte, []byte) {
		return m.Cb[k*m.CStride:], m.Cr[k*m.CStride:]
	}
	tu, tv := uvRow(0)
	webpLine(m, out, 0, tu, tv, tu, tv)
	for y := 1; y < h; y += 2 {
		cu, cv := uvRow((y + 1) / 2)
		if y+1 >= h { // an even height's last row: its colour row alone
			webpLine(m, out, y, tu, tv, tu, tv)
			break
		}
		webpLine(m, out, y, tu, tv, cu, cv)
		webpLine(m, out, y+1, cu, cv, tu, tv)
		tu, tv = cu, cv
	}
	return out
}

// webpLine writes output row y from the colour rows near (u, v: the
// nearer) and far as libwebp's upsampler weighs them: across, a pair of
// output pixels between each two colour samples, 9/16 : 3/16 : 3/16 : 1/16.
func webpLine(m *image.YCbCr, out *image.RGBA, y int, nu, nv, fu, fv []byte) {
	w := m.Rect.Dx()
	put := func(x int, u, v int) {
		l := int(m.Y[y*m.YStride+x])
		o := out.Pix[y*out.Stride+4*x:]
		o[0] = webpClip(webpHi(l, 19077) + webpHi(v, 26149) - 14234)
		o[1] = webpClip(webpHi(l, 19077) - webpHi(u, 6419) - webpHi(v, 13320) + 8708)
		o[2] = webpClip(webpHi(l, 19077) + webpHi(u, 33050) - 17685)
		o[3] = 255
	}
	// One channel's output pair between colour columns i-1 and i: a, b
	// the near row's samples there, c, d the far row's.
	pair := func(nr, fr []byte, i int) (int, int) {
		a, b, c, d := int(nr[i-1]), int(nr[i]), int(fr[i-1]), int(fr[i])
		avg := a + b + c + d + 8
		return ((avg+2*(b+c))>>3 + a) >> 1, ((avg+2*(a+d))>>3 + b) >> 1
	}
	edge := func(nr, fr []byte, i int) int { return (3*int(nr[i]) + int(fr[i]) + 2) >> 2 }
	put(0, edge(nu, fu, 0), edge(nv, fv, 0))
	for i := 1; i <= (w-1)/2; i++ {
		u0, u1 := pair(nu, fu, i)
		v0, v1 := pair(nv, fv, i)
		put(2*i-1, u0, v0)
		put(2*i, u1, v1)
	}
	if w%2 == 0 {
		put(w-1, edge(nu, fu, w/2-1), edge(nv, fv, w/2-1))
	}
}

func webpHi(v, coeff int) int { return v * coeff >> 8 }

// webpClip is libwebp's VP8Clip8: 6 fractional bits, clamped.
func webpClip(v int) uint8 {
	if v&^(256<<6-1) == 0 {
		return uint8(v >> 6)
	}
	if v < 0 {
		return 0
	}
	return 255
}
