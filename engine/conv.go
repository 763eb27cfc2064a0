package engine

import "fmt"

// Conv2D: PyTorch's nn.Conv2d on NCHW tensors with weight (Cout, Cin/groups,
// KH, KW). The CPU kernel lowers each image and group to matrix products,
//
//	out[co, p] = Σ_k W[co, k] · col[k, p]   (M = Cout/groups, N = OH·OW)
//
// where col is the im2col matrix of the input patch under each output pixel
// (rows k = (ci, kh, kw)); with a bias, col gets a last row of ones and W a
// last column holding the bias, so the product adds it. Backward recomputes
// col rather than keeping it from the forward pass, so the op holds no state:
// dw += dout·colᵀ, and dx is W ᵀ·dout scattered back through the lowering.
// Where planes are small, several images' col matrices side by side make one
// product (convBatch). Images are split across threads; each part sums its dw and db into its own
// buffer and the parts are added in order, so results are bit-identical run
// after run. There are two lowerings:
//
//   - pointwise: a 1×1, stride-1, unpadded convolution needs no col matrix,
//     the input plane stack already is one.
//   - col: classic im2col and its adjoint col2im, for everything else.
//
// Stride-1 shapes whose "wide" frame is small (convGeom.wide) go to the
// float32 C path (conv_cpu.go) where the machine has it; elsewhere (float64,
// builds without cgo or off amd64, no AVX2) they take the col lowering. A Go
// version of the wide lowering was measured against col on the zoo's shapes
// and did not pay: bench/results/*-conv-lowerings.md.

// Conv2DParams are a convolution's hyper-parameters. The zero value is
// PyTorch's default: stride 1, no padding, dilation 1, one group, so zero
// strides, dilations and groups read as 1. Padding is zeros on both sides.
type Conv2DParams struct {
	StrideH, StrideW     int // 0 means 1
	PadH, PadW           int // zero rows/columns added on each side
	DilationH, DilationW int // 0 means 1
	Groups               int // 0 means 1; must divide Cin and Cout
}

// Conv2DSquare returns params with the same stride, padding and dilation on
// both axes, e.g. Conv2DSquare(1, 2, 1, 1) for LeNet's padded 5×5 layer.
func Conv2DSquare(stride, pad, dilation, groups int) Conv2DParams {
	return Conv2DParams{StrideH: stride, StrideW: stride, PadH: pad, PadW: pad,
		DilationH: dilation, DilationW: dilation, Groups: groups}
}

func (p Conv2DParams) String() string {
	return fmt.Sprintf("{stride=(%d,%d) pad=(%d,%d) dilation=(%d,%d) groups=%d}",
		p.StrideH, p.StrideW, p.PadH, p.PadW, p.DilationH, p.DilationW, p.Groups)
}

// convGeom is everything the kernels need to know about one convolution.
type convGeom struct {
	n, cin, h, w       int // input (N, Cin, H, W)
	cout, kh, kw       int // weight (Cout, Cin/groups, KH, KW)
	oh, ow             int // output plane
	sh, sw, ph, pw     int
	dh, dw, groups     int
	cg, mg, kg, p      int // per group: input channels, output channels, col rows; pixels OH·OW
	inPlane, outPlanes int // H·W, Cout·OH·OW
	// pointwise: 1×1, stride 1, unpadded; the Go loops need no col matrix.
	pointwise bool
	// wide: a stride-1 shape whose wide frame is small, the shapes the float32
	// C path takes (conv_cpu.go; the Go loops run them through col). Output
	// pixel (oh, ow) reads the padded input at (oh + kh·dh, ow + kw·dw), so
	// numbering output columns q = oh·Wp + ow over the padded width Wp makes
	// each tap's inputs one contiguous run of the padded plane,
	// Nw = (OH−1)·Wp + OW long; the columns with ow ≥ OW are junk. Set when
	// the junk is at most as large as the real output (Nw ≤ 2·OH·OW); the
	// fields below are set only then.
	wide       bool
	padded     bool // with padding: x goes through a padded copy
	hp, wp, nw int  // padded plane Hp×Wp, frame length Nw
	// prec is the weight's (Tensor.SetPrecision): in bf16 the wide and 1×1
	// shapes take conv_bf16.go's kernels, the others the col matrix and
	// sgemmBF16.
	prec Precision
}

func orOne(v int) int {
	if v == 0 {
		return 1
	}
	return v
}

// convGeometry checks x (N,Cin,H,W), w (Cout,Cin/g,KH,KW) and p, and returns
// the geometry or a message saying what is wrong.
func convGeometry(x, w []int, p Conv2DParams) (convGeom, string) {
	var g convGeom
	if len(x) != 4 || len(w) != 4 {
		return g, "want x (N,Cin,H,W) and w (Cout,Cin/groups,KH,KW)"
	}
	g.sh, g.sw = orOne(p.StrideH), orOne(p.StrideW)
	g.dh, g.dw = orOne(p.DilationH), orOne(p.DilationW)
	g.groups = orOne(p.Groups)
	g.ph, g.pw = p.PadH, p.PadW
	if g.sh < 0 || g.sw < 0 || g.dh < 0 || g.dw < 0 || g.groups < 0 || g.ph < 0 || g.pw < 0 {
		return g, "negative stride, padding, dilation or groups"
	}
	for i := range 4 {
		if x[i] < 0 || w[i] < 0 {
			return g, "negative dimension"
		}
	}
	g.n, g.cin, g.h, g.w = x[0], x[1], x[2], x[3]
	g.cout, g.kh, g.kw = w[0], w[2], w[3]
	if g.cin%g.groups != 0 || g.cout%g.groups != 0 {
		return g, fmt.Sprintf("groups %d must divide Cin %d and Cout %d", g.groups, g.cin, g.cout)
	}
	g.cg, g.mg = g.cin/g.groups, g.cout/g.groups
	if w[1] != g.cg {
		return g, fmt.Sprintf("w has %d input channels per group, want Cin/groups = %d/%d = %d",
			w[1], g.cin, g.groups, g.cg)
	}
	if g.kh < 1 || g.kw < 1 || g.cg < 1 || g.mg < 1 {
		return g, "empty kernel or channel axis"
	}
	effH, effW := g.dh*(g.kh-1)+1, g.dw*(g.kw-1)+1
	if g.h+2*g.ph < effH || g.w+2*g.pw < effW {
		return g, fmt.Sprintf("kernel extent %d×%d (with dilation) exceeds padded input %d×%d",
			effH, effW, g.h+2*g.ph, g.w+2*g.pw)
	}
	g.oh = (g.h+2*g.ph-effH)/g.sh + 1
	g.ow = (g.w+2*g.pw-effW)/g.sw + 1
	g.kg = g.cg * g.kh * g.kw
	g.p = g.oh * g.ow
	g.inPlane, g.outPlanes = g.h*g.w, g.cout*g.p
	switch {
	case g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0:
		g.pointwise = true
	case g.sh == 1 && g.sw == 1 && (g.oh-1)*(g.w+2*g.pw)+g.ow <= 2*g.p:
		g.wide = true
		g.padded = g.ph > 0 || g.pw > 0
		g.hp, g.wp = g.h+2*g.ph, g.w+2*g.pw
		g.nw = (g.oh-1)*g.wp + g.ow
	}
	return g, ""
}

// Conv2DOutputShape is the shape (N, Cout, OH, OW) of Conv2DForward's output
// for input shape x (N,Cin,H,W) and weight shape w (Cout,Cin/groups,KH,KW),
// with OH = ⌊(H + 2·PadH − DilationH·(KH−1) − 1) / StrideH⌋ + 1 (floor mode).
func Conv2DOutputShape(x, w []int, p Conv2DParams) ([]int, error) {
	g, msg := convGeometry(x, w, p)
	if msg != "" {
		return nil, shapeErr("Conv2DOutputShape", msg, "x", x, "w", w, "params", p)
	}
	return []int{g.n, g.cout, g.oh, g.ow}, nil
}

// Conv2DForward computes out = conv2d(x, w) + b, cross-correlation as in
// PyTorch.
//
//	out: (N, Cout, OH, OW)  x: (N, Cin, H, W)  w: (Cout, Cin/groups, KH, KW)  b: (Cout) or nil
func Conv2DForward(out, x, w, b *Tensor, p Conv2DParams) error {
	const op = "Conv2DForward"
	if out == nil || x == nil || w == nil {
		return shapeErr(op, "out, x and w are required", "out", out, "x", x, "w", w, "b", b)
	}
	dev, dt, err := agreeDev(op, out, x, w, b)
	if err != nil {
		return err
	}
	g, msg := convGeometry(x.shape, w.shape, p)
	if msg == "" && !out.SameShape(g.n, g.cout, g.oh, g.ow) {
		msg = fmt.Sprintf("want out (N,Cout,OH,OW) = %v", []int{g.n, g.cout, g.oh, g.ow})
	}
	if msg == "" && b != nil && !b.SameShape(g.cout) {
		msg = "want b (Cout)"
	}
	if msg != "" {
		return shapeErr(op, msg, "out", out, "x", x, "w", w, "b", b, "params", p)
	}
	if g.prec, err = checkPrecision(op, w); err != nil {
		return err
	}
	if dev == CUDA {
		return conv2DForwardCUDA(&g, p, out, x, w, b)
	}
	pick(dt, conv2D[float32], conv2D[float64])(g, false, out, x, w, b, nil, nil, nil)
	return nil
}

// Conv2DBackward computes dx (overwritten), dw += ∂L/∂w and db += ∂L/∂b from
// dout = ∂L/∂out. Any of dx, dw, db may be nil.
//
//	dx: (N, Cin, H, W)  dw: (Cout, Cin/groups, KH, KW)  db: (Cout)
//	dout: (N, Cout, OH, OW)  x: (N, Cin, H, W)  w: (Cout, Cin/groups, KH, KW)
func Conv2DBackward(dx, dw, db, dout, x, w *Tensor, p Conv2DParams) error {
	const op = "Conv2DBackward"
	if dout == nil || x == nil || w == nil {
		return shapeErr(op, "dout, x and w are required",
			"dx", dx, "dw", dw, "db", db, "dout", dout, "x", x, "w", w)
	}
	dev, dt, err := agreeDev(op, dx, dw, db, dout, x, w)
	if err != nil {
		return err
	}
	g, msg := convGeometry(x.shape, w.shape, p)
	switch {
	case msg != "":
	case !dout.SameShape(g.n, g.cout, g.oh, g.ow):
		msg = fmt.Sprintf("want dout (N,Cout,OH,OW) = %v", []int{g.n, g.cout, g.oh, g.ow})
	case dx != nil && !dx.SameShape(x.shape...):
		msg = "want dx shaped like x"
	case dw != nil && !dw.SameShape(w.shape...):
		msg = "want dw shaped like w"
	case db != nil && !db.SameShape(g.cout):
		msg = "want db (Cout)"
	}
	if msg != "" {
		return shapeErr(op, msg, "dx", dx, "dw", dw, "db", db, "dout", dout, "x", x, "w", w, "params", p)
	}
	if dx == nil && dw == nil && db == nil {
		return nil
	}
	if g.prec, err = checkPrecision(op, w); err != nil {
		return err
	}
	if dev == CUDA {
		return conv2DBackwardCUDA(&g, p, dx, dw, db, dout, x, w)
	}
	pick(dt, conv2D[float32], conv2D[float64])(g, true, dout, x, w, nil, dx, dw, db)
	return nil
}

// convTask runs forward or backward over a range of images. Each part has its
// own slice of scratch (the convLayout); in backward it includes partial dw
// and db that the caller sums in part order, so results never depend on
// timing.
type convTask[T Float] struct {
	g        convGeom
	l        convLayout
	backward bool
	// inPart: the images are split over several parts, so each part's
	// products run on its own thread (gemmIn) rather than splitting again
	// into the C pool's threads, which would oversubscribe the cores.
	inPart     bool
	y, x, w, b []T // y is out in forward, dout in backward
	dx, dw, db []T
	scratch    []T
	// wx is w with the bias appended to each row when biasRow is set, shared
	// by all parts.
	wx []T
	// biasRow: forward through a col matrix with a bias. The col matrix gets
	// a last row of ones and wx is (Cout, kg+1) with the bias last, so the
	// product adds the bias itself instead of a pass over out.
	biasRow bool
	// nb: the images one product takes (convBatch); 1 is a product per image.
	nb int
}

// A col-lowered product per image is M = Cout by N = OH·OW columns. Where
// the plane is small (ResNet-18's last stages: 7×7 outputs against 512
// channels and K = 4608), such a product packs the weights again for every
// image and runs mostly ragged column tiles: 49 columns are one 32-wide tile,
// one of 16 and one of 1. convBatch lays nb images' col matrices side by
// side instead, one product of about convBatchCols columns for all of them
// (1024 ran layer4's backward 5% faster than 512; Zen 4), at the cost of
// copying out's planes out of the product (and dout's into it), one copy
// per K multiply-adds. Planes of 196 outputs (layer3's 14×14) ran no faster
// batched.
const (
	convBatchCols      = 1024
	convBatchColFloats = 4 << 20 // 16 MB of col matrix a part at most
	convBatchMaxPlane  = 128
)

// convBatch is the images a col-lowered float32 product takes at once. The
// float64 reference, bf16 and grouped convolutions keep a product per image,
// and so do short reductions: gMLP's patches (K = 48) ran 5% slower batched
// forward, and layer4's 1×1 shortcut (K = 256) 9% slower backward. So do
// builds without the C GEMM: what batching saves is its packing and ragged
// tiles, and the portable GEMM was not measured batched.
func convBatch[T Float](g *convGeom, backward bool) int {
	minK := 128
	if backward {
		minK = 512
	}
	if !sgemmInC || isFloat64[T]() || g.prec != FP32 || g.groups != 1 || g.p > convBatchMaxPlane || g.kg < minK {
		return 1
	}
	return max(1, min(ceilDiv(convBatchCols, g.p), convBatchColFloats/((g.kg+1)*g.p)))
}

// convLayout places one part's scratch buffers; each field is an offset, the
// next one's offset its end.
type convLayout struct {
	col  int // im2col matrix, kg (+1 with biasRow) × nb·P; dcol too
	yb   int // nb > 1: out (forward) or dout (backward) as Cout × nb·P
	dw   int // partial dw
	db   int // partial db
	size int
}

func newConvLayout(g *convGeom, backward, biasRow, hasDx bool, dw, db, nb int) convLayout {
	var l convLayout
	col, yb := 0, 0
	rows := g.kg
	if biasRow {
		rows++
	}
	if (!g.pointwise || nb > 1) && (!backward || dw > 0 || hasDx) {
		col = rows * nb * g.p
	}
	if nb > 1 {
		yb = g.mg * nb * g.p
	}
	l.yb = l.col + col
	l.dw = l.yb + yb
	l.db = l.dw + dw
	l.size = l.db + db
	return l
}

var convTasks = [2]taskPool{
	{New: func() any { return new(convTask[float32]) }},
	{New: func() any { return new(convTask[float64]) }},
}

// conv2D is the CPU body of Conv2DForward (yT is out; dx, dw, db nil) and of
// Conv2DBackward (yT is dout; b nil). g comes by value: its address through
// pick would move it to the heap (dispatch.go).
func conv2D[T Float](g convGeom, backward bool, yT, xT, wT, bT, dxT, dwT, dbT *Tensor) {
	y, x, w, b := dataAs[T](yT), dataAs[T](xT), dataAs[T](wT), dataAs[T](bT)
	dx, dw, db := dataAs[T](dxT), dataAs[T](dwT), dataAs[T](dbT)
	conv2DOn(g, backward, y, x, w, b, dx, dw, db)
}

// conv2DOn is conv2D on the tensors' data.
func conv2DOn[T Float](g convGeom, backward bool, y, x, w, b, dx, dw, db []T) {
	if g.prec == BF16 && convBF16Rounds(&g, backward, dx != nil, dw != nil) {
		conv2DRoundedBF16(g, backward, asF32(y), asF32(x), asF32(w), asF32(b), asF32(dx), asF32(dw), asF32(db))
		return
	}
	if g.prec == FP32 && conv2DFast(&g, backward, y, x, w, b, dx, dw, db) {
		return
	}
	if g.prec == BF16 && conv2DBF16(&g, backward, asF32(y), asF32(x), asF32(w), asF32(b), asF32(dx), asF32(dw), asF32(db)) {
		return
	}
	pool := &convTasks[dtypeIndex[T]()]
	t := pool.Get().(*convTask[T])
	t.g, t.backward = g, backward
	t.y, t.x, t.w, t.b, t.dx, t.dw, t.db = y, x, w, b, dx, dw, db
	t.nb = convBatch[T](&g, backward)
	t.biasRow = !backward && b != nil && (!g.pointwise || t.nb > 1) && g.prec == FP32 // bf16 would round the bias
	t.l = newConvLayout(&g, backward, t.biasRow, dx != nil, len(dw), len(db), t.nb)
	np := parts(g.n)
	t.inPart = np > 1
	wxLen := 0
	if t.biasRow {
		wxLen = len(w) + len(b)
	}
	switch {
	case t.nb > 1: // float32; the col and product buffers are written before they are read
		t.scratch = takeScratchOf[T](np*t.l.size+wxLen, false)
		for part := range np {
			clear(t.scratch[part*t.l.size+t.l.dw : (part+1)*t.l.size])
		}
	case t.l.size+wxLen > 0:
		t.scratch = takeScratch[T](np*t.l.size + wxLen) // zeroed: the partial dw and db start so
	}
	if t.biasRow {
		t.wx = t.scratch[np*t.l.size:]
		for co, bv := range b {
			copy(t.wx[co*(g.kg+1):], w[co*g.kg:(co+1)*g.kg])
			t.wx[co*(g.kg+1)+g.kg] = bv
		}
	}
	parallelFor(g.n, t)
	if backward {
		for part := 0; part < np; part++ {
			s := t.scratch[part*t.l.size:]
			for i, v := range s[t.l.dw : t.l.dw+len(dw)] {
				dw[i] += v
			}
			for i, v := range s[t.l.db : t.l.db+len(db)] {
				db[i] += v
			}
		}
	}
	if t.l.size+wxLen > 0 {
		giveScratch(t.scratch)
	}
	*t = convTask[T]{}
	pool.Put(t)
}

func (t *convTask[T]) run(part, lo, hi int) {
	var s []T
	if t.l.size > 0 {
		s = t.scratch[part*t.l.size : (part+1)*t.l.size]
	}
	if t.biasRow && t.nb == 1 {
		ones := s[t.l.col:t.l.yb]
		ones = ones[len(ones)-len(ones)/(t.g.kg+1):]
		for i := range ones {
			ones[i] = 1
		}
	}
	switch {
	case t.nb > 1 && t.backward:
		t.backwardBatched(s, lo, hi)
	case t.nb > 1:
		t.forwardBatched(s, lo, hi)
	case t.backward:
		t.backwardImages(s, lo, hi)
	default:
		t.forwardImages(s, lo, hi)
	}
}

// batchCol writes the col matrices of images n0 … n0+nb-1 side by side, rows
// nb·P long, and returns that matrix; with biasRow, a last row of ones.
func (t *convTask[T]) batchCol(s []T, n0, nb int) []T {
	g := &t.g
	ld, inImage := nb*g.p, g.cin*g.inPlane
	col := s[t.l.col:t.l.yb]
	for j := range nb {
		im2col(col[j*g.p:], ld, t.x[(n0+j)*inImage:(n0+j+1)*inImage], g)
	}
	if t.biasRow {
		fillDoubling(col[g.kg*ld:(g.kg+1)*ld], 1)
	}
	return col
}

// forwardBatched is forwardImages nb images a product (convBatch): out's
// planes come from one Cout × nb·P product.
func (t *convTask[T]) forwardBatched(s []T, lo, hi int) {
	g := &t.g
	w, k := t.w, g.kg
	if t.biasRow {
		w, k = t.wx, g.kg+1
	}
	yb := s[t.l.yb:t.l.dw]
	for n0 := lo; n0 < hi; n0 += t.nb {
		nb := min(t.nb, hi-n0)
		ld := nb * g.p
		col := t.batchCol(s, n0, nb)
		gemmAt(g.prec, t.inPart, false, false, g.mg, ld, k, 1, w, k, col, ld, 0, yb, ld)
		convCopyRows(asF32(t.y[n0*g.outPlanes:]), g.outPlanes, g.p, asF32(yb), g.p, ld, nb, g.mg, g.p)
	}
}

// backwardBatched is backwardImages nb images a product: dw accumulates one
// product over nb·P columns, and dcol for nb images comes from one product.
func (t *convTask[T]) backwardBatched(s []T, lo, hi int) {
	g := &t.g
	yb := s[t.l.yb:t.l.dw]
	inImage := g.cin * g.inPlane
	for n0 := lo; n0 < hi; n0 += t.nb {
		nb := min(t.nb, hi-n0)
		ld := nb * g.p
		if t.db != nil {
			dbp := s[t.l.db:t.l.size]
			for n := n0; n < n0+nb; n++ {
				dyn := t.y[n*g.outPlanes : (n+1)*g.outPlanes]
				for co := range dbp {
					dbp[co] += sumSlice(dyn[co*g.p : (co+1)*g.p])
				}
			}
		}
		if t.dw == nil && t.dx == nil {
			continue
		}
		convCopyRows(asF32(yb), g.p, ld, asF32(t.y[n0*g.outPlanes:]), g.outPlanes, g.p, nb, g.mg, g.p)
		if t.dw != nil {
			// dw[co, k] += Σ_(image, p) dout[co, p] · col[k, p]
			col := t.batchCol(s, n0, nb)
			gemmAt(g.prec, t.inPart, false, true, g.mg, g.kg, ld, 1, yb, ld, col, ld, 1, s[t.l.dw:t.l.db], g.kg)
		}
		if t.dx == nil {
			continue
		}
		col := s[t.l.col:t.l.yb]
		gemmAt(g.prec, t.inPart, true, false, g.kg, ld, g.mg, 1, t.w, g.kg, yb, ld, 0, col, ld)
		for j := range nb {
			dxn := t.dx[(n0+j)*inImage : (n0+j+1)*inImage]
			clear(dxn) // the scatter accumulates into it
			col2im(dxn, col[j*g.p:], ld, g)
		}
	}
}

// source returns the col matrix (or the input itself) for image group xg.
func (t *convTask[T]) source(s, xg []T) []T {
	if t.g.pointwise {
		return xg
	}
	col := s[t.l.col:t.l.yb]
	im2col(col, t.g.p, xg, &t.g)
	return col
}

func (t *convTask[T]) forwardImages(s []T, lo, hi int) {
	g := &t.g
	inImage, outGroup := g.cin*g.inPlane, g.mg*g.p
	w, k := t.w, g.kg
	if t.biasRow {
		w, k = t.wx, g.kg+1
	}
	for n := lo; n < hi; n++ {
		xn := t.x[n*inImage : (n+1)*inImage]
		yn := t.y[n*g.outPlanes : (n+1)*g.outPlanes]
		var beta T
		if t.b != nil && !t.biasRow {
			// Start from the bias and let the product accumulate onto it.
			for co, bv := range t.b {
				fillDoubling(yn[co*g.p:(co+1)*g.p], bv)
			}
			beta = 1
		}
		for gi := 0; gi < g.groups; gi++ {
			src := t.source(s, xn[gi*g.cg*g.inPlane:(gi+1)*g.cg*g.inPlane])
			wg := w[gi*g.mg*k : (gi+1)*g.mg*k]
			yg := yn[gi*outGroup : (gi+1)*outGroup]
			gemmAt(t.g.prec, t.inPart, false, false, g.mg, g.p, k, 1, wg, k, src, g.p, beta, yg, g.p)
		}
	}
}

// fillDoubling sets every element of s to v by doubling copies, which run
// as vectorised memmoves where the plain loop stores one element at a time.
func fillDoubling[T Float](s []T, v T) {
	if len(s) == 0 {
		return
	}
	s[0] = v
	for n := 1; n < len(s); n *= 2 {
		copy(s[n:], s[:n])
	}
}

func (t *convTask[T]) backwardImages(s []T, lo, hi int) {
	g := &t.g
	var dwp, dbp []T
	if t.dw != nil {
		dwp = s[t.l.dw:t.l.db]
	}
	if t.db != nil {
		dbp = s[t.l.db:t.l.size]
	}
	inImage, wGroup, outGroup := g.cin*g.inPlane, g.mg*g.kg, g.mg*g.p
	for n := lo; n < hi; n++ {
		dyn := t.y[n*g.outPlanes : (n+1)*g.outPlanes]
		xn := t.x[n*inImage : (n+1)*inImage]
		if dbp != nil {
			for co := range dbp {
				dbp[co] += sumSlice(dyn[co*g.p : (co+1)*g.p])
			}
		}
		if t.dw == nil && t.dx == nil {
			continue
		}
		var dxn []T
		if t.dx != nil {
			dxn = t.dx[n*inImage : (n+1)*inImage]
			if !g.pointwise {
				clear(dxn) // the scatter accumulates into it
			}
		}
		for gi := 0; gi < g.groups; gi++ {
			dyg := dyn[gi*outGroup : (gi+1)*outGroup]
			wg := t.w[gi*wGroup : (gi+1)*wGroup]
			if dwp != nil {
				// dw[co, k] += Σ_p dout[co, p] · col[k, p]
				src := t.source(s, xn[gi*g.cg*g.inPlane:(gi+1)*g.cg*g.inPlane])
				gemmAt(t.g.prec, t.inPart, false, true, g.mg, g.kg, g.p, 1, dyg, g.p, src, g.p, 1,
					dwp[gi*wGroup:(gi+1)*wGroup], g.kg)
			}
			if dxn == nil {
				continue
			}
			dxg := dxn[gi*g.cg*g.inPlane : (gi+1)*g.cg*g.inPlane]
			if g.pointwise {
				gemmAt(t.g.prec, t.inPart, true, false, g.kg, g.p, g.mg, 1, wg, g.kg, dyg, g.p, 0, dxg, g.p)
				continue
			}
			// dcol[k, p] = Σ_co W[co, k] · dout[co, p], then scattered back.
			col := s[t.l.col:t.l.yb]
			gemmAt(t.g.prec, t.inPart, true, false, g.kg, g.p, g.mg, 1, wg, g.kg, dyg, g.p, 0, col, g.p)
			col2im(dxg, col, g.p, g)
		}
	}
}

// validOut is the range [lo, hi) of output columns o whose input column
// o·stride + off lies in [0, n).
func validOut(off, stride, n, outN int) (lo, hi int) {
	if off < 0 {
		lo = (-off + stride - 1) / stride
	}
	if n-1-off >= 0 {
		hi = min((n-1-off)/stride+1, outN)
	}
	return min(lo, hi), hi
}

// im2col writes col (Cg·KH·KW rows ld floats apart, OH·OW) from one image
// group x (Cg, H, W): in float32 with conv_col_cpu.c's loops where built
// (the same bits).
func im2col[T Float](col []T, ld int, x []T, g *convGeom) {
	if haveColC && !isFloat64[T]() {
		im2colC(asF32(col), ld, asF32(x), g)
		return
	}
	im2colGo(col, ld, x, g)
}

func im2colGo[T Float](col []T, ld int, x []T, g *convGeom) {
	r := 0
	for c := 0; c < g.cg; c++ {
		xc := x[c*g.inPlane : (c+1)*g.inPlane]
		for ki := 0; ki < g.kh; ki++ {
			for kj := 0; kj < g.kw; kj++ {
				dst := col[r*ld : r*ld+g.p]
				r++
				off := kj*g.dw - g.pw
				lo, hi := validOut(off, g.sw, g.w, g.ow)
				ih := ki*g.dh - g.ph
				for oh := 0; oh < g.oh; oh, ih = oh+1, ih+g.sh {
					d := dst[oh*g.ow : (oh+1)*g.ow]
					if ih < 0 || ih >= g.h {
						clear(d)
						continue
					}
					src := xc[ih*g.w : (ih+1)*g.w]
					clear(d[:lo])
					clear(d[hi:])
					if g.sw == 1 {
						copy(d[lo:hi], src[lo+off:hi+off])
					} else {
						for ow := lo; ow < hi; ow++ {
							d[ow] = src[ow*g.sw+off]
						}
					}
				}
			}
		}
	}
}

// col2im adds col (Cg·KH·KW rows ld floats apart, OH·OW) back into the
// image group dx (Cg, H, W), the adjoint of im2col; in float32 in C where
// built, as im2col.
func col2im[T Float](dx, col []T, ld int, g *convGeom) {
	if haveColC && !isFloat64[T]() {
		col2imC(asF32(dx), asF32(col), ld, g)
		return
	}
	col2imGo(dx, col, ld, g)
}

func col2imGo[T Float](dx, col []T, ld int, g *convGeom) {
	r := 0
	for c := 0; c < g.cg; c++ {
		dc := dx[c*g.inPlane : (c+1)*g.inPlane]
		for ki := 0; ki < g.kh; ki++ {
			for kj := 0; kj < g.kw; kj++ {
				src := col[r*ld : r*ld+g.p]
				r++
				off := kj*g.dw - g.pw
				lo, hi := validOut(off, g.sw, g.w, g.ow)
				ih := ki*g.dh - g.ph
				for oh := 0; oh < g.oh; oh, ih = oh+1, ih+g.sh {
					if ih < 0 || ih >= g.h || lo >= hi {
						continue
					}
					s := src[oh*g.ow : (oh+1)*g.ow]
					d := dc[ih*g.w : (ih+1)*g.w]
					if g.sw == 1 {
						d = d[lo+off : hi+off]
						for i, v := range s[lo:hi] {
							d[i] += v
						}
					} else {
						for ow := lo; ow < hi; ow++ {
							d[ow*g.sw+off] += s[ow]
						}
					}
				}
			}
		}
	}
}

// sumBlock is the most addends sumLong gives one float32 chain of sumSlice.
const sumBlock = 4096

// sumLong is sumSlice for a plane of any size: blocks of sumBlock, the
// blocks' sums added in float64. One float32 chain over a 4096² plane (an
// --image-size 4096 global average) lost 1%, each addend falling below the
// running sum's last bits; a plane of one block sums as sumSlice does.
func sumLong[T Float](s []T) T {
	if len(s) <= sumBlock {
		return sumSlice(s)
	}
	var total float64
	for len(s) > 0 {
		n := min(len(s), sumBlock)
		total += float64(sumSlice(s[:n]))
		s = s[n:]
	}
	return T(total)
}

// sumSlice adds s up in four interleaved chains (a fixed order, so still
// deterministic): one chain would wait on the adder's latency at every step.
func sumSlice[T Float](s []T) T {
	var a0, a1, a2, a3 T
	for len(s) >= 4 {
		a0 += s[0]
		a1 += s[1]
		a2 += s[2]
		a3 += s[3]
		s = s[4:]
	}
	for _, v := range s {
		a0 += v
	}
	return (a0 + a1) + (a2 + a3)
}
