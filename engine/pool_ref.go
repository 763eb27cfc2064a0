package engine

import "math"

// Pool2DReference is max or average pooling as PyTorch defines it, loop by
// loop over every window, in float64 whatever the tensor's dtype: the
// definition to read before pool.go's plane loops (the 2×2 ones, the
// branch-free float32 ones and the C kernel), and the oracle they are tested
// against. Max pooling pads with −∞ and picks the window's first largest
// element, or its last NaN as PyTorch's CPU loop does; average pooling pads
// with zeros and divides by KernelH·KernelW (count_include_pad). With dout
// it also gives dx: each output's gradient goes to the input max picked, or
// is spread evenly over the window. A global average pool is the average
// pool whose kernel is the whole plane.
//
//	x: (N, C, H, W)  dout: (N, C, OH, OW) or nil; out: (N, C, OH, OW), dx: like x
func Pool2DReference(x, dout *Tensor, p Pool2DParams, isMax bool) (out, dx []float64, err error) {
	g, msg := poolGeometry(x.Shape(), p)
	if msg == "" && dout != nil && !dout.SameShape(x.Dim(0), x.Dim(1), g.oh, g.ow) {
		msg = "want dout (N,C,OH,OW)"
	}
	if msg != "" {
		return nil, nil, shapeErr("Pool2DReference", msg, "x", x, "dout", dout, "params", p)
	}
	xv := x.Values()
	out = make([]float64, g.planes*g.oh*g.ow)
	var dv []float64
	if dout != nil {
		dv, dx = dout.Values(), make([]float64, len(xv))
	}
	o := 0
	for pl := 0; pl < g.planes; pl++ {
		for oh := 0; oh < g.oh; oh++ {
			for ow := 0; ow < g.ow; ow++ {
				m, at, sum := math.Inf(-1), -1, 0.0
				for kh := 0; kh < g.kh; kh++ {
					for kw := 0; kw < g.kw; kw++ {
						ih, iw := oh*g.sh-g.ph+kh, ow*g.sw-g.pw+kw
						if ih < 0 || ih >= g.h || iw < 0 || iw >= g.w {
							continue
						}
						i := (pl*g.h+ih)*g.w + iw
						if v := xv[i]; at < 0 || v > m || v != v {
							m, at = v, i
						}
						sum += xv[i]
					}
				}
				if isMax {
					out[o] = m
				} else {
					out[o] = sum / float64(g.kh*g.kw)
				}
				if dv != nil {
					poolRefBackward(dx, dv[o], at, pl, oh, ow, &g, isMax)
				}
				o++
			}
		}
	}
	return out, dx, nil
}

// poolRefBackward adds output (pl, oh, ow)'s gradient d into dx: all of it to
// the input max picked (flat index at), or d/(KH·KW) to each input of the
// window.
func poolRefBackward(dx []float64, d float64, at, pl, oh, ow int, g *poolGeom, isMax bool) {
	if isMax {
		dx[at] += d
		return
	}
	for kh := 0; kh < g.kh; kh++ {
		for kw := 0; kw < g.kw; kw++ {
			ih, iw := oh*g.sh-g.ph+kh, ow*g.sw-g.pw+kw
			if ih >= 0 && ih < g.h && iw >= 0 && iw < g.w {
				dx[(pl*g.h+ih)*g.w+iw] += d / float64(g.kh*g.kw)
			}
		}
	}
}
