package engine

// BroadcastMultiplyReference is the broadcast multiply (broadcast.go) index
// by index, in float64 whatever the tensors' dtype: the definition to read
// before the merged-axes plan and the C kernels, and the oracle they are
// tested against. Each element of x finds its element of g by dropping the
// axes along which g is 1. With dout it also gives dx = dout ⊙ g and
// dg = Σ dout ⊙ x over the broadcast axes (nil without).
//
//	x: any shape  g: x's shape aligned from the right, each axis 1 or x's
//	dout: like x or nil; out, dx like x and dg like g, as Values() lays them out
func BroadcastMultiplyReference(x, g, dout *Tensor) (out, dx, dg []float64, err error) {
	xs, gs := x.Shape(), g.Shape()
	if _, ok := planBroadcast(xs, gs); !ok || dout != nil && !dout.SameShape(xs...) {
		return nil, nil, nil, shapeErr("BroadcastMultiplyReference", "want g broadcastable to x and dout like x",
			"x", x, "g", g, "dout", dout)
	}
	xv, gv := x.Values(), g.Values()
	out = make([]float64, len(xv))
	var dv []float64
	if dout != nil {
		dv, dx, dg = dout.Values(), make([]float64, len(xv)), make([]float64, len(gv))
	}
	idx := make([]int, len(xs)) // x's index of element i, last axis fastest
	for i := range xv {
		gi := 0
		for d := range gs {
			if gs[d] != 1 {
				gi = gi*gs[d] + idx[d+len(xs)-len(gs)]
			}
		}
		out[i] = xv[i] * gv[gi]
		if dv != nil {
			dx[i] = dv[i] * gv[gi]
			dg[gi] += dv[i] * xv[i]
		}
		for d := len(xs) - 1; d >= 0; d-- {
			if idx[d]++; idx[d] < xs[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out, dx, dg, nil
}
