package data

import (
	"math"
	"sync"
)

// RotationMaxAngle is the largest rotation of mnist-rotation, in degrees;
// angles are drawn uniformly from [-RotationMaxAngle, RotationMaxAngle] and
// stored divided by it.
const RotationMaxAngle = 45

// Split numbers that keep the training and test angles independent.
const (
	splitTrain uint64 = 1
	splitTest  uint64 = 2
)

// rotationAngle is the angle in degrees given to image i of a split.
func rotationAngle(seed, split uint64, i int) float64 {
	s := newStream(seed, domainRotation, split, uint64(i))
	return (2*s.float64() - 1) * RotationMaxAngle
}

// rotationDataset rotates every digit of an MNIST split by its seeded angle
// and normalises it with MNIST's constants; the target is angle/45.
func rotationDataset(part *idxPart, seed, split uint64) *Dataset {
	d := &Dataset{
		Name: "mnist-rotation", Source: part.source, Task: Regression,
		Channels: 1, Height: idxSide, Width: idxSide,
		Mean: []float64{mnistSpec.mean}, Std: []float64{mnistSpec.std},
		TargetName:  "rotation angle (degrees)",
		TargetScale: RotationMaxAngle,
		Images:      make([]float32, len(part.pixels)),
		Targets:     make([]float32, part.n),
	}
	const size = idxSide * idxSide
	lut := byteTable(mnistSpec.mean, mnistSpec.std)
	work := func(lo, hi int) {
		var src [size]float32
		for i := lo; i < hi; i++ {
			a := rotationAngle(seed, split, i)
			d.Targets[i] = float32(a / RotationMaxAngle)
			for j, b := range part.pixels[i*size : (i+1)*size] {
				src[j] = float32(b)
			}
			rotateBilinear(d.Images[i*size:(i+1)*size], src[:], idxSide, idxSide, a, lut[0], float32(1/(255*mnistSpec.std)))
		}
	}
	half := part.n / 2
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); work(half, part.n) }()
	work(0, half)
	wg.Wait()
	return d
}

// rotateBilinear writes src (h×w, raw values) rotated counter-clockwise by
// deg degrees about the image centre into dst as offset + scale·value, with
// bilinear interpolation and zero outside the source.
func rotateBilinear(dst, src []float32, h, w int, deg float64, offset, scale float32) {
	rad := deg * math.Pi / 180
	sin, cos := math.Sincos(rad)
	cx, cy := float64(w-1)/2, float64(h-1)/2
	at := func(x, y int) float32 {
		if x < 0 || y < 0 || x >= w || y >= h {
			return 0
		}
		return src[y*w+x]
	}
	for y := 0; y < h; y++ {
		dy := float64(y) - cy
		for x := 0; x < w; x++ {
			dx := float64(x) - cx
			// The source point that lands on (x, y); image y points down.
			sx := cos*dx - sin*dy + cx
			sy := sin*dx + cos*dy + cy
			x0, y0 := math.Floor(sx), math.Floor(sy)
			fx, fy := float32(sx-x0), float32(sy-y0)
			ix, iy := int(x0), int(y0)
			v := (1-fy)*((1-fx)*at(ix, iy)+fx*at(ix+1, iy)) + fy*((1-fx)*at(ix, iy+1)+fx*at(ix+1, iy+1))
			dst[y*w+x] = offset + scale*v
		}
	}
}
