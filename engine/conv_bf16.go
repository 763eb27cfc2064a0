package engine

import "unsafe"

// The convolution in bf16 (--precision bf16) for the stride-1 shapes whose
// wide frame is small (convGeom.wide) and the 1×1 ones: conv_cpu.go's implicit GEMM with
// VDPBF16PS (conv_bf16_cpu.c), which multiplies pairs of bf16 in one word.
// The other shapes take conv.go's col matrix and sgemmBF16.
//
//   - forward: outWide = W · taps(xp2), started from the bias (float32), then
//     narrowed into out; xp2 is the padded input as channel-pair words;
//   - input gradient: dxWide = Wᵀ · taps(doutp2) over the margined wide dout
//     as channel-pair words (conv_cpu.go's full correlation), narrowed into dx;
//   - weight gradient: dWᵀ += taps(xpb) · doutWideᵀ, pairs of neighbouring
//     pixels of the padded input in bf16 and of the wide dout, whose junk
//     columns are zero; the bias gradient sums dout in float32.
//
// Where the CPU has AMX (CPUHasAMX), the same three products run on its tiles
// (conv_bf16_cpu.c's kiln_conv_amx_*): the forward and input gradient when
// padding rows and channel pairs to 16 at most doubles the work
// (convAMXWorth), the weight gradient when both channel counts are multiples
// of 16. On Sapphire Rapids a VDPBF16PS product ran at about 0.7× float32
// FMA's and a TDPBF16PS one at 19×; on Emerald Rapids the instruction
// issues at a quarter of FMA's rate (half its flops; Zen 4: FMA's rate).
//
// Images are split over the threads as in conv2D, each part summing its dWᵀ
// and db into its own buffer, added in part order: the same bits run after
// run, at any thread count.

// convBF16Rows is the kernels' tile height: packed weights come in panels
// of it.
const convBF16Rows = 8

type convBF16Task struct {
	g          convGeom
	backward   bool
	y, x, w, b []float32 // y is out in forward, dout in backward
	dx, dw, db []float32
	scratch    []float32
	l          convBF16Layout
	ap         []uint32 // per group: W (forward) or Wᵀ (input gradient) packed in pairs
	apGroup    int
	xOff       []int32 // forward: the pair-rows (c2, tap) in xp2
	dyOff      []int32 // input gradient: the pair-rows (co2, tap) in doutp2
	aOff       []int32 // weight gradient: the rows (c, tap) of xpb, in bf16 elements
	taps       int
	maxOff     int // largest tap offset in the wide frame
	dyLen      int // one channel of the margined wide dout
	nx         int // the input gradient's wide run: (H−1)·Wp + W
	nwe        int // nw rounded up to even (to 32 under amxAx): the weight gradient's pixel pairs ×2

	// amxBx: the forward or input gradient runs on AMX tiles (kiln_conv_amx_bx):
	// the offset tables (xOff, dyOff) then hold one offset per tap, the
	// channel-pair planes are padded to c2p (a multiple of 16) with zero
	// planes, A's rows (rowsA) to 16, and the product's columns come in
	// chunks of 16 (chunkSrc in the frame, chunkDst in C). direct: C is
	// the output (forward) or dx itself, whose rows are whole chunks; else
	// the wide frame yb or dxw, whose junk columns are dropped after.
	// bias16: the forward's bias as tiles, 16 floats a row, per group.
	// amxAx: the weight gradient does (kiln_conv_amx_ax), aOff one offset per tap.
	amxBx, amxAx, direct bool
	c2p, rowsA           int
	ldc                  int // C's row stride: yb's, dxw's, or the output plane (direct)
	chunkSrc, chunkDst   []int32
	bias16               []float32
	biasLen              int
}

// convAMXWorth reports whether a product of m rows over nch channels is
// worth AMX's tiles: their padding (rows to 16, channel pairs to 16) at
// most doubles the work.
func convAMXWorth(m, nch int) bool {
	pairs := (nch + 1) / 2
	return cpuAMX() && ceilDiv(m, 16)*16 <= 2*m && ceilDiv(pairs, 16)*16 <= 2*pairs
}

// convBF16Layout places one part's scratch, in float32 units (words and
// bf16 pairs alike); each field is an offset, the next one's offset its end.
type convBF16Layout struct{ xp2, yb, dyp2, dxw, xpb, dyb, bp, dwt, db, size int }

var convBF16Tasks = taskPool{New: func() any { return new(convBF16Task) }}

// convBF16For reports whether conv2DBF16 takes g: a wide shape whose
// offsets fit an int32.
func convBF16For(g *convGeom) bool {
	maxOff := (g.kh-1)*g.dh*g.wp + (g.kw-1)*g.dw
	return g.wide && g.cg*g.hp*g.wp < 1<<29 && g.mg*(g.nw+2*maxOff) < 1<<29
}

// conv2DBF16 is conv2D's work in bf16 for the wide shapes; false, having
// done nothing, for the others.
func conv2DBF16(g *convGeom, backward bool, y, x, w, b, dx, dw, db []float32) bool {
	gw := wideGeom(g)
	if !convBF16For(&gw) {
		return false
	}
	t := convBF16Tasks.Get().(*convBF16Task)
	*t = convBF16Task{g: gw, backward: backward, y: y, x: x, w: w, b: b, dx: dx, dw: dw, db: db,
		xOff: t.xOff[:0], dyOff: t.dyOff[:0], aOff: t.aOff[:0], // the offset tables' memory is kept
		chunkSrc: t.chunkSrc[:0], chunkDst: t.chunkDst[:0]}
	t.plan()
	np := parts(g.n)
	apLen := g.groups * t.apGroup
	t.scratch = takeScratch[float32](np*t.l.size + apLen + t.biasLen) // zeroed: margins and junk stay so
	t.ap = asWords(t.scratch[np*t.l.size : np*t.l.size+apLen])
	t.bias16 = t.scratch[np*t.l.size+apLen:]
	t.packWeights()
	parallelFor(g.n, t)
	if backward {
		t.sumParts(np)
	}
	giveScratch(t.scratch)
	*t = convBF16Task{xOff: t.xOff[:0], dyOff: t.dyOff[:0], aOff: t.aOff[:0], chunkSrc: t.chunkSrc[:0],
		chunkDst: t.chunkDst[:0]}
	convBF16Tasks.Put(t)
	return true
}

// tapOffset is where tap (kh·KW + kw) reads in the padded plane, relative
// to the output position's: kh·dh·Wp + kw·dw.
func (g *convGeom) tapOffset(tap int) int { return tap/g.kw*g.dh*g.wp + tap%g.kw*g.dw }

// wideGeom is g with a 1×1 convolution as its own wide frame: no junk, no
// margins.
func wideGeom(g *convGeom) convGeom {
	gw := *g
	if gw.pointwise {
		gw.wide, gw.hp, gw.wp, gw.nw = true, g.h, g.w, g.p
	}
	return gw
}

// convBF16Rounds reports whether a bf16 convolution rounds its inputs to
// bf16 and runs fp32's kernels on them (conv2DRoundedBF16): where the CPU
// has AMX, for the wide shapes whose passes do not all take its tiles (few
// channels). Those CPUs run VDPBF16PS at 0.5–0.7× float32 FMA's flops, and the
// fp32 kernels on rounded inputs multiply the same bf16 operands.
func convBF16Rounds(g *convGeom, backward, dxOn, dwOn bool) bool {
	if !cpuAMX() {
		return false
	}
	if gw := wideGeom(g); !convBF16For(&gw) {
		return false // the col matrix and the AMX product
	}
	if !backward {
		return !convAMXWorth(g.mg, g.cg)
	}
	return (dxOn && !convAMXWorth(g.cg, g.mg)) || (dwOn && (g.cg%16 != 0 || g.mg%16 != 0))
}

// conv2DRoundedBF16 is the convolution in bf16 as fp32's kernels on copies
// of its inputs rounded to bf16 (x and W; dout in the backward): products
// of bf16 operands summed in float32, as bf16 means; the bias, and the bias
// gradient's sums of dout, float32.
func conv2DRoundedBF16(g convGeom, backward bool, y, x, w, b, dx, dw, db []float32) {
	xr := roundedScratch(x, !backward || dw != nil)
	wr := roundedScratch(w, !backward || dx != nil)
	yr := roundedScratch(y, backward)
	g.prec = FP32
	conv2DOn(g, backward, orSlice(yr, y), orSlice(xr, x), orSlice(wr, w), b, dx, dw, nil)
	giveScratch(xr)
	giveScratch(wr)
	giveScratch(yr)
	for n := 0; backward && db != nil && n < g.n; n++ {
		convAddRowSums(db[:g.groups*g.mg], y[n*g.outPlanes:], g.p)
	}
}

// roundedScratch is s rounded to bf16 in a scratch buffer, or nil when not
// needed.
func roundedScratch(s []float32, needed bool) []float32 {
	if !needed {
		return nil
	}
	r := takeScratchUnzeroed(len(s))
	roundBF16Slice(r, s)
	return r
}

func orSlice(s, orElse []float32) []float32 {
	if s == nil {
		return orElse
	}
	return s
}

func asWords(s []float32) []uint32 {
	return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(s))), len(s))
}

func asHalves(s []float32) []uint16 {
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(s))), 2*len(s))
}

// plan fills the offset tables and lays out a part's scratch (layout).
func (t *convBF16Task) plan() {
	g := &t.g
	t.taps = g.kh * g.kw
	t.maxOff = (g.kh-1)*g.dh*g.wp + (g.kw-1)*g.dw
	t.dyLen = g.nw + 2*t.maxOff
	t.nx = (g.h-1)*g.wp + g.w
	t.nwe = (g.nw + 1) / 2 * 2
	plane := g.hp * g.wp
	fwd, dxOn, dwOn := !t.backward, t.backward && t.dx != nil, t.backward && t.dw != nil
	t.amxBx = (fwd && convAMXWorth(g.mg, g.cg)) || (dxOn && convAMXWorth(g.cg, g.mg))
	t.amxAx = dwOn && cpuAMX() && g.cg%16 == 0 && g.mg%16 == 0
	if t.amxAx {
		t.nwe = ceilDiv(g.nw, 32) * 32
	}
	q0 := g.ph*g.wp + g.pw
	if t.amxBx {
		t.planOffsetsAMX(fwd, q0)
	}
	for c2 := 0; fwd && !t.amxBx && c2 < (g.cg+1)/2; c2++ {
		for tap := 0; tap < t.taps; tap++ {
			t.xOff = append(t.xOff, int32(c2*plane+g.tapOffset(tap)))
		}
	}
	// dx at padded position q0 + j reads dout at q0 + j − tap offset, stored
	// at maxOff + that in the margined frame.
	for co2 := 0; dxOn && !t.amxBx && co2 < (g.mg+1)/2; co2++ {
		for tap := 0; tap < t.taps; tap++ {
			t.dyOff = append(t.dyOff, int32(co2*t.dyLen+t.maxOff-g.tapOffset(tap)+q0))
		}
	}
	for c := 0; dwOn && c < g.cg; c++ {
		for tap := 0; tap < t.taps; tap++ {
			if !t.amxAx || c == 0 {
				t.aOff = append(t.aOff, int32(c*plane+g.tapOffset(tap)))
			}
		}
	}
	t.layout(fwd, dxOn, dwOn)
}

// planOffsetsAMX sets amxBx's shapes and one offset a tap: the forward's
// into the input's channel-pair planes (xOff), the input gradient's into
// the margined dout's (dyOff).
func (t *convBF16Task) planOffsetsAMX(fwd bool, q0 int) {
	g := &t.g
	rows, nch, n := g.mg, g.cg, g.nw
	if !fwd {
		rows, nch, n = g.cg, g.mg, t.nx
	}
	t.rowsA, t.c2p = ceilDiv(rows, 16)*16, ceilDiv((nch+1)/2, 16)*16
	t.planChunks(fwd, rows, n)
	for tap := 0; tap < t.taps; tap++ {
		off := g.tapOffset(tap)
		if fwd {
			t.xOff = append(t.xOff, int32(off))
		} else {
			t.dyOff = append(t.dyOff, int32(t.maxOff-off+q0))
		}
	}
}

// planChunks lays C's columns out in chunks of 16: straight into the
// output's rows where they are whole chunks (and its rows need no padding),
// else over the wide frame of n columns, padded to 32.
func (t *convBF16Task) planChunks(fwd bool, rows, n int) {
	g := &t.g
	outH, outW := g.oh, g.ow
	if !fwd {
		outH, outW = g.h, g.w
	}
	t.direct = outW%16 == 0 && rows%16 == 0
	if !t.direct {
		t.ldc = ceilDiv(n, 32) * 32
		for k := 0; k < t.ldc/16; k++ {
			t.chunkSrc, t.chunkDst = append(t.chunkSrc, int32(16*k)), append(t.chunkDst, int32(16*k))
		}
		return
	}
	t.ldc = outH * outW
	for r := 0; r < outH; r++ {
		for c := 0; c < outW; c += 16 {
			t.chunkSrc, t.chunkDst = append(t.chunkSrc, int32(r*g.wp+c)), append(t.chunkDst, int32(r*outW+c))
		}
	}
}

// layout places a part's scratch and sizes the packed weights.
func (t *convBF16Task) layout(fwd, dxOn, dwOn bool) {
	g := &t.g
	plane := g.hp * g.wp
	var l convBF16Layout
	// The pair planes, the product's rows and its row stride: as the
	// shape is, or as amxBx pads them (32 words spare for the last
	// columns' reads past the frame).
	planes, rows, ldc, spare := (g.cg+1)/2, g.mg, g.nw, 0
	if dxOn {
		planes, rows, ldc = (g.mg+1)/2, g.cg, t.nx
	}
	if t.amxBx {
		planes, rows, ldc, spare = t.c2p, t.rowsA, t.ldc, 32
		if t.direct {
			rows = 0 // C is the output itself: no wide frame
		}
	}
	t.ldc = ldc
	if fwd {
		l.yb = planes*plane + spare
	}
	l.dyp2 = l.yb
	if fwd {
		l.dyp2 += rows * ldc
	}
	l.dxw = l.dyp2
	if dxOn {
		l.dxw += planes*t.dyLen + spare
	}
	l.xpb = l.dxw
	if dxOn {
		l.xpb += rows * ldc
	}
	l.dyb, l.bp, l.dwt = l.xpb, l.xpb, l.xpb
	if dwOn {
		last := 2 // bf16 elements spare past the planes for the last pair's read (amxAx: its 32 columns')
		if t.amxAx {
			last = 32
		}
		l.dyb += (g.cg*plane + last + 1) / 2
		l.bp = l.dyb + g.mg*t.nwe/2
		l.dwt = l.bp + ceilDiv(g.mg, 32)*32*t.nwe/2
	}
	l.db = l.dwt
	if dwOn {
		l.db += g.groups * g.kg * g.mg
	}
	l.size = l.db + len(t.db)
	t.l = l
	t.apGroup, t.biasLen = 0, 0
	if fwd && t.amxBx && t.b != nil {
		t.biasLen = g.groups * t.rowsA * 16
	}
	switch {
	case t.amxBx:
		t.apGroup = t.rowsA * t.taps * t.c2p
	case fwd:
		t.apGroup = ceilDiv(g.mg, convBF16Rows) * convBF16Rows * ((g.cg + 1) / 2) * t.taps
	case dxOn:
		t.apGroup = ceilDiv(g.cg, convBF16Rows) * convBF16Rows * ((g.mg + 1) / 2) * t.taps
	}
}

// packWeights packs each group's W (forward: rows co, channel pairs c) or
// Wᵀ (input gradient: rows c, channel pairs co) for the products.
func (t *convBF16Task) packWeights() {
	g := &t.g
	for gi := 0; gi < g.groups && t.apGroup > 0; gi++ {
		wg, ap := t.w[gi*g.mg*g.kg:], t.ap[gi*t.apGroup:]
		switch {
		case t.amxBx && t.backward:
			convAMXPackW(ap, wg, g.cg, t.taps, g.mg, g.kg, t.taps, t.rowsA, t.c2p)
		case t.amxBx:
			convAMXPackW(ap, wg, g.mg, g.kg, g.cg, t.taps, t.taps, t.rowsA, t.c2p)
			for co := 0; co < g.mg && t.biasLen > 0; co++ { // rows past mg stay zero
				fillDoubling(t.bias16[(gi*t.rowsA+co)*16:][:16], t.b[gi*g.mg+co])
			}
		case t.backward:
			convBF16PackW(ap, wg, g.cg, t.taps, g.mg, g.kg, t.taps)
		default:
			convBF16PackW(ap, wg, g.mg, g.kg, g.cg, t.taps, t.taps)
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

func (t *convBF16Task) forwardImages(s []float32, lo, hi int) {
	g := &t.g
	plane := g.hp * g.wp
	xp2, yb := asWords(s[t.l.xp2:t.l.yb]), s[t.l.yb:t.l.dyp2]
	np := (g.cg + 1) / 2 * t.taps
	for n := lo; n < hi; n++ {
		for gi := 0; gi < g.groups; gi++ {
			xg := t.x[n*g.cin*g.inPlane+gi*g.cg*g.inPlane:][:g.cg*g.inPlane]
			bf16PairRows(xp2[g.ph*g.wp+g.pw:], plane, g.wp, xg, g.inPlane, g.w, g.cg, g.h, g.w)
			yg := t.y[n*g.outPlanes+gi*g.mg*g.p:][:g.mg*g.p]
			if t.amxBx {
				t.productAMX(gi, xp2, plane, t.xOff, yg, yb)
				continue
			}
			var beta float32
			if t.b != nil {
				for co := 0; co < g.mg; co++ {
					fillDoubling(yb[co*g.nw:(co+1)*g.nw], t.b[gi*g.mg+co])
				}
				beta = 1
			}
			convBF16GemmBx(g.mg, g.nw, np, t.ap[gi*t.apGroup:], xp2, t.xOff, yb, g.nw, beta)
			convCopyRows(yg, g.p, g.ow, yb, g.nw, g.wp, g.mg, g.oh, g.ow) // drop the junk columns
		}
	}
}

func (t *convBF16Task) backwardImages(s []float32, lo, hi int) {
	g := &t.g
	plane := g.hp * g.wp
	dyp2, dxw := asWords(s[t.l.dyp2:t.l.dxw]), s[t.l.dxw:t.l.xpb]
	xpb, dyb, bp := asHalves(s[t.l.xpb:t.l.dyb]), asHalves(s[t.l.dyb:t.l.bp]), asWords(s[t.l.bp:t.l.dwt])
	dwt, dbp := s[t.l.dwt:t.l.db], s[t.l.db:t.l.size]
	for n := lo; n < hi; n++ {
		for gi := 0; gi < g.groups; gi++ {
			dyg := t.y[n*g.outPlanes+gi*g.mg*g.p:][:g.mg*g.p]
			if t.db != nil {
				convAddRowSums(dbp[gi*g.mg:(gi+1)*g.mg], dyg, g.p)
			}
			if t.dw != nil {
				xg := t.x[n*g.cin*g.inPlane+gi*g.cg*g.inPlane:][:g.cg*g.inPlane]
				bf16Rows(xpb[g.ph*g.wp+g.pw:], plane, g.wp, xg, g.inPlane, g.w, g.cg, g.h, g.w)
				bf16Rows(dyb, t.nwe, g.wp, dyg, g.p, g.ow, g.mg, g.oh, g.ow) // junk columns stay zero
				convBF16PackDout(bp, asWords(s[t.l.dyb:t.l.bp]), t.nwe/2, g.mg, t.nwe/2)
				if t.amxAx {
					convAMXAx(g.cg, t.taps, g.mg, t.nwe/2, xpb, plane, t.aOff, bp, dwt[gi*g.kg*g.mg:], g.mg)
				} else {
					convBF16GemmAx(g.kg, g.mg, t.nwe/2, xpb, t.aOff, bp, dwt[gi*g.kg*g.mg:], g.mg, 1)
				}
			}
			if t.dx != nil {
				// dout into the margined wide frame; margins and junk columns stay zero.
				bf16PairRows(dyp2[t.maxOff:], t.dyLen, g.wp, dyg, g.p, g.ow, g.mg, g.oh, g.ow)
				dxg := t.dx[n*g.cin*g.inPlane+gi*g.cg*g.inPlane:][:g.cg*g.inPlane]
				if t.amxBx {
					t.productAMX(gi, dyp2, t.dyLen, t.dyOff, dxg, dxw)
					continue
				}
				np := (g.mg + 1) / 2 * t.taps
				convBF16GemmBx(g.cg, t.nx, np, t.ap[gi*t.apGroup:], dyp2, t.dyOff, dxw, t.nx, 0)
				convCopyRows(dxg, g.inPlane, g.w, dxw, t.nx, g.wp, g.cg, g.h, g.w)
			}
		}
	}
}

// productAMX runs group gi's forward (out: its output, from the bias) or
// input gradient (out: its dx) on AMX tiles over the pair planes b2, into
// out directly or through the wide frame.
func (t *convBF16Task) productAMX(gi int, b2 []uint32, bplane int, toff []int32, out, wide []float32) {
	g := &t.g
	var bias16 []float32
	if t.biasLen > 0 {
		bias16 = t.bias16[gi*t.rowsA*16:][:t.rowsA*16]
	}
	c := wide
	if t.direct {
		c = out
	}
	convAMXBx(t.rowsA, t.chunkSrc, t.chunkDst, t.taps, t.c2p, t.ap[gi*t.apGroup:], b2, bplane, toff, bias16, c, t.ldc)
	switch {
	case t.direct:
	case t.backward:
		convCopyRows(out, g.inPlane, g.w, wide, t.ldc, g.wp, g.cg, g.h, g.w)
	default:
		convCopyRows(out, g.p, g.ow, wide, t.ldc, g.wp, g.mg, g.oh, g.ow) // drop the junk columns
	}
}

// sumParts adds each part's dWᵀ (transposed back) and db into the caller's,
// in part order.
func (t *convBF16Task) sumParts(np int) {
	g := &t.g
	for part := 0; part < np; part++ {
		s := t.scratch[part*t.l.size:]
		for gi := 0; gi < g.groups && t.dw != nil; gi++ {
			dwt := s[t.l.dwt+gi*g.kg*g.mg:]
			for co := 0; co < g.mg; co++ {
				dw := t.dw[(gi*g.mg+co)*g.kg : (gi*g.mg+co+1)*g.kg]
				for k := range dw {
					dw[k] += dwt[k*g.mg+co]
				}
			}
		}
		for i, v := range s[t.l.db:t.l.size] {
			t.db[i] += v
		}
	}
}
