package engine

// The convolution in bf16 (--precision bf16) for the stride-1 shapes whose
// wide frame is small (convGeom.wide): conv_cpu.go's implicit GEMM, with
// sgemmBF16 as the product and B's rows read in place at each kernel tap's
// offset (sgemmBF16Taps), so no col matrix is built and nothing is packed
// twice. The other shapes take conv.go's col matrix.
//
//   - forward: outWide = W · taps(xp), started from the bias (added in
//     float32), then narrowed into out;
//   - weight gradient: dW += doutWide · taps(xp)ᵀ, summed over the wide
//     frame's columns, whose junk ones are zero in doutWide; the bias
//     gradient sums dout in float32;
//   - input gradient: dxWide = Wᵀ · taps(doutp) over the margined wide dout
//     (conv_cpu.go's input gradient, as one product), narrowed into dx.
//
// Images are split over the threads as in conv2D, each part summing its dW
// and db into its own buffer, added in part order: the same bits run after
// run.

type convBF16Task struct {
	g          convGeom
	backward   bool
	y, x, w, b []float32 // y is out in forward, dout in backward
	dx, dw, db []float32
	scratch    []float32
	l          convBF16Layout
	wt         []float32 // per group, Wᵀ for the input gradient: (Cg, Mg·taps), columns (co, tap)
	xOff       []int32   // the input's tap offsets, B's rows of the forward and weight-gradient products
	dyOff      []int32   // the margined dout's, B's rows of the input gradient
	maxOff     int       // largest tap offset in the wide frame
	dyLen      int       // one channel of the margined wide dout
	nx         int       // the input gradient's wide run: (H−1)·Wp + W
}

// convBF16Layout places one part's scratch; each field is an offset, the
// next one's offset its end.
type convBF16Layout struct{ yb, dyp, dxw, dw, db, size int }

var convBF16Tasks = taskPool{New: func() any { return new(convBF16Task) }}

// convBF16For reports whether conv2DBF16 takes g: a wide shape whose
// offsets fit an int32.
func convBF16For(g *convGeom) bool {
	maxOff := (g.kh-1)*g.dh*g.wp + (g.kw-1)*g.dw
	return g.wide && g.cg*g.hp*g.wp < 1<<30 && g.mg*(g.nw+2*maxOff) < 1<<30
}

// conv2DBF16 is conv2D's work in bf16 for the wide shapes; false, having
// done nothing, for the others.
func conv2DBF16(g *convGeom, backward bool, y, x, w, b, dx, dw, db []float32) bool {
	if !convBF16For(g) {
		return false
	}
	t := convBF16Tasks.Get().(*convBF16Task)
	t.g, t.backward = *g, backward
	t.y, t.x, t.w, t.b, t.dx, t.dw, t.db = y, x, w, b, dx, dw, db
	t.plan()
	np := parts(g.n)
	wtLen := 0
	if dx != nil {
		wtLen = g.groups * g.cg * g.mg * g.kh * g.kw
	}
	t.scratch = takeScratch[float32](np*t.l.size + wtLen) // zeroed: margins and junk columns stay so
	t.wt = t.scratch[np*t.l.size:]
	t.transposeWeights()
	parallelFor(g.n, t)
	if backward {
		t.sumParts(np)
	}
	giveScratch(t.scratch)
	*t = convBF16Task{xOff: t.xOff[:0], dyOff: t.dyOff[:0]} // the offset tables' memory is kept
	convBF16Tasks.Put(t)
	return true
}

// plan lays out a part's scratch and fills the offset tables.
func (t *convBF16Task) plan() {
	g := &t.g
	taps := g.kh * g.kw
	t.maxOff = (g.kh-1)*g.dh*g.wp + (g.kw-1)*g.dw
	t.dyLen = g.nw + 2*t.maxOff
	t.nx = (g.h-1)*g.wp + g.w
	t.xOff = t.xOff[:0]
	for c := 0; c < g.cg; c++ {
		for kh := 0; kh < g.kh; kh++ {
			for kw := 0; kw < g.kw; kw++ {
				t.xOff = append(t.xOff, int32(c*g.hp*g.wp+kh*g.dh*g.wp+kw*g.dw))
			}
		}
	}
	// dx at padded position q reads dout at q − tap offset, stored at
	// maxOff + that in the margined frame; the run starts at q0.
	q0 := g.ph*g.wp + g.pw
	t.dyOff = t.dyOff[:0]
	for co := 0; co < g.mg && t.dx != nil; co++ {
		for tap := 0; tap < taps; tap++ {
			off := int(t.xOff[tap])
			t.dyOff = append(t.dyOff, int32(co*t.dyLen+t.maxOff-off+q0))
		}
	}
	var l convBF16Layout
	needX := !t.backward || t.dw != nil
	if g.padded && needX {
		l.yb = g.cg * g.hp * g.wp
	}
	l.dyp = l.yb
	if !t.backward {
		l.dyp += g.mg * g.nw
	}
	l.dxw = l.dyp
	if t.backward && (t.dx != nil || t.dw != nil) {
		l.dxw += g.mg * t.dyLen
	}
	l.dw = l.dxw
	if t.dx != nil {
		l.dw += g.cg * t.nx
	}
	l.db = l.dw + len(t.dw)
	l.size = l.db + len(t.db)
	t.l = l
}

// transposeWeights writes, per group, Wᵀ with columns (co, tap) into t.wt
// (empty without an input gradient).
func (t *convBF16Task) transposeWeights() {
	g := &t.g
	if t.dx == nil {
		return
	}
	taps := g.kh * g.kw
	for gi := 0; gi < g.groups; gi++ {
		wg := t.w[gi*g.mg*g.kg:]
		wt := t.wt[gi*g.cg*g.mg*taps:]
		for co := 0; co < g.mg; co++ {
			for c := 0; c < g.cg; c++ {
				copy(wt[c*g.mg*taps+co*taps:][:taps], wg[co*g.kg+c*taps:][:taps])
			}
		}
	}
}

func (t *convBF16Task) run(part, lo, hi int) {
	s := t.scratch[part*t.l.size : (part+1)*t.l.size]
	if t.backward {
		t.backwardImages(s, lo, hi)
	} else {
		t.forwardImages(s, lo, hi)
	}
}

// input returns image n's group gi as the products read it: x itself, or
// its padded copy in the part's scratch.
func (t *convBF16Task) input(s []float32, n, gi int) []float32 {
	g := &t.g
	xg := t.x[n*g.cin*g.inPlane+gi*g.cg*g.inPlane:][:g.cg*g.inPlane]
	if !g.padded {
		return xg
	}
	xp := s[:t.l.yb]
	convCopyRows(xp[g.ph*g.wp+g.pw:], g.hp*g.wp, g.wp, xg, g.inPlane, g.w, g.cg, g.h, g.w)
	return xp
}

func (t *convBF16Task) forwardImages(s []float32, lo, hi int) {
	g := &t.g
	yb := s[t.l.yb:t.l.dyp]
	for n := lo; n < hi; n++ {
		for gi := 0; gi < g.groups; gi++ {
			src := t.input(s, n, gi)
			var beta float32
			if t.b != nil {
				for co := 0; co < g.mg; co++ {
					fillDoubling(yb[co*g.nw:(co+1)*g.nw], t.b[gi*g.mg+co])
				}
				beta = 1
			}
			sgemmBF16Taps(false, false, g.mg, g.nw, g.kg, t.w[gi*g.mg*g.kg:], g.kg, src, t.xOff, beta, yb, g.nw)
			yg := t.y[n*g.outPlanes+gi*g.mg*g.p:][:g.mg*g.p]
			convCopyRows(yg, g.p, g.ow, yb, g.nw, g.wp, g.mg, g.oh, g.ow) // drop the junk columns
		}
	}
}

func (t *convBF16Task) backwardImages(s []float32, lo, hi int) {
	g := &t.g
	dyp, dxw := s[t.l.dyp:t.l.dxw], s[t.l.dxw:t.l.dw]
	dwp, dbp := s[t.l.dw:t.l.db], s[t.l.db:t.l.size]
	taps := g.kh * g.kw
	for n := lo; n < hi; n++ {
		for gi := 0; gi < g.groups; gi++ {
			dyg := t.y[n*g.outPlanes+gi*g.mg*g.p:][:g.mg*g.p]
			for co := 0; co < g.mg && t.db != nil; co++ {
				dbp[gi*g.mg+co] += sumSlice(dyg[co*g.p : (co+1)*g.p])
			}
			if t.dw == nil && t.dx == nil {
				continue
			}
			// dout into the margined wide frame; margins and junk columns stay zero.
			convCopyRows(dyp[t.maxOff:], t.dyLen, g.wp, dyg, g.p, g.ow, g.mg, g.oh, g.ow)
			if t.dw != nil {
				src := t.input(s, n, gi)
				sgemmBF16Taps(false, true, g.mg, g.kg, g.nw, dyp[t.maxOff:], t.dyLen, src, t.xOff, 1,
					dwp[gi*g.mg*g.kg:], g.kg)
			}
			if t.dx != nil {
				k := g.mg * taps
				sgemmBF16Taps(false, false, g.cg, t.nx, k, t.wt[gi*g.cg*k:], k, dyp, t.dyOff, 0, dxw, t.nx)
				dxg := t.dx[n*g.cin*g.inPlane+gi*g.cg*g.inPlane:][:g.cg*g.inPlane]
				convCopyRows(dxg, g.inPlane, g.w, dxw, t.nx, g.wp, g.cg, g.h, g.w)
			}
		}
	}
}

// sumParts adds each part's dW and db into the caller's, in part order.
func (t *convBF16Task) sumParts(np int) {
	for part := 0; part < np; part++ {
		s := t.scratch[part*t.l.size:]
		for i, v := range s[t.l.dw:t.l.db] {
			t.dw[i] += v
		}
		for i, v := range s[t.l.db:t.l.size] {
			t.db[i] += v
		}
	}
}
