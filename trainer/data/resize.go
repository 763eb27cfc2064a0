package data

import (
	"fmt"
	"math"
)

// The image-folder loader resizes as Pillow does, so that a model trained on
// a folder here sees the pixels a PyTorch user's PIL pipeline would give it:
// Image.resize(size, BILINEAR, box) for 8-bit images (Pillow's
// libImaging/Resample.c), which widens the triangle filter by the scale when
// shrinking (an average, not a skip) and works in fixed point with a byte
// after each pass. ImageOps.fit (crop) and ImageOps.pad (pad) choose the box
// and the size. The tests compare with fixtures Debian's python3-pil made.

// pilPrecisionBits is Pillow's PRECISION_BITS for 8-bit images: 32 bits less
// 8 for the value and 2 for overshoot.
const pilPrecisionBits = 32 - 8 - 2

// pilTaps are one pass's fixed-point filter taps: output i sums the source
// pixels first[i] … first[i]+len(w[i])-1.
type pilTaps struct {
	first []int
	w     [][]int32
}

// pilCoeffs is Pillow's precompute_coeffs with the bilinear filter and
// normalize_coeffs_8bpc: in0 and in1 are the box's edges in the source, as
// the float32s Pillow keeps them in.
func pilCoeffs(inSize int, in0, in1 float32, outSize int) pilTaps {
	scale := float64(in1-in0) / float64(outSize)
	filterScale := math.Max(scale, 1)
	support := filterScale // the bilinear filter's support is 1
	t := pilTaps{first: make([]int, outSize), w: make([][]int32, outSize)}
	for xx := range outSize {
		centre := float64(in0) + (float64(xx)+0.5)*scale
		xmin := max(int(centre-support+0.5), 0) // C's (int) truncates toward zero
		xmax := min(int(centre+support+0.5), inSize) - xmin
		k := make([]float64, max(xmax, 0))
		ww := 0.0
		for x := range k {
			k[x] = bilinear((float64(x+xmin) - centre + 0.5) / filterScale)
			ww += k[x]
		}
		w := make([]int32, len(k))
		for x, v := range k {
			if ww != 0 {
				v /= ww
			}
			if v < 0 {
				w[x] = int32(-0.5 + v*(1<<pilPrecisionBits))
			} else {
				w[x] = int32(0.5 + v*(1<<pilPrecisionBits))
			}
		}
		t.first[xx], t.w[xx] = xmin, w
	}
	return t
}

func bilinear(x float64) float64 {
	x = math.Abs(x)
	if x < 1 {
		return 1 - x
	}
	return 0
}

// clip8 is Pillow's: the fixed-point sum to a byte, clamped.
func clip8(v int32) byte {
	v >>= pilPrecisionBits
	switch {
	case v < 0:
		return 0
	case v > 255:
		return 255
	}
	return byte(v)
}

// resizeBox resamples the box (x0, y0, x1, y1) of an h×w plane to dh×dw as
// Pillow's ImagingResampleInner does: a horizontal pass over the rows the
// vertical pass uses, rounded to bytes, then the vertical pass.
func resizeBox(src []byte, h, w int, box [4]float32, dh, dw int) []byte {
	needH := dw != w || box[0] != 0 || box[2] != float32(dw)
	needV := dh != h || box[1] != 0 || box[3] != float32(dh)
	vert := pilCoeffs(h, box[1], box[3], dh)
	if needH {
		first := vert.first[0]
		last := vert.first[dh-1] + len(vert.w[dh-1])
		horiz := pilCoeffs(w, box[0], box[2], dw)
		tmp := make([]byte, (last-first)*dw)
		for y := first; y < last; y++ {
			row, out := src[y*w:(y+1)*w], tmp[(y-first)*dw:(y-first+1)*dw]
			for x := range dw {
				s := int32(1 << (pilPrecisionBits - 1))
				for j, k := range horiz.w[x] {
					s += int32(row[horiz.first[x]+j]) * k
				}
				out[x] = clip8(s)
			}
		}
		for i := range vert.first {
			vert.first[i] -= first
		}
		src, w = tmp, dw
	}
	if !needV {
		return append([]byte(nil), src...)
	}
	out := make([]byte, dh*w)
	for y := range dh {
		for x := range w {
			s := int32(1 << (pilPrecisionBits - 1))
			for j, k := range vert.w[y] {
				s += int32(src[(vert.first[y]+j)*w+x]) * k
			}
			out[y*w+x] = clip8(s)
		}
	}
	return out
}

// fitCropBox is the box ImageOps.fit(image, (dw, dh)) resizes: the largest
// centred part of a w×h image with the output's aspect ratio, in Python's
// float arithmetic.
func fitCropBox(w, h, dw, dh int) [4]float32 {
	live, out := float64(w)/float64(h), float64(dw)/float64(dh)
	cw, ch := float64(w), float64(h)
	switch {
	case live == out:
	case live >= out:
		cw = out * float64(h)
	default:
		ch = float64(w) / out
	}
	left, top := (float64(w)-cw)*0.5, (float64(h)-ch)*0.5
	return [4]float32{float32(left), float32(top), float32(left + cw), float32(top + ch)}
}

// containSize is ImageOps.contain's size: the largest that fits dh×dw with
// the image's aspect ratio, rounded as Python rounds (half to even).
func containSize(w, h, dw, dh int) (rh, rw int) {
	im, dest := float64(w)/float64(h), float64(dw)/float64(dh)
	switch {
	case im > dest:
		return int(math.RoundToEven(float64(h) / float64(w) * float64(dw))), dw
	case im < dest:
		return dh, int(math.RoundToEven(float64(w) / float64(h) * float64(dh)))
	}
	return dh, dw
}

// checkFit says why an h×w image cannot be made dh×dw, nil when it can:
// padding shrinks it to fit inside, and an image more than twice as much
// wider (or taller) than the output's shape would have a side of 0 pixels
// (Pillow's ImageOps.pad refuses it too: "height and width must be > 0").
func checkFit(h, w, dh, dw int, pad bool) error {
	if !pad {
		return nil
	}
	if rh, rw := containSize(w, h, dw, dh); rh < 1 || rw < 1 {
		return fmt.Errorf("a %d×%d image padded to %d×%d would be %d×%d pixels: too narrow for --image-fit pad (crop takes it)",
			w, h, dw, dh, rw, rh)
	}
	return nil
}

// fitPlane makes an h×w plane dh×dw (checkFit must allow it): "crop" is ImageOps.fit (centred crop
// to the aspect ratio, then resize), "pad" is ImageOps.pad with black (resize
// to fit inside, then centre on a black dh×dw).
func fitPlane(src []byte, h, w, dh, dw int, pad bool) []byte {
	if !pad {
		box := fitCropBox(w, h, dw, dh)
		if h == dh && w == dw && box == [4]float32{0, 0, float32(w), float32(h)} {
			return append([]byte(nil), src...)
		}
		return resizeBox(src, h, w, box, dh, dw)
	}
	rh, rw := containSize(w, h, dw, dh)
	resized := src
	if rh != h || rw != w {
		resized = resizeBox(src, h, w, [4]float32{0, 0, float32(w), float32(h)}, rh, rw)
	}
	out := make([]byte, dh*dw)
	x0 := int(math.RoundToEven(float64(dw-rw) * 0.5))
	y0 := int(math.RoundToEven(float64(dh-rh) * 0.5))
	for y := range rh {
		copy(out[(y+y0)*dw+x0:], resized[y*rw:(y+1)*rw])
	}
	return out
}
