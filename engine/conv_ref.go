package engine

// Conv2DReference is the convolution as the textbook writes it: seven loops,
// no lowering, every sum in float64 whatever the tensors' dtype. It is the
// definition to read before conv.go's lowerings, and the oracle that they,
// the C fast path and the CUDA kernels are tested against. With dout it also
// gives the adjoint: dx, dw and db for that output gradient (nil without).
//
//	x: (N, Cin, H, W)  w: (Cout, Cin/groups, KH, KW)  b: (Cout) or nil
//	dout: (N, Cout, OH, OW) or nil; out: (N, Cout, OH, OW), as Values() lays it out
func Conv2DReference(x, w, b, dout *Tensor, p Conv2DParams) (out, dx, dw, db []float64, err error) {
	g, msg := convGeometry(x.Shape(), w.Shape(), p)
	if msg == "" && b != nil && !b.SameShape(g.cout) {
		msg = "want b (Cout)"
	}
	if msg == "" && dout != nil && !dout.SameShape(g.n, g.cout, g.oh, g.ow) {
		msg = "want dout (N,Cout,OH,OW)"
	}
	if msg != "" {
		return nil, nil, nil, nil, shapeErr("Conv2DReference", msg, "x", x, "w", w, "b", b, "dout", dout, "params", p)
	}
	r := convRef{g: g, x: x.Values(), w: w.Values(), out: make([]float64, g.n*g.outPlanes)}
	if b != nil {
		r.b = b.Values()
	}
	if dout != nil {
		r.dout = dout.Values()
		r.dx, r.dw, r.db = make([]float64, len(r.x)), make([]float64, len(r.w)), make([]float64, g.cout)
	}
	for n := 0; n < g.n; n++ {
		for co := 0; co < g.cout; co++ {
			for i := 0; i < g.oh; i++ {
				for j := 0; j < g.ow; j++ {
					r.pixel(n, co, i, j)
				}
			}
		}
	}
	return r.out, r.dx, r.dw, r.db, nil
}

type convRef struct {
	g               convGeom
	x, w, b, dout   []float64
	out, dx, dw, db []float64
}

// pixel computes output pixel (i, j) of channel co of image n, and with an
// output gradient, that pixel's share of dx, dw and db.
func (r *convRef) pixel(n, co, i, j int) {
	g := &r.g
	o := ((n*g.cout+co)*g.oh+i)*g.ow + j
	s, dy := 0.0, 0.0
	if r.b != nil {
		s = r.b[co]
	}
	if r.dout != nil {
		dy = r.dout[o]
		r.db[co] += dy
	}
	group := co / g.mg
	for ci := 0; ci < g.cg; ci++ {
		for ki := 0; ki < g.kh; ki++ {
			for kj := 0; kj < g.kw; kj++ {
				ih, iw := i*g.sh-g.ph+ki*g.dh, j*g.sw-g.pw+kj*g.dw
				if ih < 0 || ih >= g.h || iw < 0 || iw >= g.w {
					continue // a zero of the padding
				}
				xi := ((n*g.cin+group*g.cg+ci)*g.h+ih)*g.w + iw
				wi := ((co*g.cg+ci)*g.kh+ki)*g.kw + kj
				s += r.w[wi] * r.x[xi]
				if r.dout != nil {
					r.dx[xi] += r.w[wi] * dy
					r.dw[wi] += r.x[xi] * dy
				}
			}
		}
	}
	r.out[o] = s
}
