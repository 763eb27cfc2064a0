package engine

import "github.com/kiln-ml/kiln/cuda"

// Linear on the GPU: the three products go through gemmCUDA (the weight
// gradient, whose k is the batch, splits over k when its tile grid is
// small). The bias add and a fused ReLU are the forward product's epilogue;
// the bias gradient (with a fused ReLU's mask) is kernels/linear.cu's, the
// column sums in a fixed order.

// linearForwardCUDA: out = x·Wᵀ + b, then ReLU when relu is set; shapes
// checked by linearForwardOp.
func linearForwardCUDA(op string, relu bool, out, x, w, b *Tensor) error {
	return runCUDA(op, func() error {
		n, in, o := x.Dim(0), x.Dim(1), w.Dim(0)
		ep := gemmEpilogue{relu: relu}
		if b != nil {
			ep.bias = b.dptr()
		}
		return gemmCUDA(w.prec, false, true, n, o, in, 1, 1, x.dptr(), in, 0, w.dptr(), in, 0, 0, out.dptr(), o, 0, ep)
	}, func(host hostCopy) error {
		if relu {
			return LinearReLUForward(host(out), host(x), host(w), host(b))
		}
		return LinearForward(host(out), host(x), host(w), host(b))
	}, out, x, w, b)
}

// linearBackwardCUDA: dx = dout·W, dw += doutᵀ·x, db += Σ_n dout; any of dx,
// dw, db may be nil. With reluOut, dout is first masked into dpre (in the
// bias gradient's launch) and the products read dpre. Shapes checked by
// linearBackwardOp.
func linearBackwardCUDA(op string, mode GradMode, dx, dw, db, dpre, dout, reluOut, x, w *Tensor) error {
	return runCUDA(op, func() error {
		n, in, o := x.Dim(0), x.Dim(1), w.Dim(0)
		dwBeta := float32(1)
		if mode == SetGrads {
			// The bias gradient's launches add: zero it (o floats). The
			// weight gradient's product overwrites.
			if db != nil {
				if err := db.Zero(); err != nil {
					return err
				}
			}
			dwBeta = 0
		}
		if (db != nil || reluOut != nil) && n > 0 && o > 0 {
			if err := linearBiasGradCUDA(db, dpre, dout, reluOut, n, o); err != nil {
				return err
			}
		}
		g := dout
		if reluOut != nil {
			g = dpre
		}
		if dx != nil {
			if err := gemmCUDA(w.prec, false, false, n, in, o, 1, 1, g.dptr(), o, 0, w.dptr(), in, 0, 0, dx.dptr(), in, 0, gemmEpilogue{}); err != nil {
				return err
			}
		}
		if dw != nil {
			return gemmCUDA(w.prec, true, false, o, in, n, 1, 1, g.dptr(), o, 0, x.dptr(), in, 0, dwBeta, dw.dptr(), in, 0, gemmEpilogue{})
		}
		return nil
	}, func(host hostCopy) error {
		return LinearBackwardMode(mode, host(dx), host(dw), host(db), host(dpre), host(dout), host(reluOut), host(x), host(w))
	}, dx, dw, db, dpre, dout, reluOut, x, w)
}

// linearBiasGradCUDA: db += Σ_n dout (db may be nil), with reluOut the
// masked gradient into dpre, split over the rows in runs of at least
// linearBiasMinRows so that the blocks come near gemmSplitBlocks (one block
// per 32 columns walked every row before: LeNet's fc layers, 22 µs each at
// batch 1024 on the H200). The split depends only on the shapes.
func linearBiasGradCUDA(db, dpre, dout, reluOut *Tensor, n, o int) error {
	colBlocks := min(ceilDiv(o, 32), 4096)
	per, splits := biasSplit(n, colBlocks, linearBiasMinRows)
	grid := cuda.Dim3{X: uint32(colBlocks), Y: uint32(splits), Z: 1}
	return splitSum(optPtr(db), splits, o, func(out cuda.Ptr) error {
		var a cuda.Args
		a.Ptr(out).Ptr(dout.dptr()).Int(n).Int(o).Int(per).Ptr(optPtr(dpre)).Ptr(optPtr(reluOut))
		return cuda.Launch(kern.linear_bias_grad_f32, grid, cuda.Dim3{X: 32, Y: 8, Z: 1}, 0, &a)
	})
}

// linearBiasMinRows is the fewest rows one split of a bias gradient sums:
// 8 for each of a block's row partitions.
const linearBiasMinRows = 64
