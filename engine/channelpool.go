package engine

import "fmt"

// Pooling across channels, CBAM's spatial-attention input: for every pixel
// the mean and the max over the C channels, stacked as two channels.

// ChannelPoolForward computes out[:,0] = mean over C and out[:,1] = max over C.
// argmax receives, per pixel, the channel that won the max (first on ties).
//
//	out: (N,2,H,W)  argmax: N·H·W int32s  x: (N,C,H,W)
func ChannelPoolForward(out *Tensor, argmax []int32, x *Tensor) error {
	const op = "ChannelPoolForward"
	_, dt, err := agreeDev(op, out, x)
	if err != nil {
		return err
	}
	if x.Rank() != 4 || x.Dim(1) < 1 || !out.SameShape(x.Dim(0), 2, x.Dim(2), x.Dim(3)) ||
		len(argmax) != x.Dim(0)*x.Dim(2)*x.Dim(3) {
		return shapeErr(op, "want x (N,C,H,W), out (N,2,H,W), argmax N·H·W", "out", out, "x", x, "argmax", len(argmax))
	}
	if x.device == CUDA {
		return channelPoolForwardCUDA(out, argmax, x)
	}
	n, c, hw := x.Dim(0), x.Dim(1), x.Dim(2)*x.Dim(3)
	pick(dt, runSamplesOn[float32], runSamplesOn[float64])(kindChannelPoolForward, n, x.Len(), out, x, nil, argmax, c, hw)
	return nil
}

// ChannelPoolBackward computes dx (overwritten): dout[:,0]/C to every channel,
// plus dout[:,1] to the channel that won the max.
//
//	dx: (N,C,H,W)  dout: (N,2,H,W)  argmax: from the forward pass, each in [0,C)
func ChannelPoolBackward(dx, dout *Tensor, argmax []int32) error {
	const op = "ChannelPoolBackward"
	_, dt, err := agreeDev(op, dx, dout)
	if err != nil {
		return err
	}
	if dx.Rank() != 4 || !dout.SameShape(dx.Dim(0), 2, dx.Dim(2), dx.Dim(3)) ||
		len(argmax) != dx.Dim(0)*dx.Dim(2)*dx.Dim(3) {
		return shapeErr(op, "want dx (N,C,H,W), dout (N,2,H,W), argmax N·H·W", "dx", dx, "dout", dout, "argmax", len(argmax))
	}
	if dx.device == CUDA {
		return channelPoolBackwardCUDA(dx, dout, argmax)
	}
	n, c, hw := dx.Dim(0), dx.Dim(1), dx.Dim(2)*dx.Dim(3)
	// The C loop routes dmax by a select, not an index: a channel outside
	// [0,C) would drop its gradient unseen.
	if err := indexRange(op, c)(argmax); err != nil {
		return err
	}
	pick(dt, runSamplesOn[float32], runSamplesOn[float64])(kindChannelPoolBackward, n, dx.Len(), dx, dout, nil, argmax, c, hw)
	return nil
}

// The Go loops below are the reference: float64 runs them, and float32's C
// loops (channelpool_cpu.c) give their bits.

func channelPoolForward[T Float](out []T, argmax []int32, x []T, n, c, hw int) {
	inv := 1 / T(c)
	for i := 0; i < n; i++ {
		xi := x[i*c*hw : (i+1)*c*hw]
		mean := out[i*2*hw : i*2*hw+hw]
		mx := out[i*2*hw+hw : (i+1)*2*hw]
		am := argmax[i*hw : (i+1)*hw]
		copy(mean, xi[:hw])
		copy(mx, xi[:hw])
		clear(am)
		for ch := 1; ch < c; ch++ {
			plane := xi[ch*hw : (ch+1)*hw]
			for p, v := range plane {
				mean[p] += v
				if v > mx[p] {
					mx[p] = v
					am[p] = int32(ch)
				}
			}
		}
		for p := range mean {
			mean[p] *= inv
		}
	}
}

func channelPoolBackward[T Float](dx, dout []T, argmax []int32, n, c, hw int) {
	inv := 1 / T(c)
	for i := 0; i < n; i++ {
		dmean := dout[i*2*hw : i*2*hw+hw]
		dmax := dout[i*2*hw+hw : (i+1)*2*hw]
		am := argmax[i*hw : (i+1)*hw]
		dxi := dx[i*c*hw : (i+1)*c*hw]
		for ch := 0; ch < c; ch++ {
			plane := dxi[ch*hw : (ch+1)*hw]
			for p := range plane {
				plane[p] = dmean[p] * inv
			}
		}
		for p, ch := range am {
			dxi[int(ch)*hw+p] += dmax[p]
		}
	}
}

// Transpose12 swaps the last two axes of a rank-3 tensor: (N,A,B) → (N,B,A).
// It turns a feature map (N,C,T) into tokens (N,T,C) and back; its backward
// pass is the same op on the gradient.
//
//	out: (N,B,A)  x: (N,A,B)
func Transpose12(out, x *Tensor) error {
	const op = "Transpose12"
	_, dt, err := agreeDev(op, out, x)
	if err != nil {
		return err
	}
	if x.Rank() != 3 || !out.SameShape(x.Dim(0), x.Dim(2), x.Dim(1)) {
		return shapeErr(op, "want x (N,A,B) and out (N,B,A)", "out", out, "x", x)
	}
	if x.device == CUDA {
		return transpose12CUDA(out, x)
	}
	pick(dt, transpose12Fast[float32], transpose12Fast[float64])(out, x, x.Dim(0), x.Dim(1), x.Dim(2))
	return nil
}

// transpose12Fast runs transpose12 in C for float32 (8×8 register
// transposes at AVX2 and above), in Go otherwise, the samples split over
// the workers when the tensor is large (gMLP's patch embedding and token
// mean move 4 MB each way at batch 128).
func transpose12Fast[T Float](outT, xT *Tensor, n, a, b int) {
	out, x := dataAs[T](outT), dataAs[T](xT)
	if n < 2 || n*a*b < parallelMinElems {
		transpose12Samples(out, x, n, a, b)
		return
	}
	p := &transposeTasks[dtypeIndex[T]()]
	t := p.Get().(*transposeTask[T])
	*t = transposeTask[T]{out: out, x: x, a: a, b: b}
	parallelFor(n, t)
	*t = transposeTask[T]{}
	p.Put(t)
}

type transposeTask[T Float] struct {
	out, x []T
	a, b   int
}

func (t *transposeTask[T]) run(_, lo, hi int) {
	ab := t.a * t.b
	transpose12Samples(t.out[lo*ab:hi*ab], t.x[lo*ab:hi*ab], hi-lo, t.a, t.b)
}

var transposeTasks = [2]taskPool{
	{New: func() any { return new(transposeTask[float32]) }},
	{New: func() any { return new(transposeTask[float64]) }},
}

func transpose12Samples[T Float](out, x []T, n, a, b int) {
	if !transpose12C(out, x, n, a, b) {
		transpose12(out, x, n, a, b)
	}
}

func transpose12[T Float](out, x []T, n, a, b int) {
	const tile = 32
	for i := 0; i < n; i++ {
		xi, oi := x[i*a*b:(i+1)*a*b], out[i*a*b:(i+1)*a*b]
		for a0 := 0; a0 < a; a0 += tile {
			for b0 := 0; b0 < b; b0 += tile {
				for p := a0; p < min(a0+tile, a); p++ {
					for q := b0; q < min(b0+tile, b); q++ {
						oi[q*a+p] = xi[p*b+q]
					}
				}
			}
		}
	}
}

// GlobalMaxPoolForward takes the max of each (H,W) plane: CBAM's max
// descriptor. argmax receives each winner's index within its plane (first on
// ties; NaN wins, as in PyTorch).
//
//	out: (N,C)  argmax: N·C int32s  x: (N,C,H,W)
func GlobalMaxPoolForward(out *Tensor, argmax []int32, x *Tensor) error {
	const op = "GlobalMaxPoolForward"
	_, dt, err := agreeDev(op, out, x)
	if err != nil {
		return err
	}
	if x.Rank() != 4 || x.Dim(2)*x.Dim(3) < 1 || !out.SameShape(x.Dim(0), x.Dim(1)) || len(argmax) != out.Len() {
		return shapeErr(op, "want x (N,C,H,W) with H·W ≥ 1, out (N,C), argmax N·C", "out", out, "x", x, "argmax", len(argmax))
	}
	if x.device == CUDA {
		return globalMaxPoolForwardCUDA(out, argmax, x)
	}
	planes, hw := out.Len(), x.Dim(2)*x.Dim(3)
	pick(dt, runSamplesOn[float32], runSamplesOn[float64])(kindGlobalMaxForward, planes, x.Len(), out, x, nil, argmax, 0, hw)
	return nil
}

// GlobalMaxPoolBackward computes dx (overwritten): each plane's gradient goes
// to the element that won its max.
//
//	dx: (N,C,H,W)  dout: (N,C)  argmax: from the forward pass
func GlobalMaxPoolBackward(dx, dout *Tensor, argmax []int32) error {
	const op = "GlobalMaxPoolBackward"
	_, dt, err := agreeDev(op, dx, dout)
	if err != nil {
		return err
	}
	if dx.Rank() != 4 || !dout.SameShape(dx.Dim(0), dx.Dim(1)) || len(argmax) != dout.Len() {
		return shapeErr(op, "want dx (N,C,H,W), dout (N,C), argmax N·C", "dx", dx, "dout", dout, "argmax", len(argmax))
	}
	if dx.device == CUDA {
		return globalMaxPoolBackwardCUDA(dx, dout, argmax)
	}
	planes, hw := dout.Len(), dx.Dim(2)*dx.Dim(3)
	for _, a := range argmax {
		if a < 0 || int(a) >= hw {
			return shapeErr(op, "argmax index outside the plane", "dx", dx, "index", a)
		}
	}
	pick(dt, runSamplesOn[float32], runSamplesOn[float64])(kindGlobalMaxBackward, planes, dx.Len(), dx, dout, nil, argmax, 0, hw)
	return nil
}

func globalMaxForward[T Float](out []T, argmax []int32, x []T, hw int) {
	for p := range out {
		plane := x[p*hw : (p+1)*hw]
		best, at := plane[0], 0
		for i, v := range plane {
			if v > best || (v != v && best == best) {
				best, at = v, i
			}
		}
		out[p], argmax[p] = best, int32(at)
	}
}

// indexRange accepts host indices in [0, n) (the gates here, and the
// device's index uploads in channelpool_cuda.go).
func indexRange(op string, n int) func([]int32) error {
	return func(idx []int32) error {
		for i, a := range idx {
			if a < 0 || int(a) >= n {
				return &ShapeError{Op: op, Msg: fmt.Sprintf("argmax[%d] = %d outside [0,%d)", i, a, n)}
			}
		}
		return nil
	}
}

// ChannelGateBackward is the input gradient of CBAM's channel gate,
// y = x ⊙ s with s computed from x's global average and maximum, in one pass
// over the planes where BroadcastMultiplyBackward's dx, GlobalAvgPoolBackward,
// GlobalMaxPoolBackward and two Adds took five (the gate is memory-bound):
//
//	dx = (dout ⊙ scale + dAvg/(H·W)) + (dMax at the plane's argmax, +0 elsewhere)
//
// rounded step by step as those ops round it, so the bits are theirs. dx may
// be dout. The scale's own gradient is BroadcastMultiplyBackward's (dx nil).
//
//	dx, dout: (N,C,H,W)  scale, dAvg, dMax: N·C elements  argmax: N·C, from GlobalMaxPoolForward
func ChannelGateBackward(dx, dout, scale, dAvg, dMax *Tensor, argmax []int32) error {
	const op = "ChannelGateBackward"
	dev, dt, err := agreeDev(op, dx, dout, scale, dAvg, dMax)
	if err != nil {
		return err
	}
	if dx.Rank() != 4 || !dout.SameShape(dx.Shape()...) {
		return shapeErr(op, "want dx and dout (N,C,H,W)", "dx", dx, "dout", dout)
	}
	planes, hw := dx.Dim(0)*dx.Dim(1), dx.Dim(2)*dx.Dim(3)
	if scale.Len() != planes || dAvg.Len() != planes || dMax.Len() != planes || len(argmax) != planes {
		return shapeErr(op, "want scale, dAvg, dMax and argmax of N·C elements", "dx", dx, "scale", scale,
			"dAvg", dAvg, "dMax", dMax, "argmax", len(argmax))
	}
	if dev == CUDA {
		return channelGateBackwardCUDA(dx, dout, scale, dAvg, dMax, argmax)
	}
	if err := indexRange(op, hw)(argmax); err != nil {
		return err
	}
	pick(dt, runChannelGate[float32], runChannelGate[float64])(planes, hw, dx, dout, scale, dAvg, dMax, argmax)
	return nil
}

func runChannelGate[T Float](planes, hw int, dx, dout, scale, dAvg, dMax *Tensor, argmax []int32) {
	runSampleTask(planes, planes*hw, sampleTask[T]{kind: kindChannelGateBackward, a: dataAs[T](dx), b: dataAs[T](dout),
		c: dataAs[T](scale), d: dataAs[T](dAvg), e: dataAs[T](dMax), idx: argmax, hw: hw})
}

// channelGateBackward is ChannelGateBackward's loop. The conversions keep
// each step rounded on its own (no fused multiply-add), as the ops it
// replaces round them.
func channelGateBackward[T Float](dx, dout, scale, dAvg, dMax []T, argmax []int32, hw int) {
	for p, s := range scale {
		v := dAvg[p] / T(hw)
		o, d := dout[p*hw:(p+1)*hw], dx[p*hw:(p+1)*hw]
		at := T(T(o[argmax[p]]*s)+v) + dMax[p]
		for i, g := range o {
			d[i] = T(T(g*s)+v) + 0
		}
		d[argmax[p]] = at
	}
}

// SpatialGateBackward is the input gradient of CBAM's spatial gate,
// y = x ⊙ a with a computed from x's mean and maximum across channels, in
// one pass where BroadcastMultiplyBackward's dx, ChannelPoolBackward and an
// Add took three:
//
//	dx = dout ⊙ a + (dMean/C, plus dMax in the channel that won the pixel's max)
//
// rounded step by step as those ops round it (the same bits). dx may be
// dout. The map's own gradient is BroadcastMultiplyBackward's (dx nil).
//
//	dx, dout: (N,C,H,W)  att: N·H·W elements  dPooled: (N,2,H,W), mean then max  argmax: N·H·W, from ChannelPoolForward
func SpatialGateBackward(dx, dout, att, dPooled *Tensor, argmax []int32) error {
	const op = "SpatialGateBackward"
	dev, dt, err := agreeDev(op, dx, dout, att, dPooled)
	if err != nil {
		return err
	}
	if dx.Rank() != 4 || !dout.SameShape(dx.Shape()...) {
		return shapeErr(op, "want dx and dout (N,C,H,W)", "dx", dx, "dout", dout)
	}
	n, c, hw := dx.Dim(0), dx.Dim(1), dx.Dim(2)*dx.Dim(3)
	if att.Len() != n*hw || !dPooled.SameShape(n, 2, dx.Dim(2), dx.Dim(3)) || len(argmax) != n*hw {
		return shapeErr(op, "want att of N·H·W elements, dPooled (N,2,H,W) and argmax N·H·W", "dx", dx, "att", att,
			"dPooled", dPooled, "argmax", len(argmax))
	}
	if dev == CUDA {
		return spatialGateBackwardCUDA(dx, dout, att, dPooled, argmax)
	}
	if err := indexRange(op, c)(argmax); err != nil {
		return err
	}
	pick(dt, runSpatialGate[float32], runSpatialGate[float64])(n, c, hw, dx, dout, att, dPooled, argmax)
	return nil
}

func runSpatialGate[T Float](n, c, hw int, dx, dout, att, dPooled *Tensor, argmax []int32) {
	runSampleTask(n, n*c*hw, sampleTask[T]{kind: kindSpatialGateBackward, a: dataAs[T](dx), b: dataAs[T](dout),
		c: dataAs[T](att), d: dataAs[T](dPooled), idx: argmax, ch: c, hw: hw})
}

// spatialGateBackward is SpatialGateBackward's loop over n samples, each
// step rounded on its own as in channelPoolBackward and the ops around it.
func spatialGateBackward[T Float](dx, dout, att, dPooled []T, argmax []int32, n, c, hw int) {
	inv := 1 / T(c)
	for i := 0; i < n; i++ {
		a, dmean, dmax := att[i*hw:(i+1)*hw], dPooled[i*2*hw:i*2*hw+hw], dPooled[i*2*hw+hw:(i+1)*2*hw]
		am := argmax[i*hw : (i+1)*hw]
		for ch := 0; ch < c; ch++ {
			o, d := dout[(i*c+ch)*hw:(i*c+ch+1)*hw], dx[(i*c+ch)*hw:(i*c+ch+1)*hw]
			for p, g := range o {
				u := T(dmean[p] * inv)
				if int(am[p]) == ch {
					u = T(u + dmax[p])
				}
				d[p] = T(g*a[p]) + u
			}
		}
	}
}

func globalMaxBackward[T Float](dx, dout []T, argmax []int32, hw int) {
	for p, g := range dout {
		plane := dx[p*hw : (p+1)*hw]
		clear(plane)
		plane[argmax[p]] = g
	}
}
