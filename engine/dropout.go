package engine

import (
	"fmt"
	"math"
)

// Inverted dropout: in training each element is kept with probability 1−p and
// scaled by 1/(1−p), so evaluation is the identity.
//
// The random numbers are counter-based: element i of a call uses the
// (Offset+i)-th output of SplitMix64 seeded with Seed. An element's draw
// depends only on (Seed, Offset+i), not on how the work is split between
// threads, and a GPU kernel can draw the very same mask.

// DropoutRNG is the caller's random stream for dropout. Each training call
// draws one number per element starting at Offset and advances Offset by the
// element count, so a run is reproducible from Seed alone. Give each dropout
// layer its own Seed (or its own stream of Offsets).
type DropoutRNG struct {
	Seed   uint64
	Offset uint64
}

// splitMix64 is SplitMix64's output for state seed + (i+1)·γ, i.e. the i-th
// number of the generator seeded with seed.
func splitMix64(seed, i uint64) uint64 {
	z := seed + (i+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// DropoutForward computes out = x·mask. In training (train true) mask is
// drawn afresh: 1/(1−p) where the 53-bit uniform u = (SplitMix64 >> 11)·2⁻⁵³
// satisfies u ≥ p (probability 1−p), else 0; it is saved for the backward
// pass and rng advances. In evaluation, or with p = 0, out = x and mask and
// rng may be nil (a given mask is filled with 1 when training with p = 0).
// With p = 1 every element is dropped. out may be x itself.
//
//	out: any shape  mask: same shape  x: same shape  p: in [0,1]
func DropoutForward(out, mask, x *Tensor, p float64, train bool, rng *DropoutRNG) error {
	const op = "DropoutForward"
	if out == nil || x == nil {
		return shapeErr(op, "out and x are required", "out", out, "x", x)
	}
	if !(p >= 0 && p <= 1) {
		return &ShapeError{Op: op, Msg: fmt.Sprintf("drop probability %v outside [0,1]", p)}
	}
	drop := train && p > 0
	if drop && (mask == nil || rng == nil) {
		return shapeErr(op, "training with p > 0 needs a mask and an rng", "mask", mask)
	}
	dev, dt, err := agreeDev(op, out, mask, x)
	if err != nil {
		return err
	}
	if !sameShape(out.shape, x.shape) || (mask != nil && !sameShape(mask.shape, x.shape)) {
		return shapeErr(op, "out, mask and x differ in shape", "out", out, "mask", mask, "x", x)
	}
	if !drop {
		if train && mask != nil {
			if err := mask.Fill(1); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
		}
		if out != x {
			return out.CopyFrom(x)
		}
		return nil
	}
	n := x.Len()
	// Keep element i iff (splitMix64 >> 11) ≥ ⌈p·2⁵³⌉, i.e. u ≥ p exactly.
	threshold := uint64(math.Ceil(p * (1 << 53)))
	scale := 0.0
	if p < 1 {
		scale = 1 / (1 - p)
	}
	if dev == CUDA {
		return dropoutForwardCUDA(out, mask, x, p, rng, threshold, scale)
	}
	pick(dt, runDropout[float32], runDropout[float64])(out, mask, x, rng.Seed, rng.Offset, threshold, scale)
	rng.Offset += uint64(n)
	return nil
}

// DropoutBackward computes dx = dout·mask, overwriting dx (which may be
// dout). A nil mask means dropout was the identity (evaluation or p = 0).
//
//	dx: any shape  dout: same shape  mask: same shape or nil
func DropoutBackward(dx, dout, mask *Tensor) error {
	const op = "DropoutBackward"
	if dx == nil || dout == nil {
		return shapeErr(op, "dx and dout are required", "dx", dx, "dout", dout)
	}
	dev, dt, err := agreeDev(op, dx, dout, mask)
	if err != nil {
		return err
	}
	if !sameShape(dx.shape, dout.shape) || (mask != nil && !sameShape(mask.shape, dout.shape)) {
		return shapeErr(op, "dx, dout and mask differ in shape", "dx", dx, "dout", dout, "mask", mask)
	}
	if mask == nil {
		if dx != dout {
			return dx.CopyFrom(dout)
		}
		return nil
	}
	if dev == CUDA {
		return dropoutBackwardCUDA(dx, dout, mask)
	}
	pick(dt, runDropoutBackward[float32], runDropoutBackward[float64])(dx, dout, mask)
	return nil
}

type dropoutTask[T Float] struct {
	out, mask, x            []T
	seed, offset, threshold uint64
	scale                   float64
	backward                bool
}

var dropoutTasks = [2]taskPool{
	{New: func() any { return new(dropoutTask[float32]) }},
	{New: func() any { return new(dropoutTask[float64]) }},
}

func (t *dropoutTask[T]) run(_, lo, hi int) {
	if t.backward {
		dropoutMul(t.out[lo:hi], t.x[lo:hi], t.mask[lo:hi])
		return
	}
	dropoutDraw(t.out[lo:hi], t.mask[lo:hi], t.x[lo:hi], t.seed, t.offset+uint64(lo), t.threshold, T(t.scale))
}

func runDropout[T Float](outT, maskT, xT *Tensor, seed, offset, threshold uint64, scale float64) {
	out, mask, x := dataAs[T](outT), dataAs[T](maskT), dataAs[T](xT)
	if len(x) < parallelMinElems {
		dropoutDraw(out, mask, x, seed, offset, threshold, T(scale))
		return
	}
	p := &dropoutTasks[dtypeIndex[T]()]
	t := p.Get().(*dropoutTask[T])
	*t = dropoutTask[T]{out: out, mask: mask, x: x, seed: seed, offset: offset, threshold: threshold, scale: scale}
	parallelFor(len(x), t)
	*t = dropoutTask[T]{}
	p.Put(t)
}

func runDropoutBackward[T Float](dxT, doutT, maskT *Tensor) {
	dx, dout, mask := dataAs[T](dxT), dataAs[T](doutT), dataAs[T](maskT)
	if len(dout) < parallelMinElems {
		dropoutMul(dx, dout, mask)
		return
	}
	p := &dropoutTasks[dtypeIndex[T]()]
	t := p.Get().(*dropoutTask[T])
	*t = dropoutTask[T]{out: dx, mask: mask, x: dout, backward: true}
	parallelFor(len(dout), t)
	*t = dropoutTask[T]{}
	p.Put(t)
}

// dropoutDraw fills mask with scale or 0 from the stream at offset and writes
// out = x·mask.
func dropoutDraw[T Float](out, mask, x []T, seed, offset, threshold uint64, scale T) {
	out = out[:len(x)]
	mask = mask[:len(x)]
	for i, v := range x {
		var m T
		if splitMix64(seed, offset+uint64(i))>>11 >= threshold {
			m = scale
		}
		mask[i] = m
		out[i] = v * m
	}
}

func dropoutMul[T Float](out, x, mask []T) {
	out = out[:len(x)]
	mask = mask[:len(x)]
	for i, v := range x {
		out[i] = v * mask[i]
	}
}
