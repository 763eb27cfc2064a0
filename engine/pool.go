package engine

import (
	"fmt"
	"math"
	"sync/atomic"
	"unsafe"
)

// Pooling: PyTorch's MaxPool2d, AvgPool2d and AdaptiveAvgPool2d(1) on NCHW
// tensors, floor mode (ceil_mode=False). Every (image, channel) plane is
// independent, so the work is split over planes and needs no reduction
// across parts.

// Pool2DParams are a pooling window's size, stride and padding. A zero stride
// means stride = kernel, as in PyTorch. Padding may be at most half the
// kernel (PyTorch's rule), so every window holds at least one input element.
type Pool2DParams struct {
	KernelH, KernelW int
	StrideH, StrideW int // 0 means the kernel size
	PadH, PadW       int // added on each side: -inf for max, zeros for average
}

// Pool2DSquare returns a square window; stride 0 means stride = kernel.
func Pool2DSquare(kernel, stride, pad int) Pool2DParams {
	return Pool2DParams{KernelH: kernel, KernelW: kernel, StrideH: stride, StrideW: stride, PadH: pad, PadW: pad}
}

func (p Pool2DParams) String() string {
	return fmt.Sprintf("{kernel=(%d,%d) stride=(%d,%d) pad=(%d,%d)}",
		p.KernelH, p.KernelW, p.StrideH, p.StrideW, p.PadH, p.PadW)
}

type poolGeom struct {
	planes, h, w, oh, ow int // planes = N·C
	kh, kw, sh, sw       int
	ph, pw               int
	pairs                bool // 2×2 windows, stride 2, no padding: the common case, with its own loops
}

// poolGeometry checks x (N,C,H,W) against p and returns the geometry or a
// message saying what is wrong.
func poolGeometry(x []int, p Pool2DParams) (poolGeom, string) {
	var g poolGeom
	if len(x) != 4 {
		return g, "want x (N,C,H,W)"
	}
	g.kh, g.kw, g.ph, g.pw = p.KernelH, p.KernelW, p.PadH, p.PadW
	g.sh, g.sw = p.StrideH, p.StrideW
	if g.sh == 0 {
		g.sh = g.kh
	}
	if g.sw == 0 {
		g.sw = g.kw
	}
	if g.kh < 1 || g.kw < 1 || g.sh < 1 || g.sw < 1 || g.ph < 0 || g.pw < 0 {
		return g, "kernel and stride must be positive, padding non-negative"
	}
	if 2*g.ph > g.kh || 2*g.pw > g.kw {
		return g, "padding must be at most half the kernel"
	}
	g.planes, g.h, g.w = x[0]*x[1], x[2], x[3]
	if g.h+2*g.ph < g.kh || g.w+2*g.pw < g.kw {
		return g, fmt.Sprintf("kernel %d×%d exceeds padded input %d×%d", g.kh, g.kw, g.h+2*g.ph, g.w+2*g.pw)
	}
	g.oh = (g.h+2*g.ph-g.kh)/g.sh + 1
	g.ow = (g.w+2*g.pw-g.kw)/g.sw + 1
	g.pairs = g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0
	return g, ""
}

// Pool2DOutputShape is the shape (N, C, OH, OW) of a pooling output for input
// shape x (N,C,H,W), with OH = ⌊(H + 2·PadH − KernelH) / StrideH⌋ + 1.
func Pool2DOutputShape(x []int, p Pool2DParams) ([]int, error) {
	g, msg := poolGeometry(x, p)
	if msg != "" {
		return nil, shapeErr("Pool2DOutputShape", msg, "x", x, "params", p)
	}
	return []int{x[0], x[1], g.oh, g.ow}, nil
}

// poolCheck validates in (N,C,H,W) and outT (N,C,OH,OW) for op.
func poolCheck(op string, p Pool2DParams, outName string, outT *Tensor, inName string, in *Tensor) (poolGeom, DType, error) {
	if outT == nil || in == nil {
		return poolGeom{}, 0, shapeErr(op, outName+" and "+inName+" are required", outName, outT, inName, in, "params", p)
	}
	_, dt, err := agreeDev(op, outT, in)
	if err != nil {
		return poolGeom{}, dt, err
	}
	g, msg := poolGeometry(in.shape, p)
	if msg == "" && !outT.SameShape(in.Dim(0), in.Dim(1), g.oh, g.ow) {
		msg = fmt.Sprintf("want %s (N,C,OH,OW) = %v", outName, []int{in.Dim(0), in.Dim(1), g.oh, g.ow})
	}
	if msg != "" {
		return g, dt, shapeErr(op, msg, outName, outT, inName, in, "params", p)
	}
	return g, dt, nil
}

// MaxPool2DForward computes out = max over each window. When argmax is not
// nil it receives, for each output element, the index h·W + w of the winning
// input within its (H, W) plane; MaxPool2DBackward needs it. The first
// maximum wins ties and NaN propagates, as in PyTorch. On CUDA the indices
// stay on the GPU, attached to the slice (see ArgmaxToHost).
//
//	out: (N, C, OH, OW)  argmax: N·C·OH·OW int32s or nil  x: (N, C, H, W)
func MaxPool2DForward(out *Tensor, argmax []int32, x *Tensor, p Pool2DParams) error {
	return maxPoolForward("MaxPool2DForward", false, out, argmax, x, p)
}

// MaxPool2DReLUForward is ReLU then MaxPool2DForward in one pass over x:
// ReLU and max commute, so out = max(0, max over each window) is what the two
// ops give, and x itself is never rectified. A window whose largest value is
// 0 or less gives +0 (the two ops give −0 when the window's first input is
// −0); NaN propagates. argmax is required: MaxPool2DReLUBackward reads it
// with out.
//
//	out: (N, C, OH, OW)  argmax: N·C·OH·OW int32s  x: (N, C, H, W)
func MaxPool2DReLUForward(out *Tensor, argmax []int32, x *Tensor, p Pool2DParams) error {
	return maxPoolForward("MaxPool2DReLUForward", true, out, argmax, x, p)
}

// maxPoolForward is MaxPool2DForward, and with relu MaxPool2DReLUForward
// (argmax required).
func maxPoolForward(op string, relu bool, out *Tensor, argmax []int32, x *Tensor, p Pool2DParams) error {
	g, dt, err := poolCheck(op, p, "out", out, "x", x)
	if err != nil {
		return err
	}
	if (argmax != nil || relu) && len(argmax) != out.Len() {
		return shapeErr(op, fmt.Sprintf("argmax has %d entries, want %d", len(argmax), out.Len()), "out", out, "x", x)
	}
	kind := poolMaxForward
	switch {
	case x.device == CUDA:
		return maxPool2DForwardCUDA(op, relu, out, argmax, x, p, &g)
	case relu:
		kind = poolMaxReLUForward
	}
	pick(dt, runPool[float32], runPool[float64])(g, kind, out, x, nil, argmax)
	return nil
}

// MaxPool2DBackward computes dx (overwritten): each dout element goes to the
// input its window picked in the forward pass, as recorded in argmax.
//
//	dx: (N, C, H, W)  dout: (N, C, OH, OW)  argmax: from MaxPool2DForward
func MaxPool2DBackward(dx, dout *Tensor, argmax []int32, p Pool2DParams) error {
	return maxPoolBackward("MaxPool2DBackward", dx, dout, nil, argmax, p)
}

// MaxPool2DReLUBackward is the backward of MaxPool2DReLUForward, given its
// out and argmax: each dout element goes to the input its window picked
// where out > 0, as ReLU's backward then the pool's would send it. dx is
// overwritten.
//
//	dx: (N, C, H, W)  dout, out: (N, C, OH, OW)  argmax: from MaxPool2DReLUForward
func MaxPool2DReLUBackward(dx, dout, out *Tensor, argmax []int32, p Pool2DParams) error {
	if out == nil {
		return shapeErr("MaxPool2DReLUBackward", "out must be the forward's output, like dout", "dout", dout, "out", out)
	}
	return maxPoolBackward("MaxPool2DReLUBackward", dx, dout, out, argmax, p)
}

// maxPoolBackward is MaxPool2DBackward, and given keep (the fused forward's
// out) MaxPool2DReLUBackward.
func maxPoolBackward(op string, dx, dout, keep *Tensor, argmax []int32, p Pool2DParams) error {
	g, dt, err := poolCheck(op, p, "dout", dout, "dx", dx)
	if err != nil {
		return err
	}
	if keep != nil && (!sameShape(keep.shape, dout.shape) || keep.dtype != dt || keep.device != dout.device) {
		return shapeErr(op, "out must be the forward's output, like dout", "dout", dout, "out", keep)
	}
	if len(argmax) != dout.Len() {
		return shapeErr(op, fmt.Sprintf("argmax has %d entries, want %d", len(argmax), dout.Len()), "dx", dx, "dout", dout)
	}
	if dx.device == CUDA {
		return maxPool2DBackwardCUDA(op, dx, dout, keep, argmax, p, &g)
	}
	if pick(dt, runPool[float32], runPool[float64])(g, poolMaxBackward, dx, dout, keep, argmax) {
		return shapeErr(op, "argmax holds an index outside the input plane", "dx", dx, "dout", dout)
	}
	return nil
}

// AvgPool2DForward computes out = mean over each window, counting padding
// zeros in the divisor (PyTorch's count_include_pad=True): in floor mode
// every window divides by KernelH·KernelW.
//
//	out: (N, C, OH, OW)  x: (N, C, H, W)
func AvgPool2DForward(out, x *Tensor, p Pool2DParams) error {
	const op = "AvgPool2DForward"
	g, dt, err := poolCheck(op, p, "out", out, "x", x)
	if err != nil {
		return err
	}
	if x.device == CUDA {
		return avgPool2DForwardCUDA(out, x, p, &g)
	}
	pick(dt, runPool[float32], runPool[float64])(g, poolAvgForward, out, x, nil, nil)
	return nil
}

// AvgPool2DBackward computes dx (overwritten): each dout element is spread
// evenly, dout/(KernelH·KernelW), over the inputs of its window.
//
//	dx: (N, C, H, W)  dout: (N, C, OH, OW)
func AvgPool2DBackward(dx, dout *Tensor, p Pool2DParams) error {
	const op = "AvgPool2DBackward"
	g, dt, err := poolCheck(op, p, "dout", dout, "dx", dx)
	if err != nil {
		return err
	}
	if dx.device == CUDA {
		return avgPool2DBackwardCUDA(dx, dout, p, &g)
	}
	pick(dt, runPool[float32], runPool[float64])(g, poolAvgBackward, dx, dout, nil, nil)
	return nil
}

// globalCheck validates x (N,C,H,W) and out (N,C) or (N,C,1,1).
func globalCheck(op, outName string, outT *Tensor, inName string, in *Tensor) (poolGeom, DType, error) {
	if outT == nil || in == nil {
		return poolGeom{}, 0, shapeErr(op, outName+" and "+inName+" are required", outName, outT, inName, in)
	}
	_, dt, err := agreeDev(op, outT, in)
	if err != nil {
		return poolGeom{}, dt, err
	}
	if in.Rank() != 4 || in.Dim(2) < 1 || in.Dim(3) < 1 || !(outT.SameShape(in.Dim(0), in.Dim(1)) || outT.SameShape(in.Dim(0), in.Dim(1), 1, 1)) {
		return poolGeom{}, dt, shapeErr(op, fmt.Sprintf("want %s (N,C,H,W) and %s (N,C) or (N,C,1,1)", inName, outName),
			outName, outT, inName, in)
	}
	g := poolGeom{planes: in.Dim(0) * in.Dim(1), h: in.Dim(2), w: in.Dim(3), oh: 1, ow: 1}
	return g, dt, nil
}

// GlobalAvgPoolForward computes out = mean of each (H, W) plane.
//
//	out: (N, C) or (N, C, 1, 1)  x: (N, C, H, W)
func GlobalAvgPoolForward(out, x *Tensor) error {
	const op = "GlobalAvgPoolForward"
	g, dt, err := globalCheck(op, "out", out, "x", x)
	if err != nil {
		return err
	}
	if x.device == CUDA {
		return globalAvgPoolForwardCUDA(out, x, &g)
	}
	pick(dt, runPool[float32], runPool[float64])(g, poolGlobalForward, out, x, nil, nil)
	return nil
}

// GlobalAvgPoolBackward computes dx (overwritten) = dout/(H·W) over each plane.
//
//	dx: (N, C, H, W)  dout: (N, C) or (N, C, 1, 1)
func GlobalAvgPoolBackward(dx, dout *Tensor) error {
	const op = "GlobalAvgPoolBackward"
	g, dt, err := globalCheck(op, "dout", dout, "dx", dx)
	if err != nil {
		return err
	}
	if dx.device == CUDA {
		return globalAvgPoolBackwardCUDA(dx, dout, &g)
	}
	pick(dt, runPool[float32], runPool[float64])(g, poolGlobalBackward, dx, dout, nil, nil)
	return nil
}

type poolKind uint8

const (
	poolMaxForward poolKind = iota
	poolMaxReLUForward
	poolMaxBackward
	poolAvgForward
	poolAvgBackward
	poolGlobalForward
	poolGlobalBackward
)

// poolTask runs one pooling kind over a range of planes. a is the output of
// the pass (out or dx), b its input (x or dout); keep, in a max backward, is
// the fused ReLU's forward output (a gradient passes where it is > 0).
type poolTask[T Float] struct {
	g      poolGeom
	kind   poolKind
	a, b   []T
	keep   []T
	argmax []int32
	bad    atomic.Bool
	rows   []int64 // float32 max forward: per part, maxPlaneFloat32's work space
}

var poolTasks = [2]taskPool{
	{New: func() any { return new(poolTask[float32]) }},
	{New: func() any { return new(poolTask[float64]) }},
}

// Planes are handed to the workers only when there is enough work to pay for
// the hand-off.
const poolParallelMin = 1 << 14

// runPool runs kind over every plane and reports whether a bad argmax index
// was met.
func runPool[T Float](g poolGeom, kind poolKind, a, b, keep *Tensor, argmax []int32) bool {
	tasks := &poolTasks[dtypeIndex[T]()]
	t := tasks.Get().(*poolTask[T])
	t.g, t.kind, t.a, t.b, t.keep, t.argmax = g, kind, dataAs[T](a), dataAs[T](b), dataAs[T](keep), argmax
	t.bad.Store(false)
	serial := g.planes*g.h*g.w < poolParallelMin
	var rows []float64
	if n := t.workPerPart(); n > 0 {
		np := 1
		if !serial {
			np = parts(g.planes)
		}
		rows = takeScratch[float64](np * n)
		t.rows = unsafe.Slice((*int64)(unsafe.Pointer(unsafe.SliceData(rows))), len(rows))
	}
	if serial {
		t.run(0, 0, g.planes)
	} else {
		parallelFor(g.planes, t)
	}
	giveScratch(rows)
	bad := t.bad.Load()
	t.a, t.b, t.keep, t.argmax, t.rows = nil, nil, nil, nil, nil
	tasks.Put(t)
	return bad
}

// workPerPart is the work space, in 8-byte words, that one part of the
// task needs: the general float32 max pool's order keys and maxima, or the
// general float32 average pool's row sums in C (zero: none).
func (t *poolTask[T]) workPerPart() int {
	g := &t.g
	switch {
	case isFloat64[T]() || g.pairs:
		return 0
	case t.kind == poolMaxForward || t.kind == poolMaxReLUForward:
		return g.h*g.w + (g.h+1)*g.ow
	case havePoolC && (t.kind == poolAvgForward || t.kind == poolAvgBackward):
		return (g.h*g.ow + 1) / 2
	}
	return 0
}

func (t *poolTask[T]) run(part, lo, hi int) {
	g := &t.g
	var rows []int64
	if t.rows != nil {
		n := t.workPerPart()
		rows = t.rows[part*n : (part+1)*n]
	}
	forward := t.kind == poolMaxForward || t.kind == poolMaxReLUForward
	avg := !g.pairs && (t.kind == poolAvgForward || t.kind == poolAvgBackward)
	inC := havePoolC && !isFloat64[T]() && (forward || avg || g.pairs && t.kind == poolMaxBackward)
	for pl := lo; pl < hi; pl++ {
		if inC {
			if pl += t.runC(pl, hi, rows); pl == hi {
				break
			}
		}
		t.plane(pl, rows)
	}
}

// runC runs float32 pooling planes from lo in C (the 2×2 max pool's both
// ways, any other max pool's forward, any other average pool's both ways,
// with rows as their work space), until hi or up to a plane C gives back (a
// NaN, an index outside its window), and returns how many it ran.
func (t *poolTask[T]) runC(lo, hi int, rows []int64) int {
	g := &t.g
	in, on := g.h*g.w, g.oh*g.ow
	a, b, am := asF32(t.a), asF32(t.b), t.argmax
	switch t.kind {
	case poolAvgForward:
		avgPoolC(a[lo*on:], b[lo*in:], asF32words(rows), g, hi-lo, false)
		return hi - lo
	case poolAvgBackward:
		avgPoolC(a[lo*in:], b[lo*on:], asF32words(rows), g, hi-lo, true)
		return hi - lo
	}
	if t.kind == poolMaxBackward {
		keep := asF32(t.keep)
		if keep != nil {
			keep = keep[lo*on:]
		}
		return maxPool2x2BackwardC(a[lo*in:], b[lo*on:], keep, am[lo*on:], g, hi-lo)
	}
	if am != nil {
		am = am[lo*on:]
	}
	if !g.pairs {
		return maxPoolC(a[lo*on:], am, b[lo*in:], rows, g, hi-lo, t.kind == poolMaxReLUForward)
	}
	return maxPool2x2C(a[lo*on:], am, b[lo*in:], g, hi-lo, t.kind == poolMaxReLUForward)
}

// asF32words views 8-byte work words as twice as many float32s.
func asF32words(w []int64) []float32 {
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(w))), 2*len(w))
}

// plane runs the task's kind on plane pl.
func (t *poolTask[T]) plane(pl int, rows []int64) {
	g := &t.g
	in, on := g.h*g.w, g.oh*g.ow
	switch t.kind {
	case poolMaxForward, poolMaxReLUForward:
		var am []int32
		if t.argmax != nil {
			am = t.argmax[pl*on : (pl+1)*on]
		}
		maxPlaneAny(t.a[pl*on:(pl+1)*on], am, t.b[pl*in:(pl+1)*in], rows, g, t.kind == poolMaxReLUForward)
	case poolMaxBackward:
		var keep []T
		if t.keep != nil {
			keep = t.keep[pl*on : (pl+1)*on]
		}
		if !maxPlaneBackward(t.a[pl*in:(pl+1)*in], t.b[pl*on:(pl+1)*on], keep, t.argmax[pl*on:(pl+1)*on]) {
			t.bad.Store(true)
		}
	case poolAvgForward:
		if g.pairs {
			avgPlane2x2(t.a[pl*on:(pl+1)*on], t.b[pl*in:(pl+1)*in], g)
		} else {
			avgPlane(t.a[pl*on:(pl+1)*on], t.b[pl*in:(pl+1)*in], g)
		}
	case poolAvgBackward:
		if g.pairs {
			avgPlane2x2Backward(t.a[pl*in:(pl+1)*in], t.b[pl*on:(pl+1)*on], g)
		} else {
			avgPlaneBackward(t.a[pl*in:(pl+1)*in], t.b[pl*on:(pl+1)*on], g)
		}
	case poolGlobalForward:
		t.a[pl] = sumLong(t.b[pl*in:(pl+1)*in]) / T(in)
	case poolGlobalBackward:
		v := t.b[pl] / T(in)
		d := t.a[pl*in : (pl+1)*in]
		for i := range d {
			d[i] = v
		}
	}
}

// maxPlaneAny runs the branch-free float32 kernels where they apply and the
// ordered loop, maxPlane, otherwise (float64, or a plane holding a NaN); then
// ReLU when relu is set.
func maxPlaneAny[T Float](out []T, am []int32, x []T, rows []int64, g *poolGeom, relu bool) {
	if !isFloat64[T]() {
		o32, x32 := asF32(out), asF32(x)
		// With C these would only find the NaN that sent the plane here.
		if !havePoolC && (g.pairs && maxPlane2x2Float32(o32, am, x32, g) || !g.pairs && maxPlaneFloat32(o32, am, x32, rows, g)) {
			reluPlane(out, relu)
			return
		}
	}
	maxPlane(out, am, x, g)
	reluPlane(out, relu)
}

// reluPlane sets the outputs that are 0 or less to +0 (NaN stays), when relu
// is set.
func reluPlane[T Float](out []T, relu bool) {
	if !relu {
		return
	}
	for i, v := range out {
		if v <= 0 {
			out[i] = 0
		}
	}
}

// window clips the window of output index o to the input: [lo, hi).
func window(o, stride, pad, k, n int) (lo, hi int) {
	lo = o*stride - pad
	return max(lo, 0), min(lo+k, n)
}

func maxPlane[T Float](out []T, am []int32, x []T, g *poolGeom) {
	negInf := T(math.Inf(-1))
	for oh := 0; oh < g.oh; oh++ {
		h0, h1 := window(oh, g.sh, g.ph, g.kh, g.h)
		for ow := 0; ow < g.ow; ow++ {
			w0, w1 := window(ow, g.sw, g.pw, g.kw, g.w)
			m, at := negInf, h0*g.w+w0
			for ih := h0; ih < h1; ih++ {
				base := ih*g.w + w0
				for j, v := range x[base : ih*g.w+w1] {
					if v > m || v != v {
						m, at = v, base+j
					}
				}
			}
			out[oh*g.ow+ow] = m
			if am != nil {
				am[oh*g.ow+ow] = int32(at)
			}
		}
	}
}

// maxPlaneBackward sends each dout element to its argmax (where keep > 0,
// when keep is given: the fused ReLU's output).
func maxPlaneBackward[T Float](dx, dout, keep []T, am []int32) bool {
	clear(dx)
	for i, v := range dout {
		a := int(am[i])
		if uint(a) >= uint(len(dx)) {
			return false
		}
		if keep == nil || keep[i] > 0 {
			dx[a] += v
		}
	}
	return true
}

func avgPlane[T Float](out, x []T, g *poolGeom) {
	div := T(g.kh * g.kw)
	for oh := 0; oh < g.oh; oh++ {
		h0, h1 := window(oh, g.sh, g.ph, g.kh, g.h)
		for ow := 0; ow < g.ow; ow++ {
			w0, w1 := window(ow, g.sw, g.pw, g.kw, g.w)
			var s T
			for ih := h0; ih < h1; ih++ {
				for _, v := range x[ih*g.w+w0 : ih*g.w+w1] {
					s += v
				}
			}
			out[oh*g.ow+ow] = s / div
		}
	}
}

func avgPlaneBackward[T Float](dx, dout []T, g *poolGeom) {
	clear(dx)
	div := T(g.kh * g.kw)
	for oh := 0; oh < g.oh; oh++ {
		h0, h1 := window(oh, g.sh, g.ph, g.kh, g.h)
		for ow := 0; ow < g.ow; ow++ {
			w0, w1 := window(ow, g.sw, g.pw, g.kw, g.w)
			v := dout[oh*g.ow+ow] / div
			for ih := h0; ih < h1; ih++ {
				d := dx[ih*g.w+w0 : ih*g.w+w1]
				for i := range d {
					d[i] += v
				}
			}
		}
	}
}

// avgPlane2x2 is avgPlane for 2×2 windows at stride 2 without padding.
func avgPlane2x2[T Float](out, x []T, g *poolGeom) {
	w := g.w
	for oh := 0; oh < g.oh; oh++ {
		r0 := x[2*oh*w : 2*oh*w+w]
		r1 := x[(2*oh+1)*w : (2*oh+1)*w+w]
		o := out[oh*g.ow : (oh+1)*g.ow]
		for ow := range o {
			i := 2 * ow
			o[ow] = (r0[i] + r0[i+1] + r1[i] + r1[i+1]) / 4
		}
	}
}

// avgPlane2x2Backward writes dx directly: the windows do not overlap, and the
// row and column that floor mode leaves out get zero.
func avgPlane2x2Backward[T Float](dx, dout []T, g *poolGeom) {
	w := g.w
	for oh := 0; oh < g.oh; oh++ {
		r0 := dx[2*oh*w : 2*oh*w+w]
		r1 := dx[(2*oh+1)*w : (2*oh+1)*w+w]
		d := dout[oh*g.ow : (oh+1)*g.ow]
		for ow, v := range d {
			v /= 4
			i := 2 * ow
			r0[i], r0[i+1], r1[i], r1[i+1] = v, v, v, v
		}
		if w%2 != 0 {
			r0[w-1], r1[w-1] = 0, 0
		}
	}
	if g.h%2 != 0 {
		clear(dx[(g.h-1)*w:])
	}
}

// maxPlane2x2Float32 is maxPlane for 2×2 windows at stride 2 without
// padding, without data-dependent branches (on random data the float
// compares' branches mispredict half the time): each element's bits become an
// integer key with the same order, −0 and +0 both 0, and the maximum and its
// index are picked with masks. It reports false, leaving the work to
// maxPlane, when the plane holds a NaN.
func maxPlane2x2Float32(out []float32, am []int32, xf []float32, g *poolGeom) bool {
	x := unsafe.Slice((*int32)(unsafe.Pointer(unsafe.SliceData(xf))), len(xf))
	w := g.w
	var nan int64 // negative once a NaN is seen
	for oh := 0; oh < g.oh; oh++ {
		r0 := x[2*oh*w : 2*oh*w+w]
		r1 := x[(2*oh+1)*w : (2*oh+1)*w+w]
		o := out[oh*g.ow : (oh+1)*g.ow]
		base := int64(2 * oh * w)
		for ow := range o {
			i := 2 * ow
			ka, kb, kc, kd := int64(r0[i]), int64(r0[i+1]), int64(r1[i]), int64(r1[i+1])
			// key = ±magnitude; NaN has a magnitude above +Inf's.
			sa, sb, sc, sd := ka>>63, kb>>63, kc>>63, kd>>63
			ka, kb, kc, kd = ka&0x7fffffff, kb&0x7fffffff, kc&0x7fffffff, kd&0x7fffffff
			nan |= (0x7f800000 - ka) | (0x7f800000 - kb) | (0x7f800000 - kc) | (0x7f800000 - kd)
			ka, kb, kc, kd = (ka^sa)-sa, (kb^sb)-sb, (kc^sc)-sc, (kd^sd)-sd
			// m is all ones where the candidate is strictly larger.
			k, at := ka, base+int64(i)
			m := (k - kb) >> 63
			k, at = k^((k^kb)&m), at^((at^(base+int64(i+1)))&m)
			m = (k - kc) >> 63
			k, at = k^((k^kc)&m), at^((at^(base+int64(w+i)))&m)
			m = (k - kd) >> 63
			at ^= (at ^ (base + int64(w+i+1))) & m
			o[ow] = xf[at]
			if am != nil {
				am[oh*g.ow+ow] = int32(at)
			}
		}
	}
	return nan >= 0
}

// maxPlaneFloat32 is maxPlane for float32 without data-dependent branches.
// Each element becomes one int64, its order key (as in maxPlane2x2Float32)
// above 0x7fffffff minus its flat index, so the plain integer maximum of a
// window is its first largest element, PyTorch's pick, and the integer max
// compiles to a conditional move. Being a plain maximum it is taken in two
// passes, along each input row and then down the window's rows, which shares
// the row pass between overlapping windows. work holds H·W + (H+1)·OW
// int64s.
// It reports false when the plane holds a NaN.
func maxPlaneFloat32(out []float32, am []int32, xf []float32, work []int64, g *poolGeom) bool {
	x := unsafe.Slice((*int32)(unsafe.Pointer(unsafe.SliceData(xf))), len(xf))
	keys, rows := work[:len(x)], work[len(x):len(x)+g.h*g.ow]
	acc := work[len(x)+g.h*g.ow : len(x)+(g.h+1)*g.ow]
	var nan int64
	for i, b := range x {
		kb := int64(b)
		sb := kb >> 63
		kb &= 0x7fffffff
		nan |= 0x7f800000 - kb
		keys[i] = ((kb^sb)-sb)<<32 | int64(0x7fffffff-i)
	}
	if nan < 0 {
		return false
	}
	for ih := 0; ih < g.h; ih++ {
		kr := keys[ih*g.w : (ih+1)*g.w]
		rr := rows[ih*g.ow : (ih+1)*g.ow]
		for ow := range rr {
			w0, w1 := window(ow, g.sw, g.pw, g.kw, g.w)
			m := kr[w0]
			for _, k := range kr[w0+1 : w1] {
				m = max(m, k)
			}
			rr[ow] = m
		}
	}
	for oh := 0; oh < g.oh; oh++ {
		h0, h1 := window(oh, g.sh, g.ph, g.kh, g.h)
		copy(acc, rows[h0*g.ow:(h0+1)*g.ow])
		for ih := h0 + 1; ih < h1; ih++ {
			for ow, k := range rows[ih*g.ow : (ih+1)*g.ow] {
				acc[ow] = max(acc[ow], k)
			}
		}
		o := out[oh*g.ow : (oh+1)*g.ow]
		for ow, m := range acc {
			at := 0x7fffffff - int(m&0xffffffff)
			o[ow] = xf[at]
			if am != nil {
				am[oh*g.ow+ow] = int32(at)
			}
		}
	}
	return true
}
