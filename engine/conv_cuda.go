package engine

import (
	"fmt"
	"math"

	"github.com/kiln-ml/kiln/cuda"
)

// Conv2D on the GPU (kernels/conv.cu): implicit GEMMs on the tiling of
// kernels/gemm_tile.cuh, one launch per pass covering every image and group
// (grid z = group), so the products are as wide as the batch and no im2col
// matrix is ever written:
//
//	forward      M = Cout/groups, N = batch·OH·OW, K = Cin/groups·KH·KW
//	input grad   M = Cin/groups,  N = batch·H·W,   K = Cout/groups·KH·KW (gather; no atomics)
//	weight grad  M = Cout/groups, N = Cin/groups·KH·KW, K = batch·OH·OW (split over K)
//	bias grad    one block per output channel
//
// Every pass is deterministic. Tensors must have fewer than 2^31 elements
// (the kernels index in 32 bits).

// The implicit-GEMM kernels of each pass, one per tile and precision (see
// gemmKernels).
var (
	// The fp32 and bf16 passes whose M is a channel count (Cout forward,
	// Cin for the input gradient, Cout for the weight gradient), small in
	// early layers, also have the 32×128 tile; the weight gradient, whose N
	// is the taps and whose long K is split over the batch, the 32×32 one
	// too.
	kConvForward = gemmKernels{kern.conv2d_forward_64x64_f32, kern.conv2d_forward_128x128_f32,
		kern.conv2d_forward_64x64_tf32, kern.conv2d_forward_128x128_tf32,
		kern.conv2d_forward_64x64_bf16, kern.conv2d_forward_128x128_bf16,
		nil, kern.conv2d_forward_32x128_f32, nil,
		nil, kern.conv2d_forward_32x128_bf16, nil}
	kConvInputGrad = gemmKernels{kern.conv2d_input_grad_64x64_f32, kern.conv2d_input_grad_128x128_f32,
		kern.conv2d_input_grad_64x64_tf32, kern.conv2d_input_grad_128x128_tf32,
		kern.conv2d_input_grad_64x64_bf16, kern.conv2d_input_grad_128x128_bf16,
		nil, kern.conv2d_input_grad_32x128_f32, nil,
		nil, kern.conv2d_input_grad_32x128_bf16, nil}
	kConvWeightGrad = gemmKernels{kern.conv2d_weight_grad_64x64_f32, kern.conv2d_weight_grad_128x128_f32,
		kern.conv2d_weight_grad_64x64_tf32, kern.conv2d_weight_grad_128x128_tf32,
		kern.conv2d_weight_grad_64x64_bf16, kern.conv2d_weight_grad_128x128_bf16,
		kern.conv2d_weight_grad_32x32_f32, kern.conv2d_weight_grad_32x128_f32, nil,
		kern.conv2d_weight_grad_32x32_bf16, kern.conv2d_weight_grad_32x128_bf16, nil}
)

// convIndexable reports an error when a tensor is too large for the
// kernels' 32-bit indices.
func convIndexable(op string, ts ...*Tensor) error {
	for _, t := range ts {
		if t != nil && t.Len() > math.MaxInt32 {
			return fmt.Errorf("%s on cuda: tensor %v has %d elements, the kernels index at most 2^31-1 (split the batch)", op, t.shape, t.Len())
		}
	}
	return nil
}

// shapeArgs appends the geometry in the kernels' parameter order.
func (g *convGeom) shapeArgs(a *cuda.Args) *cuda.Args {
	return a.Int(g.n).Int(g.cin).Int(g.h).Int(g.w).Int(g.cout).Int(g.kh).Int(g.kw).Int(g.oh).Int(g.ow).
		Int(g.sh).Int(g.sw).Int(g.ph).Int(g.pw).Int(g.dh).Int(g.dw).Int(g.groups)
}

// conv2DForwardCUDA: out = conv(x, w) + b; shapes checked by Conv2DForward.
func conv2DForwardCUDA(g *convGeom, params Conv2DParams, out, x, w, b *Tensor) error {
	return runCUDA("Conv2DForward", func() error {
		if err := convIndexable("Conv2DForward", out, x, w); err != nil {
			return err
		}
		if g.n == 0 {
			return nil
		}
		p, err := planGemm(kConvForward, g.mg, g.n*g.p, g.kg, g.groups, false, w.prec)
		if err != nil {
			return err
		}
		var a cuda.Args
		a.Ptr(out.dptr()).Ptr(x.dptr()).Ptr(w.dptr()).Ptr(b.dptrOr())
		return cuda.Launch(p.k, p.grid, cuda.D1(gemmThreads), 0, g.shapeArgs(&a))
	}, func(host hostCopy) error { return Conv2DForward(host(out), host(x), host(w), host(b), params) }, out, x, w, b)
}

// conv2DBackwardCUDA: dx = ∂L/∂x (overwritten), dw += ∂L/∂w, db += ∂L/∂b;
// any of them may be nil. Shapes checked by Conv2DBackward.
func conv2DBackwardCUDA(g *convGeom, params Conv2DParams, dx, dw, db, dout, x, w *Tensor) error {
	return runCUDA("Conv2DBackward", func() error {
		if err := convIndexable("Conv2DBackward", dx, dout, x, w); err != nil {
			return err
		}
		if g.n == 0 {
			return nil // dx is empty, nothing adds to dw and db
		}
		// An fp32 weight gradient takes the bias gradient as one more column
		// of its product (kernels/conv.cu), split with it over the batch;
		// otherwise (no dw, or products that round their inputs, which the
		// bias sum must not) it is its own launch.
		biasInProduct := db != nil && dw != nil && gemmPrecision(w.prec) == FP32
		if db != nil && !biasInProduct {
			if err := convBiasGradCUDA(db, dout, g); err != nil {
				return err
			}
		}
		if dx != nil {
			// One product per stride phase (kernels/conv.cu), the grid sized
			// for the largest: ⌈H/sh⌉·⌈W/sw⌉ pixels an image.
			pix := ceilDiv(g.h, g.sh) * ceilDiv(g.w, g.sw)
			p, err := planGemm(kConvInputGrad, g.cg, g.n*pix, g.mg*g.kh*g.kw, g.groups*g.sh*g.sw, false, w.prec)
			if err != nil {
				return err
			}
			var a cuda.Args
			a.Ptr(dx.dptr()).Ptr(dout.dptr()).Ptr(w.dptr())
			if err := cuda.Launch(p.k, p.grid, cuda.D1(gemmThreads), 0, g.shapeArgs(&a)); err != nil {
				return err
			}
		}
		if dw != nil {
			m, n := g.mg, g.kg
			var dbp cuda.Ptr
			if biasInProduct {
				n, dbp = n+1, db.dptr()
			}
			p, err := planGemm(kConvWeightGrad, m, n, g.n*g.p, g.groups, true, w.prec)
			if err != nil {
				return err
			}
			ws, wsBytes, err := p.workspace(g.groups, m, n)
			if err != nil {
				return err
			}
			defer func() {
				if ws != 0 {
					cuda.Free(ws, wsBytes)
				}
			}()
			var a cuda.Args
			a.Ptr(dw.dptr()).Ptr(dbp).Ptr(dout.dptr()).Ptr(x.dptr()).Ptr(ws).Int(p.splits)
			if err := cuda.Launch(p.k, p.grid, cuda.D1(gemmThreads), 0, g.shapeArgs(&a)); err != nil {
				return err
			}
			if p.splits > 1 {
				return splitKReduce(dw.dptr(), g.kg, int64(g.mg*g.kg), ws, m, n, g.groups, p.splits, 1, 1, gemmEpilogue{}, dbp)
			}
		}
		return nil
	}, func(host hostCopy) error {
		return Conv2DBackward(host(dx), host(dw), host(db), host(dout), host(x), host(w), params)
	}, dx, dw, db, dout, x, w)
}

// convBiasGradCUDA: db += Σ dout over images and pixels, split over the
// batch into runs of at least convBiasMinSplit elements so that the blocks
// come near gemmSplitBlocks: one block per channel walked every image
// before (557 µs of LeNet's 2.6 ms bf16 step at batch 1024 on the H200).
// The split depends only on the shapes: the same sum every run.
func convBiasGradCUDA(db, dout *Tensor, g *convGeom) error {
	channels := min(g.cout, 65535)
	per, splits := biasSplit(g.n, channels, ceilDiv(convBiasMinSplit, g.p))
	grid := cuda.Dim3{X: uint32(channels), Y: uint32(splits), Z: 1}
	return splitSum(db.dptr(), splits, g.cout, func(out cuda.Ptr) error {
		var a cuda.Args
		a.Ptr(out).Ptr(dout.dptr()).Int(g.n).Int(g.cout).Int(g.p).Int(per)
		return cuda.Launch(kern.conv2d_bias_grad_f32, grid, cuda.D1(256), 0, &a)
	})
}

// convBiasMinSplit is the fewest elements of dout one split of a bias
// gradient sums: 16 a thread.
const convBiasMinSplit = 4096

// dptrOr is a possibly-nil tensor's device pointer, 0 for nil.
func (t *Tensor) dptrOr() cuda.Ptr {
	if t == nil {
		return 0
	}
	return t.dptr()
}
