package engine

import "fmt"

// Broadcast multiply out = x ⊙ g, where g's shape, aligned to x's from the
// right, has each axis either 1 or equal to x's. It is the gate of channel
// attention (g: (N,C,1,1)) and spatial attention (g: (N,1,H,W)) on x:
// (N,C,H,W), and any other per-axis scaling.
//
// The kernels merge neighbouring axes that broadcast alike, so every case
// becomes an outer loop over an odometer and a contiguous inner loop in which
// g is either one scalar or a matching vector.

// maxBroadcastRank bounds the axes a broadcast plan tracks (on the stack).
const maxBroadcastRank = 8

type broadcastPlan struct {
	k      int                    // merged axes
	size   [maxBroadcastRank]int  // their sizes
	stride [maxBroadcastRank]int  // their strides in g; 0 where g broadcasts
	bcast  [maxBroadcastRank]bool // whether g broadcasts along them
}

// planBroadcast merges x's axes into runs along which g broadcasts or not.
func planBroadcast(x, g []int) (p broadcastPlan, ok bool) {
	if len(g) > len(x) || len(x) > maxBroadcastRank {
		return p, false
	}
	lead := len(x) - len(g)
	for i, xd := range x {
		gd := 1
		if i >= lead {
			gd = g[i-lead]
		}
		if gd != 1 && gd != xd {
			return p, false
		}
		if xd == 1 {
			continue // contributes nothing whichever way it broadcasts
		}
		b := gd == 1
		if p.k > 0 && p.bcast[p.k-1] == b {
			p.size[p.k-1] *= xd
			continue
		}
		p.size[p.k], p.bcast[p.k] = xd, b
		p.k++
	}
	if p.k == 0 { // a single element
		p.size[0], p.bcast[0], p.k = 1, false, 1
	}
	s := 1
	for d := p.k - 1; d >= 0; d-- {
		if !p.bcast[d] {
			p.stride[d] = s
			s *= p.size[d]
		}
	}
	return p, true
}

// BroadcastMultiplyForward computes out = x ⊙ g with g broadcast over x (see
// the top of this file). out may be x itself.
//
//	out: like x  x: any shape, rank ≤ 8  g: rank ≤ x's, each axis 1 or x's
func BroadcastMultiplyForward(out, x, g *Tensor) error {
	const op = "BroadcastMultiplyForward"
	if out == nil || x == nil || g == nil {
		return shapeErr(op, "out, x and g are required", "out", out, "x", x, "g", g)
	}
	dev, dt, err := agreeDev(op, out, x, g)
	if err != nil {
		return err
	}
	p, ok := planBroadcast(x.shape, g.shape)
	if !ok || !sameShape(out.shape, x.shape) {
		return shapeErr(op, "want out like x and g broadcastable to x (each axis 1 or equal, from the right)",
			"out", out, "x", x, "g", g)
	}
	if x.Len() == 0 {
		return nil
	}
	if dev == CUDA {
		return broadcastMultiplyForwardCUDA(&p, out, x, g)
	}
	pick(dt, broadcastMultiply[float32], broadcastMultiply[float64])(p, out, x, g)
	return nil
}

// BroadcastMultiplyBackward computes dx = dout ⊙ g and dg = the sum of
// dout ⊙ x over the axes along which g broadcasts. Both are overwritten (g is
// an activation, such as an attention map, not a parameter) and either may be
// nil. dx may be dout or x itself.
//
//	dx: like x  dg: like g  dout: like x  x: any shape, rank ≤ 8  g: broadcastable to x
func BroadcastMultiplyBackward(dx, dg, dout, x, g *Tensor) error {
	const op = "BroadcastMultiplyBackward"
	if dout == nil || x == nil || g == nil {
		return shapeErr(op, "dout, x and g are required", "dout", dout, "x", x, "g", g)
	}
	dev, dt, err := agreeDev(op, dx, dg, dout, x, g)
	if err != nil {
		return err
	}
	p, ok := planBroadcast(x.shape, g.shape)
	if !ok || !sameShape(dout.shape, x.shape) || (dx != nil && !sameShape(dx.shape, x.shape)) ||
		(dg != nil && !sameShape(dg.shape, g.shape)) {
		return shapeErr(op, "want dx and dout like x, dg like g and g broadcastable to x",
			"dx", dx, "dg", dg, "dout", dout, "x", x, "g", g)
	}
	if dg != nil {
		if err := dg.Zero(); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	if x.Len() == 0 || (dx == nil && dg == nil) {
		return nil
	}
	if dev == CUDA {
		return broadcastMultiplyBackwardCUDA(&p, dx, dg, dout, x, g)
	}
	pick(dt, broadcastMultiplyBackward[float32], broadcastMultiplyBackward[float64])(p, dx, dg, dout, x, g)
	return nil
}

// broadcastMultiply writes out = x ⊙ g over the plan.
func broadcastMultiply[T Float](p broadcastPlan, outT, xT, gT *Tensor) {
	out, x, g := dataAs[T](outT), dataAs[T](xT), dataAs[T](gT)
	if broadcastMulC(&p, out, x, g) {
		return
	}
	inner := p.size[p.k-1]
	scalar := p.bcast[p.k-1]
	var idx [maxBroadcastRank]int
	goff := 0
	for xo := 0; xo < len(x); xo += inner {
		xs, os := x[xo:xo+inner], out[xo:xo+inner]
		if scalar {
			gv := g[goff]
			for i, v := range xs {
				os[i] = v * gv
			}
		} else {
			gs := g[goff : goff+inner]
			for i, v := range xs {
				os[i] = v * gs[i]
			}
		}
		goff = p.next(&idx, goff)
	}
}

// broadcastMultiplyBackward writes dx = dout ⊙ g and adds dout ⊙ x into the
// zeroed dg, reading each element before writing dx so that dx may alias.
func broadcastMultiplyBackward[T Float](p broadcastPlan, dxT, dgT, doutT, xT, gT *Tensor) {
	dx, dg, dout, x, g := dataAs[T](dxT), dataAs[T](dgT), dataAs[T](doutT), dataAs[T](xT), dataAs[T](gT)
	if broadcastMulBackwardC(&p, dx, dg, dout, x, g) {
		return
	}
	inner := p.size[p.k-1]
	scalar := p.bcast[p.k-1]
	var idx [maxBroadcastRank]int
	goff := 0
	for xo := 0; xo < len(x); xo += inner {
		xs, ds := x[xo:xo+inner], dout[xo:xo+inner]
		var dxs []T
		if dx != nil {
			dxs = dx[xo : xo+inner]
		}
		switch {
		case scalar:
			gv := g[goff]
			var sum T
			for i, d := range ds {
				sum += d * xs[i]
				if dxs != nil {
					dxs[i] = d * gv
				}
			}
			if dg != nil {
				dg[goff] += sum
			}
		case dg != nil:
			gs, dgs := g[goff:goff+inner], dg[goff:goff+inner]
			for i, d := range ds {
				dgs[i] += d * xs[i]
				if dxs != nil {
					dxs[i] = d * gs[i]
				}
			}
		default:
			gs := g[goff : goff+inner]
			for i, d := range ds {
				dxs[i] = d * gs[i]
			}
		}
		goff = p.next(&idx, goff)
	}
}

// next advances the odometer over the outer axes and returns g's new offset.
func (p *broadcastPlan) next(idx *[maxBroadcastRank]int, goff int) int {
	for d := p.k - 2; d >= 0; d-- {
		idx[d]++
		goff += p.stride[d]
		if idx[d] < p.size[d] {
			return goff
		}
		goff -= p.stride[d] * p.size[d]
		idx[d] = 0
	}
	return goff
}
