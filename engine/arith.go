package engine

import (
	"fmt"
	"math"
)

// Element-wise arithmetic on same-shaped tensors: the glue of residual
// connections and gradient sums.

// Add computes out = a + b; out may alias a or b.
func Add(out, a, b *Tensor) error {
	const op = "Add"
	dev, dt, err := agreeDev(op, out, a, b)
	if err != nil {
		return err
	}
	if a.Len() != b.Len() || out.Len() != a.Len() {
		return shapeErr(op, "element counts differ", "out", out, "a", a, "b", b)
	}
	n := a.Len()
	if dev == CUDA {
		return addCUDA(out, a, b)
	}
	pick(dt, runSamplesOn[float32], runSamplesOn[float64])(kindAdd, n, n, out, a, b, nil, 0, 0)
	return nil
}

// addSlices computes out = a + b: in C for float32 (elementwise_cpu.c, the
// same bits), else this loop.
func addSlices[T Float](out, a, b []T) {
	b = b[:len(a)]
	out = out[:len(a)]
	if addC(out, a, b) {
		return
	}
	for i := range a {
		out[i] = a[i] + b[i]
	}
}

// Scale computes t *= s in place. Only a CUDA tensor can fail.
func Scale(t *Tensor, s float64) error {
	if t.device == CUDA {
		if t.err != nil {
			return fmt.Errorf("Scale: %w", t.err)
		}
		return scaleCUDA(t, s)
	}
	pick(t.dtype, scaleInPlace[float32], scaleInPlace[float64])(t, s)
	return nil
}

func scaleInPlace[T Float](t *Tensor, s float64) {
	x, sT := dataAs[T](t), T(s)
	if scaleC(x, sT) {
		return
	}
	for i := range x {
		x[i] *= sT
	}
}

// ClipByGlobalNorm scales the tensors ts together so that their global L2
// norm √Σ‖t‖² is at most maxNorm (torch.nn.utils.clip_grad_norm_): each by
// maxNorm/(norm + 1e-6) when the norm is above maxNorm, none when it is
// within (or NaN). On the GPU the norm is computed and applied on the device
// and nothing is read back: a training step with clipping does not wait.
// The tensors are all on one device; nil ones are skipped.
func ClipByGlobalNorm(ts []*Tensor, maxNorm float64) error {
	const op = "ClipByGlobalNorm"
	if !(maxNorm > 0) {
		return &ShapeError{Op: op, Msg: fmt.Sprintf("max norm %v is not positive", maxNorm)}
	}
	if len(ts) == 0 {
		return nil
	}
	dev, dt, err := agreeDev(op, ts...)
	if err != nil {
		return err
	}
	if dev == CUDA {
		return clipByGlobalNormCUDA(ts, maxNorm)
	}
	s := 0.0
	for _, t := range ts {
		if t != nil {
			s += pick(dt, sumSquares[float32], sumSquares[float64])(t)
		}
	}
	if norm := math.Sqrt(s); norm > maxNorm {
		scale := maxNorm / (norm + 1e-6)
		for _, t := range ts {
			if t != nil {
				pick(dt, scaleInPlace[float32], scaleInPlace[float64])(t, scale)
			}
		}
	}
	return nil
}

// SumSquares returns Σ t², accumulated in float64 in a fixed order. Only a
// CUDA tensor can fail.
func SumSquares(t *Tensor) (float64, error) {
	if t.device == CUDA {
		if t.err != nil {
			return 0, fmt.Errorf("SumSquares: %w", t.err)
		}
		s, err := sumSquaresCUDA(t)
		if err != nil {
			return 0, fmt.Errorf("SumSquares %v: %w", t.shape, err)
		}
		return s, nil
	}
	return pick(t.dtype, sumSquares[float32], sumSquares[float64])(t), nil
}

func sumSquares[T Float](t *Tensor) float64 {
	s := 0.0
	for _, v := range dataAs[T](t) {
		s += float64(v) * float64(v)
	}
	return s
}

// AddScaled computes dst += alpha·src (axpy).
func AddScaled(dst, src *Tensor, alpha float64) error {
	const op = "AddScaled"
	dev, dt, err := agreeDev(op, dst, src)
	if err != nil {
		return err
	}
	if dst.Len() != src.Len() {
		return shapeErr(op, "element counts differ", "dst", dst, "src", src)
	}
	if dev == CUDA {
		return addScaledCUDA(dst, src, alpha)
	}
	pick(dt, axpy[float32], axpy[float64])(dst, src, alpha)
	return nil
}

func axpy[T Float](dstT, srcT *Tensor, alpha float64) {
	dst, a := dataAs[T](dstT), T(alpha)
	src := dataAs[T](srcT)[:len(dst)]
	for i := range dst {
		dst[i] += a * src[i]
	}
}

// runSamplesOn is runSamples on the tensors' data, for pick.
func runSamplesOn[T Float](kind, n, size int, a, b, c *Tensor, idx []int32, ch, hw int) {
	runSamples(kind, n, size, dataAs[T](a), dataAs[T](b), dataAs[T](c), idx, ch, hw)
}
