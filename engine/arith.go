package engine

import (
	"fmt"

	"github.com/kiln-ml/kiln/cuda"
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
		return runCUDA(op, func() error {
			var args cuda.Args
			return launchElt(kAdd, n, args.Ptr(out.dptr()).Ptr(a.dptr()).Ptr(b.dptr()).I64(int64(n)))
		}, func(h []*Tensor) error { return Add(h[0], h[1], h[2]) }, out, a, b)
	}
	if dt == Float64 {
		runSamples(kindAdd, n, n, out.f64, a.f64, b.f64, nil, 0, 0)
	} else {
		runSamples(kindAdd, n, n, out.f32, a.f32, b.f32, nil, 0, 0)
	}
	return nil
}

func addSlices[T Float](out, a, b []T) {
	b = b[:len(a)]
	out = out[:len(a)]
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
		var args cuda.Args
		if err := launchElt(kScale, t.Len(), args.Ptr(t.dptr()).F32(float32(s)).I64(int64(t.Len()))); err != nil {
			return fmt.Errorf("Scale %v: %w", t.shape, err)
		}
		return nil
	}
	for i := range t.f32 {
		t.f32[i] *= float32(s)
	}
	for i := range t.f64 {
		t.f64[i] *= s
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
	s := 0.0
	for _, v := range t.f32 {
		s += float64(v) * float64(v)
	}
	for _, v := range t.f64 {
		s += v * v
	}
	return s, nil
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
		n := dst.Len()
		return runCUDA(op, func() error {
			var args cuda.Args
			return launchElt(kAxpy, n, args.Ptr(dst.dptr()).Ptr(src.dptr()).F32(float32(alpha)).I64(int64(n)))
		}, func(h []*Tensor) error { return AddScaled(h[0], h[1], alpha) }, dst, src)
	}
	if dt == Float64 {
		axpy(dst.f64, src.f64, alpha)
	} else {
		axpy(dst.f32, src.f32, float32(alpha))
	}
	return nil
}

func axpy[T Float](dst, src []T, alpha T) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += alpha * src[i]
	}
}
